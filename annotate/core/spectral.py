"""The spectral core shared by every vocmask package: one STFT config, one STFT/ISTFT, the Eq. 2 mask.

Arrays are laid out time-first, ``(frames, freq_bins)``, matching the dataset's Array2D columns.
The STFT is torch-based so the same code is differentiable (RawWrapper, faithfulness metrics);
numpy inputs come back as numpy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

LOG_FLOOR = 1e-8  # magnitudes are clamped here before the log, so exp(log_magnitude) == |S| above it


@dataclass(frozen=True)
class STFTConfig:
    """Short-time Fourier transform settings; the defaults reconstruct perfectly (ISTFT(STFT(x)) == x)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    win_length: int = 512
    window: str = "hann"
    center: bool = True

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for a signal of ``n_samples`` samples."""
        if self.center:
            return 1 + n_samples // self.hop_length
        return 1 + (n_samples - self.n_fft) // self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MaskConfig:
    """Eq. 2 of the paper: D = |G(Ms) - G(Mb)| / (|G(Mb)| + eps), mask = D > quantile(D, q).

    G is a separable Gaussian: ``time_size`` taps with variance ``time_var`` along time,
    ``freq_size`` taps with variance ``freq_var`` along frequency.
    """

    time_size: int = 3
    time_var: float = 3.0
    freq_size: int = 11
    freq_var: float = 5.0
    eps: float = 1e-6
    quantile: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_STFT = STFTConfig()
DEFAULT_MASK = MaskConfig()


def _torch():
    import torch

    return torch


@lru_cache(maxsize=8)
def _window(cfg: STFTConfig, dtype_name: str):
    torch = _torch()
    if cfg.window != "hann":
        raise ValueError(f"unsupported window {cfg.window!r}: only 'hann' is implemented")
    return torch.hann_window(cfg.win_length, periodic=True, dtype=getattr(torch, dtype_name))


def stft(x, cfg: STFTConfig = DEFAULT_STFT):
    """Complex STFT, time-first: ``(..., frames, n_freq)``. numpy in -> numpy out (complex64)."""
    torch = _torch()
    is_np = isinstance(x, np.ndarray)
    if is_np and x.ndim > 1 and x.size // max(x.shape[-1], 1) > 1:
        # one call per signal: torch's batched CPU FFT is slower per signal (docs/performance.md)
        flat = x.reshape(-1, x.shape[-1])
        return np.stack([stft(row, cfg) for row in flat]).reshape(*x.shape[:-1], cfg.n_frames(x.shape[-1]), cfg.n_freq)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) if is_np else x
    win = _window(cfg, str(t.dtype).removeprefix("torch.")).to(t.device)
    lead = t.shape[:-1]
    spec = torch.stft(
        t.reshape(-1, t.shape[-1]),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=win,
        center=cfg.center,
        pad_mode="reflect",
        return_complex=True,
    )  # (B, F, T)
    spec = spec.transpose(-1, -2).contiguous().reshape(*lead, spec.shape[-1], spec.shape[-2])
    return spec.numpy() if is_np else spec


def stft_of_prefix(spec: np.ndarray, x: np.ndarray, length: int, cfg: STFTConfig = DEFAULT_STFT) -> np.ndarray:
    """``stft(x[:length])`` given ``spec = stft(x)``: frames clear of the new end are reused, only the last
    few (those that reach the end's reflect padding) are computed. Saves one STFT per aligned pair."""
    if not cfg.center or length >= len(x):
        return spec if length == len(x) else stft(x[:length], cfg)
    half, hop = cfg.n_fft // 2, cfg.hop_length
    keep = (length - half) // hop + 1  # frames 0..keep-1 only see samples below ``length``
    lead = -(-half // hop)  # leading frames of a segment that see its start padding
    start = (keep - lead) * hop
    if keep < lead or start < 0 or keep > len(spec):
        return stft(x[:length], cfg)
    tail = stft(x[start:length], cfg)[lead:]
    return np.concatenate([spec[:keep], tail])


def istft(spec, length: int, cfg: STFTConfig = DEFAULT_STFT):
    """Inverse of :func:`stft` (time-first input) back to ``length`` samples."""
    torch = _torch()
    is_np = isinstance(spec, np.ndarray)
    s = torch.from_numpy(np.ascontiguousarray(spec, dtype=np.complex64)) if is_np else spec
    lead = s.shape[:-2]
    s = s.reshape(-1, s.shape[-2], s.shape[-1]).transpose(-1, -2)
    real_dtype = s.real.dtype
    win = _window(cfg, str(real_dtype).removeprefix("torch.")).to(s.device)
    y = torch.istft(
        s,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=win,
        center=cfg.center,
        length=length,
    )
    y = y.reshape(*lead, length)
    return y.numpy() if is_np else y


def log_magnitude(spec):
    """Natural log of |S|, clamped at :data:`LOG_FLOOR`; numpy or torch complex input (a real numpy array
    is taken as |S| already)."""
    if isinstance(spec, np.ndarray):
        mag = np.abs(spec) if np.iscomplexobj(spec) else spec
        out = np.maximum(mag, np.float32(LOG_FLOOR), dtype=np.float32)
        return np.log(out, out=out)
    torch = _torch()
    return torch.log(torch.clamp(spec.abs(), min=LOG_FLOOR))


def gaussian_kernel(size: int, variance: float) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps (odd) and the given variance."""
    if size % 2 != 1:
        raise ValueError(f"Gaussian size must be odd, got {size}")
    r = np.arange(size, dtype=np.float64) - size // 2
    k = np.exp(-(r**2) / (2.0 * variance))
    return (k / k.sum()).astype(np.float32)


@lru_cache(maxsize=8)
def _mask_kernels(cfg: MaskConfig) -> tuple[np.ndarray, np.ndarray]:
    kt, kf = gaussian_kernel(cfg.time_size, cfg.time_var), gaussian_kernel(cfg.freq_size, cfg.freq_var)
    kt.flags.writeable = kf.flags.writeable = False
    return kt, kf


def _valid_symmetric(xp: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    """'Valid' convolution of ``xp`` (already padded by len(kernel)//2 on ``axis``) with a symmetric kernel:
    shifted adds in xp's dtype, the taps the symmetry makes equal paired."""
    r = len(kernel) // 2
    if not np.array_equal(kernel, kernel[::-1]):
        raise ValueError("the smoothing kernel must be symmetric")
    n = xp.shape[axis] - 2 * r
    sl = [slice(None)] * xp.ndim

    def shifted(i: int) -> np.ndarray:
        sl[axis] = slice(i, i + n)
        return xp[tuple(sl)]

    out = np.multiply(shifted(r), kernel[r])
    tmp = np.empty_like(out)
    for i in range(r):
        np.add(shifted(i), shifted(2 * r - i), out=tmp)
        tmp *= kernel[i]
        out += tmp
    return out


def _pad_edge(x: np.ndarray, r: int, axis: int) -> np.ndarray:
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    return np.pad(x, pad, mode="edge")


def smooth(mag: np.ndarray, cfg: MaskConfig = DEFAULT_MASK) -> np.ndarray:
    """G(M): the separable Gaussian of Eq. 2 on time-first spectrograms ``(..., frames, freq)``, edges
    extended by their nearest value; float32 in and out (float64 input stays float64)."""
    x = np.asarray(mag)
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)
    kt, kf = (k.astype(x.dtype) for k in _mask_kernels(cfg))
    t_ax, f_ax = x.ndim - 2, x.ndim - 1
    y = _valid_symmetric(_pad_edge(x, cfg.time_size // 2, t_ax), kt, t_ax)
    return _valid_symmetric(_pad_edge(y, cfg.freq_size // 2, f_ax), kf, f_ax)


def relative_difference(mag_spoof: np.ndarray, mag_real: np.ndarray, cfg: MaskConfig = DEFAULT_MASK) -> np.ndarray:
    """D of Eq. 2: the smoothed absolute difference normalised by the smoothed real magnitude."""
    if mag_spoof.shape != mag_real.shape:
        raise ValueError(f"spectrogram shapes differ: spoof {mag_spoof.shape} vs real {mag_real.shape}")
    gs, gb = smooth(np.stack([mag_spoof, mag_real]).astype(np.float32, copy=False), cfg)
    d = np.subtract(gs, gb)
    np.abs(d, out=d)
    np.abs(gb, out=gb)  # gb is ours: reuse it for the denominator
    gb += np.float32(cfg.eps)
    d /= gb
    return d


def quantile(d: np.ndarray, q: float) -> float:
    """``np.quantile(d, q)`` (linear interpolation) with a clear error for an empty array or a bad ``q``."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    if np.size(d) == 0:
        raise ValueError("quantile of an empty array")
    return np.quantile(d, q)


def threshold(d: np.ndarray, q: float = DEFAULT_MASK.quantile) -> np.ndarray:
    """Binary mask of the values strictly above the per-utterance ``q`` quantile."""
    return np.greater(d, quantile(d, q)).view(np.uint8)  # bool and uint8 share a byte: no copy


def artifact_mask(mag_spoof: np.ndarray, mag_real: np.ndarray, cfg: MaskConfig = DEFAULT_MASK) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 2 end to end: returns ``(mask uint8, D float32)``, both time-first like the inputs."""
    d = relative_difference(mag_spoof, mag_real, cfg)
    return threshold(d, cfg.quantile), d.astype(np.float32, copy=False)
