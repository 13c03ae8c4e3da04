"""Vectorised scoring of a chunk of utterances: every metric of :mod:`metrics` and :mod:`localisation` at once.

The per-utterance functions there are the readable references (known-answer tests); this module
computes the same numbers for many ``(heatmap, mask)`` pairs with few numpy/scipy calls, so that
scoring costs about as much as reading the submission. Utterances of any length are laid out one
after another along the time axis with :data:`GAP` empty frames between them (all share the
frequency axis):

* SSIM's 11x11 Gaussian window is averaged only over each utterance's inner pixels (at least 5
  from its edges), whose window never leaves the utterance, so one filter pass over the stack
  gives every utterance's exact per-utterance SSIM;
* FBound computes one (capped, separable) squared Euclidean distance map per side: a boundary pixel
  matches at radius r iff its squared distance to the other map's nearest boundary pixel is at most
  r**2 (the disk of the reference); a histogram of those distances gives every radius at once; the
  gap keeps neighbouring utterances farther apart than the largest radius;
* sums per utterance (confusion counts, relevance mass, SSIM means) are segment sums of row sums.

The binarisation quantile and the ROC-AUC ranks come from one sort per heatmap.
numpy/scipy only: never imports torch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from .metrics import QUANTILE, RADII, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_TRUNCATE, gdice_from_counts

SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
GAP = max(max(RADII), SSIM_RADIUS) + 1  # empty frames between stacked utterances
STACK = 8  # utterances per stack: small enough for the stacked maps to stay in cache (docs/performance.md)


def _segment_sums(rows: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Sums of ``rows[starts[k]:stops[k]]`` (float64, exact for integer counts) for every k."""
    c = np.concatenate([[0.0], np.cumsum(rows, dtype=np.float64)])
    return c[stops] - c[starts]


def _boundary_stack(m: np.ndarray, same_next: np.ndarray) -> np.ndarray:
    """:func:`metrics.boundary` of every stacked map: south / south-east only where the next row is the same utterance."""
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= (m[:-1, :] != m[1:, :]) & same_next[:, None]
    b[:-1, :-1] |= (m[:-1, :-1] != m[1:, 1:]) & same_next[:, None]
    return b


CAP = max(RADII) ** 2 + 1  # squared distances above the largest radius are all "no match"


