"""RawWrapper: a waveform detector seen as a model of the (log-magnitude, phase) spectrogram, plus the
crop/tile windows that fit an utterance to the detector's input length and map heatmaps back.

``RawWrapper(detector, length)(logM, P) = detector(ISTFT(exp(logM) * exp(i P)))`` with the shared
STFT (annotate.core.spectral): the STFT reconstructs perfectly, so the output equals ``detector(x)`` for
``logM, P`` taken from ``x``, and attributions on ``logM`` land on the dataset's time-frequency grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from annotate.core.spectral import DEFAULT_STFT, STFTConfig, istft, log_magnitude, stft

SPOOF = 1  # detector convention: logits (B, 2), index 1 = spoof


class Exp(nn.Module):
    """``exp`` as a module, so hook-based attribution rules (captum's DeepLift Rescale) can see it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class RawWrapper(nn.Module):
    """``forward(logmag (B, frames, F), phase (B, frames, F)) -> detector logits``; time-first like the dataset."""

    def __init__(self, detector: nn.Module, length: int, cfg: STFTConfig = DEFAULT_STFT):
        super().__init__()
        self.exp = Exp()
        self.detector = detector
        self.length = int(length)
        self.cfg = cfg

    def waveform(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """ISTFT of ``magnitude * exp(i phase)`` back to ``length`` samples."""
        return istft(torch.polar(magnitude, phase.to(magnitude.dtype)), self.length, self.cfg)

    def from_magnitude(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """Detector logits for a linear magnitude (the input AttnLRP attributes to)."""
        return self.detector(self.waveform(magnitude, phase))

    def forward(self, logmag: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        return self.from_magnitude(self.exp(logmag), phase)


def spectrogram(wave: np.ndarray | torch.Tensor, cfg: STFTConfig = DEFAULT_STFT) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logmag, phase)`` float32 tensors, time-first ``(..., frames, F)``, of a waveform (batch)."""
    w = torch.as_tensor(np.asarray(wave, dtype=np.float32)) if isinstance(wave, np.ndarray) else wave.float()
    spec = stft(w, cfg)
    return log_magnitude(spec).float(), torch.angle(spec).float()


# ----------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Windows:
    """Detector-length crops of one utterance: ``crops (W, n)`` and, per crop frame, its frame on the utterance grid."""

    crops: np.ndarray  # (W, n) float32
    frame_map: np.ndarray  # (W, frames_n) int: utterance frame of each crop frame
    n_frames: int  # frames of the utterance (the heatmap grid)

    def to_utterance(self, maps: np.ndarray) -> np.ndarray:
        """Crop heatmaps ``(W, frames_n, F)`` -> one utterance heatmap ``(n_frames, F)``.

        Within a crop, the copies of a tiled frame add up (each copy is a separate input to the
        detector); across overlapping crops the maps are averaged (like averaging the crops' logits).
        Frames no crop frame maps to (rare rounding gaps) take their nearest covered neighbour.
        """
        maps = np.asarray(maps, dtype=np.float64)
        total = np.zeros((self.n_frames, maps.shape[-1]), np.float64)
        covered = np.zeros(self.n_frames, np.float64)
        for w in range(maps.shape[0]):
            np.add.at(total, self.frame_map[w], maps[w])
            covered[np.unique(self.frame_map[w])] += 1.0
        hit = covered > 0
        out = np.zeros_like(total)
        out[hit] = total[hit] / covered[hit, None]
        if not hit.all():
            idx = np.flatnonzero(hit)
            near = idx[np.clip(np.searchsorted(idx, np.arange(self.n_frames)), 0, len(idx) - 1)]
            left = idx[np.clip(np.searchsorted(idx, np.arange(self.n_frames)) - 1, 0, len(idx) - 1)]
            pick = np.where(np.abs(left - np.arange(self.n_frames)) <= np.abs(near - np.arange(self.n_frames)), left, near)
            out[~hit] = out[pick[~hit]]
        return out.astype(np.float32)


def make_windows(x: np.ndarray, n: int, cfg: STFTConfig = DEFAULT_STFT) -> Windows:
    """Crops of ``n`` samples covering ``x``: one tiled crop if ``x`` is shorter (the detector's training
    convention), else ``ceil(len/n)`` evenly spaced crops whose starts snap to the hop where possible."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty mono waveform, got shape {x.shape}")
    hop, length = cfg.hop_length, x.size
    n_frames = cfg.n_frames(length)
    crop_frames = cfg.n_frames(n)
    if length <= n:
        crops = np.tile(x, int(np.ceil(n / length)))[:n][None]
        starts, wrap = [0], True
    else:
        w = int(np.ceil(length / n))
        raw = np.linspace(0, length - n, w)
        starts = [min(int(round(s / hop)) * hop, length - n) for s in raw]
        starts[-1] = length - n
        crops = np.stack([x[s : s + n] for s in starts])
        wrap = False
    maps = []
    for s in starts:
        pos = s + hop * np.arange(crop_frames)
        if wrap:
            pos = pos % length
        maps.append(np.clip(np.rint(pos / hop).astype(np.int64), 0, n_frames - 1))
    return Windows(crops.astype(np.float32, copy=False), np.stack(maps), n_frames)


def detector_length(detector: nn.Module, default: int = 64600) -> int:
    """The detector's input length in samples (``config.crop`` of a vocmask detector)."""
    cfg = getattr(detector, "config", None)
    return int(getattr(cfg, "crop", default) or default)
