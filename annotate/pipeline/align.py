"""Sample-accurate alignment of a real utterance and its vocoded re-synthesis.

Two stages (docs/formulas.md, the annotation): (1) DTW (dtaidistance, C path, Sakoe-Chiba window) on mean-normalised log-mel
frames gives the frame-level offset as the median diagonal of the warping path — robust to trimmed
edge silences and to vocoders that do not keep phase; (2) the offset is refined to the sample by
searching ± ``refine_hops`` hops for the shift that minimises the log-magnitude distance of the two
spectrograms on frames spread over the overlap, each bin's mean log ratio removed (so the spoof's level
does not move the result). Masks are fragile to misalignment (4 ms halves their IoU),
so stage 2 is not optional by default.

Convention: ``offset = (position of some content in the spoof) - (its position in the real)``, in
samples at the working rate. The aligned pair is ``real[real_start:real_start+length]`` and
``spoof[spoof_start:spoof_start+length]``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from ..core.spectral import DEFAULT_STFT, STFTConfig


class AlignmentError(Exception):
    """The pair does not align; the message is the reject reason."""


@dataclass(frozen=True)
class AlignConfig:
    """Alignment parameters (recorded in the dataset's build config)."""

    n_mels: int = 40
    pool: int = 2  # DTW runs on frames pooled by this factor (16 ms at the default hop)
    window_s: float = 0.5  # Sakoe-Chiba band beyond the length difference, seconds
    refine: bool = True
    refine_hops: float = 1.5  # sample search range: ± this many hops around the DTW offset
    refine_frames: int = 64  # real frames (spread evenly over the overlap) in the fine search; 1/4 in the coarse
    refine_floor_db: float = -50.0  # log-magnitude floor relative to the real's peak bin
    refine_n_fft: int | None = None  # window of the sample search (default: the STFT's n_fft)
    min_score: float = 0.5  # reject pairs whose aligned log-mel correlation is below this
    min_overlap: float = 0.5  # the common span must keep this share of the shorter signal
    max_offset_s: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Alignment:
    offset: int
    real_start: int
    spoof_start: int
    length: int
    score: float  # correlation of the aligned, mean-normalised log-mel features (1 = identical)
    dtw_offset: int  # offset before sample refinement (frame resolution)

    def apply(self, real: np.ndarray, spoof: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The equal-length aligned signals."""
        return (real[self.real_start : self.real_start + self.length],
                spoof[self.spoof_start : self.spoof_start + self.length])


@lru_cache(maxsize=4)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float = 20.0) -> np.ndarray:
    """Triangular filters evenly spaced on the HTK mel scale, area-normalised: (n_mels, n_fft // 2 + 1)."""
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=sr / 2, htk=True, norm="slaney",
                               dtype=np.float32)


@lru_cache(maxsize=4)
def _mel_basis_t(sr: int, n_fft: int, n_mels: int):
    import torch

    return torch.from_numpy(np.ascontiguousarray(_mel_basis(sr, n_fft, n_mels).T))


def logmel_features(mag: np.ndarray, stft_cfg: STFTConfig, n_mels: int) -> np.ndarray:
    """Mean-normalised log-mel frames (frames, n_mels) from a time-first magnitude spectrogram.

    Per-band mean removal cancels a vocoder's fixed spectral tilt, so DTW matches content.
    """
    import torch  # torch's single-threaded matmul beats a BLAS contended by the other workers (docs/performance.md)

    power = torch.from_numpy(np.ascontiguousarray(mag, dtype=np.float32)).square()
    f = torch.log(power @ _mel_basis_t(stft_cfg.sample_rate, stft_cfg.n_fft, n_mels) + 1e-8)
    return (f - f.mean(dim=0, keepdim=True)).double().numpy()


def _pool(f: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return f
    n = (len(f) // k) * k
    return f[:n].reshape(-1, k, f.shape[1]).mean(axis=1) if n else f[:1]


def warm_up() -> None:
    """Import dtaidistance now: a build worker calls this at start-up, so its first shard does not pay for it."""
    import importlib

    importlib.import_module("dtaidistance.dtw_ndim")


def dtw_frame_offset(fr: np.ndarray, fs: np.ndarray, window: int) -> float:
    """Median diagonal (spoof frame - real frame) of the DTW path between two feature sequences."""
    from dtaidistance import dtw_ndim

    path = np.asarray(dtw_ndim.warping_path(fr, fs, window=window, use_c=True))
    if len(path) == 0:
        raise AlignmentError("alignment failed: DTW found no path")
    # ignore the path's ends, where trimmed edges force horizontal/vertical runs
    k = len(path)
    core = path[k // 10 : k - k // 10] if k >= 10 else path
    return float(np.median(core[:, 1] - core[:, 0]))


@lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    import torch

    return torch.hann_window(n, periodic=True).numpy()


def _log_spectra(frames: np.ndarray, floor: np.float32 | None) -> np.ndarray:
    """log(|rfft(frames * hann)| + floor) in place on ``frames`` (a gathered copy); ``floor=None``: |rfft| only.

    torch's FFT with numpy's complex abs, float32 throughout: the faster of each (docs/performance.md)."""
    import torch

    frames *= _hann(frames.shape[-1])
    mag = np.abs(torch.fft.rfft(torch.from_numpy(frames)).numpy())
    if floor is None:
        return mag
    mag += floor
    return np.log(mag, out=mag)


def refine_offset(real: np.ndarray, spoof: np.ndarray, coarse: int, stft_cfg: STFTConfig, cfg: AlignConfig,
                  level: float = 1.0) -> int:
    """Sample shift near ``coarse`` minimising the mean |log|S_spoof| - log|S_real|| over frames spread evenly
    across the overlap, after removing each frequency bin's mean log ratio (over those frames).

    The per-bin mean removal makes the search blind to a vocoder's level and fixed EQ: a spoof scaled by any
    gain gets the same shift (tested). Logs are floored at ``refine_floor_db`` re the real's peak bin; the
    spoof's floor is that times ``level`` (the spoof/real magnitude ratio), so a gain moves both alike.
    Coarse-to-fine: steps of 16, 4, then 1 sample over ± ``refine_hops`` hops, each level searching
    ± one step of the previous best with more frames (a quarter, a half, then all ``refine_frames``):
    the distance is smooth over a few ms, so the coarse levels only need to find its basin.
    """
    n_fft, hop = cfg.refine_n_fft or stft_cfg.n_fft, stft_cfg.hop_length
    radius = int(round(cfg.refine_hops * hop))
    # real frame starts (uncentred) such that every candidate spoof frame lies inside the spoof
    lo = max(0, radius - coarse)
    hi = min(len(real), len(spoof) - (coarse + radius)) - n_fft
    if hi <= lo:
        return coarse
    starts = np.unique(np.linspace(lo, hi, num=min(cfg.refine_frames, hi - lo + 1)).astype(np.int64))
    frames_r = np.lib.stride_tricks.sliding_window_view(np.asarray(real, dtype=np.float32), n_fft)
    frames_s = np.lib.stride_tricks.sliding_window_view(np.asarray(spoof, dtype=np.float32), n_fft)
    ref = _log_spectra(frames_r[starts], None)
    floor = max(float(ref.max()), 1e-8) * 10 ** (cfg.refine_floor_db / 20)
    floor_s = np.float32(max(floor * level, 1e-12))
    ref += np.float32(floor)
    np.log(ref, out=ref)

    def cost(shifts: np.ndarray, every: int) -> np.ndarray:
        st, rf = starts[::every], ref[::every]
        spec = _log_spectra(frames_s[(st[None, :] + shifts[:, None]).reshape(-1)], floor_s)
        spec = spec.reshape(len(shifts), len(st), -1)
        spec -= rf[None]
        spec -= spec.mean(axis=1, keepdims=True)  # per shift and bin: the level/EQ term
        return np.abs(spec, out=spec).mean(axis=(1, 2))

    best, lo_s, hi_s = coarse, coarse - radius, coarse + radius
    for step, every in ((16, 4), (4, 2), (1, 1)):
        grid = np.arange(max(lo_s, best - (radius if step == 16 else 2 * step)),
                         min(hi_s, best + (radius if step == 16 else 2 * step)) + 1, step)
        best = int(grid[np.argmin(cost(grid, every))])
    return best


def align(real: np.ndarray, spoof: np.ndarray, mag_real: np.ndarray, mag_spoof: np.ndarray,
          stft_cfg: STFTConfig = DEFAULT_STFT, cfg: AlignConfig = AlignConfig(),
          real_features: np.ndarray | None = None) -> Alignment:
    """Align ``spoof`` to ``real`` given their (unaligned) time-first magnitude spectrograms
    (``real_features``: the real's :func:`logmel_features`, when already computed)."""
    hop = stft_cfg.hop_length
    fr_full = real_features if real_features is not None else logmel_features(mag_real, stft_cfg, cfg.n_mels)
    fs_full = logmel_features(mag_spoof, stft_cfg, cfg.n_mels)
    fr, fs = _pool(fr_full, cfg.pool), _pool(fs_full, cfg.pool)
    fps = stft_cfg.sample_rate / (hop * max(cfg.pool, 1))
    window = abs(len(fr) - len(fs)) + max(2, int(round(cfg.window_s * fps)))
    frame_off = dtw_frame_offset(fr, fs, window) * max(cfg.pool, 1)
    coarse = int(round(frame_off * hop))
    if abs(coarse) > cfg.max_offset_s * stft_cfg.sample_rate:
        raise AlignmentError(f"alignment failed: offset {coarse / stft_cfg.sample_rate:.2f} s exceeds max_offset_s={cfg.max_offset_s}")
    offset = coarse
    if cfg.refine:
        level = float(np.mean(mag_spoof)) / max(float(np.mean(mag_real)), 1e-12)
        offset = refine_offset(real, spoof, coarse, stft_cfg, cfg, level)
    real_start, spoof_start = max(0, -offset), max(0, offset)
    length = min(len(real) - real_start, len(spoof) - spoof_start)
    shorter = min(len(real), len(spoof))
    if length < max(stft_cfg.n_fft, cfg.min_overlap * shorter):
        raise AlignmentError(f"alignment failed: common span {length} samples is under {cfg.min_overlap:.0%} of the shorter signal ({shorter})")
    score = _aligned_correlation(fr_full, fs_full, offset / hop)
    if not np.isfinite(score) or score < cfg.min_score:
        raise AlignmentError(f"alignment failed: score {score:.3f} below min_score={cfg.min_score} (not a parallel pair?)")
    return Alignment(offset, real_start, spoof_start, length, float(score), coarse)


def _aligned_correlation(fr: np.ndarray, fs: np.ndarray, frame_offset: float) -> float:
    """Pearson correlation of the two feature sequences overlapped at ``frame_offset`` frames."""
    k = int(round(frame_offset))
    i0, j0 = max(0, -k), max(0, k)
    n = min(len(fr) - i0, len(fs) - j0)
    if n < 2:
        return float("nan")
    a = fr[i0 : i0 + n].ravel()
    b = fs[j0 : j0 + n].ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")