def _capped_sq_distance(b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance (uint8) of every pixel to the nearest True pixel of ``b``, exact up to
    ``max(RADII)**2`` and ``>= CAP`` beyond: separable (min over each row, then over each column)."""
    rmax = max(RADII)
    b0 = np.where(b, np.uint8(0), np.uint8(CAP))  # CAP + 25 still fits in uint8
    h2 = b0.copy()
    for dx in range(1, rmax + 1):
        d = np.uint8(dx * dx)
        np.minimum(h2[:, :-dx], b0[:, dx:] + d, out=h2[:, :-dx])
        np.minimum(h2[:, dx:], b0[:, :-dx] + d, out=h2[:, dx:])
    d2 = h2.copy()
    for dy in range(1, rmax + 1):
        d = np.uint8(dy * dy)
        np.minimum(d2[:-dy], h2[dy:] + d, out=d2[:-dy])
        np.minimum(d2[dy:], h2[:-dy] + d, out=d2[dy:])
    return d2


def _matched(b: np.ndarray, d2: np.ndarray, row_utt: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per utterance: boundary pixels of ``b`` (n,) and those within each radius of the other side (n, len(RADII))."""
    ys, xs = np.nonzero(b)
    vals = np.minimum(d2[ys, xs], CAP).astype(np.int64)
    hist = np.bincount(row_utt[ys] * (CAP + 1) + vals, minlength=n * (CAP + 1)).reshape(n, CAP + 1)
    cum = np.cumsum(hist, axis=1)
    return cum[:, -1].astype(np.float64), cum[:, [r * r for r in RADII]].astype(np.float64)


def _ssim_kernel() -> np.ndarray:
    """skimage's Gaussian window (sigma 1.5, truncate 3.5: 11 taps), normalised, float32."""
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return (k / k.sum()).astype(np.float32)


def _ssim_stack(x: np.ndarray, y: np.ndarray, starts: np.ndarray, frames: np.ndarray, width: int) -> np.ndarray:
    """Per-utterance mean SSIM of stacked binary maps (NaN for maps smaller than the window)."""
    r = SSIM_RADIUS
    out = np.full(len(starts), np.nan)
    ok = (frames >= 2 * r + 1) & (width >= 2 * r + 1)
    if not ok.any():
        return out

    w = _ssim_kernel()

    def g(a: np.ndarray) -> np.ndarray:
        """Gaussian of a binary map on the pixels whose window fits (rows r.. -r, columns r.. -r), float32:
        time axis as 'valid' shifted sums of whole rows (contiguous, symmetric taps), then frequency."""
        a = a.astype(np.float32)
        n = a.shape[0] - 2 * r
        acc = w[r] * a[r : r + n]
        for k in range(r):
            acc += w[k] * (a[k : k + n] + a[2 * r - k : 2 * r - k + n])
        return ndimage.correlate1d(acc, w, axis=1, mode="reflect")[:, r:-r]

    ux, uy, uxy = g(x), g(y), g(x & y)  # x*x == x for binary maps
    c1, c2 = np.float32(SSIM_K1**2), np.float32(SSIM_K2**2)
    uxuy = ux * uy
    num = 2 * uxuy + c1
    num *= 2 * (uxy - uxuy) + c2
    vsum = ux * (1 - ux)  # vx + vy, each u - u*u
    vsum += uy * (1 - uy)
    vsum += c2
    den = ux * ux
    den += uy * uy
    den += c1
    den *= vsum
    s = num / den
    rows = s.sum(axis=1, dtype=np.float64)
    lo, hi = starts + r, starts + frames - r  # stack rows; row i of ``rows`` is stack row i + r
    sums = _segment_sums(rows, np.where(ok, lo - r, 0), np.where(ok, hi - r, 0))
    n = (hi - lo) * (width - 2 * r)
    out[ok] = sums[ok] / n[ok]
    return out


def score_batch(items: Sequence[tuple[np.ndarray, np.ndarray]], q: float = QUANTILE, stack: int = STACK) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Every segmentation and localisation metric (percent) of each ``(heatmap, mask)``, and the binarised maps.

    Equal (to float rounding) to :func:`score.utterance_scores` applied one by one; maps of different
    widths are scored in separate stacks.
    """
    n = len(items)
    names = ("GDice", "F1", "IoU", "FBound", "SSIM", "AUC", "RMA", "PG")
    out = {m: np.full(n, np.nan) for m in names}
    preds: list[np.ndarray | None] = [None] * n
    by_width: dict[int, list[int]] = {}
    for k, (h, t) in enumerate(items):
        h, t = np.asarray(h), np.asarray(t)
        if h.shape != t.shape or h.ndim != 2:
            raise ValueError(f"item {k}: heatmap {h.shape} and truth {t.shape} must be the same 2-D shape")
        by_width.setdefault(h.shape[1], []).append(k)
    for width, ks in by_width.items():
        for a in range(0, len(ks), stack):
            part = ks[a : a + stack]
            _score_stack([items[k] for k in part], width, q, out, part, preds)
    return out, preds  # type: ignore[return-value]


def _score_stack(items, width: int, q: float, out: dict, ks: list[int], preds: list) -> None:
    frames = np.array([np.shape(h)[0] for h, _ in items], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(frames + GAP)[:-1]]).astype(np.int64)
    total = int(starts[-1] + frames[-1]) if len(items) else 0
    P = np.zeros((total, width), bool)
    T = np.zeros((total, width), bool)
    mass_rows = np.zeros(total)  # positive heatmap mass per row, and inside the mask
    mass_in_rows = np.zeros(total)
    auc, pg = np.full(len(items), np.nan), np.zeros(len(items))
    for j, ((h, t), a) in enumerate(zip(items, starts)):
        h = np.asarray(h)
        t = np.asarray(t, dtype=bool)
        rows = slice(a, a + h.shape[0])
        flat = h.reshape(-1)
        srt = np.sort(flat)
        pred = h > np.quantile(srt, q)  # the quantile of the sorted values is the quantile of the values
        P[rows], T[rows] = pred, t
        preds[ks[j]] = pred
        pos = flat[t.reshape(-1)]
        n_pos, n_all = pos.size, flat.size
        if 0 < n_pos < n_all:  # Mann-Whitney U from ranks: ties count 1/2, exact in integers
            two_u = (np.searchsorted(srt, pos, "left").sum(dtype=np.int64) + np.searchsorted(srt, pos, "right").sum(dtype=np.int64)
                     - n_pos * n_pos)
            auc[j] = 100.0 * (two_u / 2.0) / (float(n_pos) * float(n_all - n_pos))
        top = srt[-1]
        n_top = n_all - int(np.searchsorted(srt, top, "left"))
        pg[j] = 100.0 * np.count_nonzero(pos == top) / n_top
        hp = np.maximum(h, 0).astype(np.float64, copy=False)
        mass_rows[rows] = hp.sum(axis=1)
        mass_in_rows[rows] = np.where(t, hp, 0.0).sum(axis=1)
    stops = starts + frames
    count = lambda m: _segment_sums(np.count_nonzero(m, axis=1), starts, stops)  # noqa: E731
    tp, n_p, n_t = count(P & T), count(P), count(T)
    size = frames * width
    gd = np.array([gdice_from_counts(a, b, c, s) for a, b, c, s in zip(tp, n_p, n_t, size)])
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(n_p + n_t > 0, 2 * tp / (n_p + n_t), 0.0)
        iou = np.where(n_p + n_t - tp > 0, tp / (n_p + n_t - tp), 0.0)
        mass = _segment_sums(mass_rows, starts, stops)
        rma = np.where(mass > 0, _segment_sums(mass_in_rows, starts, stops) / mass, 0.0)

    # FBound: one capped distance map per side, then a histogram of the distances at the boundary pixels
    same_next = np.zeros(total, bool)
    row_utt = np.zeros(total, np.int64)
    for j, (a, f) in enumerate(zip(starts, frames)):
        same_next[a : a + f - 1] = True
        row_utt[a : a + f] = j
    bp, bt = _boundary_stack(P, same_next[:-1]), _boundary_stack(T, same_next[:-1])
    nbp, prec = _matched(bp, _capped_sq_distance(bt), row_utt, len(items))
    nbt, rec = _matched(bt, _capped_sq_distance(bp), row_utt, len(items))
    with np.errstate(divide="ignore", invalid="ignore"):
        p_r = prec / nbp[:, None]
        r_r = rec / nbt[:, None]
        f_r = np.where(p_r + r_r > 0, 2 * p_r * r_r / (p_r + r_r), 0.0)
    fb = np.where((nbp > 0) & (nbt > 0), f_r.mean(axis=1), 0.0)

    ssim = _ssim_stack(P, T, starts, frames, width)
    for name, v in (("GDice", 100 * gd), ("F1", 100 * f1), ("IoU", 100 * iou), ("FBound", 100 * fb), ("SSIM", 100 * ssim),
                    ("AUC", auc), ("RMA", 100 * rma), ("PG", pg)):
        out[name][ks] = v
