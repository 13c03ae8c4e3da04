"""Compiled inner loops of the build (numba), each bit-identical to the numpy code it replaces.

numpy runs Eq. 2's smoothing as ~25 passes over two (frames, 257) arrays; the kernel here does the
whole relative difference D one frame at a time in L1-sized row buffers, ~2x faster on one core. The
numpy path stays the reference (``spectral.relative_difference(..., compiled=False)``); tests compare
the two bit for bit. Compiled code is cached next to this file (``__pycache__``), so only the first
process of a fresh install pays the ~1 s compile; importing numba costs a worker ~0.4 s at start-up
(``warm_up``), never per pair.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _relative_difference_kernel():
    """The compiled kernel, or None where numba is missing (the numpy path then runs)."""
    try:
        import numba
        from numba import uint64 as u
    except ImportError:  # pragma: no cover - numba comes with librosa
        return None

    # unsigned column indices: numba then skips negative-index wraparound and LLVM vectorises the
    # row loops with plain loads; the arithmetic order is exactly spectral.smooth's (no fastmath)
    @numba.njit(cache=True, boundscheck=False, nogil=True, error_model="numpy")
    def relative_difference_2d(ms, mr, kt, kf, eps):  # pragma: no cover - compiled
        n_t = ms.shape[0]
        n_f = u(ms.shape[1])
        rt = len(kt) // 2
        rf = u(len(kf) // 2)
        out = np.empty((n_t, ms.shape[1]), np.float32)
        ps = np.empty(n_f + u(2) * rf, np.float32)  # time-smoothed rows, edge-padded along frequency
        pr = np.empty(n_f + u(2) * rf, np.float32)
        gr = np.empty(n_f, np.float32)
        for t in range(n_t):
            a, b, c = ms[t], mr[t], kt[rt]
            for f in range(n_f):
                ps[rf + f] = c * a[f]
                pr[rf + f] = c * b[f]
            for k in range(rt):  # symmetric taps paired; frames beyond the ends repeat the edge frame
                a0, a1 = ms[max(t - rt + k, 0)], ms[min(t + rt - k, n_t - 1)]
                b0, b1 = mr[max(t - rt + k, 0)], mr[min(t + rt - k, n_t - 1)]
                c = kt[k]
                for f in range(n_f):
                    ps[rf + f] += (a0[f] + a1[f]) * c
                    pr[rf + f] += (b0[f] + b1[f]) * c
            for f in range(rf):
                ps[f] = ps[rf]
                pr[f] = pr[rf]
                ps[rf + n_f + f] = ps[rf + n_f - u(1)]
                pr[rf + n_f + f] = pr[rf + n_f - u(1)]
            o, c = out[t], kf[rf]
            for f in range(n_f):
                o[f] = c * ps[rf + f]
                gr[f] = c * pr[rf + f]
            for k in range(rf):
                c = kf[k]
                for f in range(n_f):
                    o[f] += (ps[f + k] + ps[f + u(2) * rf - k]) * c
                    gr[f] += (pr[f + k] + pr[f + u(2) * rf - k]) * c
            for f in range(n_f):
                o[f] = abs(o[f] - gr[f]) / (abs(gr[f]) + eps)
        return out

    return relative_difference_2d


def relative_difference_2d(mag_spoof: np.ndarray, mag_real: np.ndarray, kt: np.ndarray, kf: np.ndarray,
                           eps: float) -> np.ndarray | None:
    """D of Eq. 2 for two float32 (frames, freq) magnitudes, or None when the kernel cannot run
    (numba missing, or inputs it was not written for: the caller falls back to numpy)."""
    kernel = _relative_difference_kernel()
    if (kernel is None or mag_spoof.ndim != 2 or mag_spoof.dtype != np.float32 or mag_real.dtype != np.float32
            or not (np.array_equal(kt, kt[::-1]) and np.array_equal(kf, kf[::-1]))):
        return None
    return kernel(np.ascontiguousarray(mag_spoof), np.ascontiguousarray(mag_real),
                  np.ascontiguousarray(kt, dtype=np.float32), np.ascontiguousarray(kf, dtype=np.float32),
                  np.float32(eps))


def warm_up() -> None:
    """Import numba and load (or compile) the kernels now: a worker calls this at start-up."""
    x = np.ones((8, 16), np.float32)
    relative_difference_2d(x, x, np.ones(3, np.float32) / 3, np.ones(5, np.float32) / 5, 1e-8)
