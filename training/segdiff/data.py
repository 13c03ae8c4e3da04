"""Dataset rows -> normalised conditions and {-1,+1} masks, deterministic random time crops.

The spoof log-magnitude is standardised either PER UTTERANCE (its own mean and std over the whole
utterance, before cropping: heatmaps do not depend on recording gain) or by the training split's mean
and std (:class:`Normaliser`: absolute levels, e.g. a band at the noise floor, stay visible to the model).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from annotate.core.audio import decode_bytes
from annotate.core.dataset import iter_rows, shard_paths
from annotate.core.spectral import DEFAULT_STFT


@dataclass
class Utterance:
    """One spoof row in memory: normalised log-magnitude (frames, F) float16, mask uint8, optional audio."""

    id: str
    logmag: np.ndarray
    mask: np.ndarray | None = None
    audio: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return self.logmag.shape[0]


def normalise_logmag(logmag: np.ndarray) -> np.ndarray:
    """Per-utterance standardisation of a (frames, F) log-magnitude."""
    x = np.asarray(logmag, dtype=np.float32)
    return (x - x.mean()) / (x.std() + 1e-5)


@dataclass(frozen=True)
class Normaliser:
    """Standardisation of raw spoof log-magnitudes by the training split's mean and std."""

    mean: float
    std: float

    def __call__(self, logmag: np.ndarray) -> np.ndarray:
        return (np.asarray(logmag, dtype=np.float32) - np.float32(self.mean)) / np.float32(self.std)

    def apply(self, utts: list[Utterance]) -> list[Utterance]:
        """``utts`` with normalised log-magnitudes (float16, as the crop samplers store them)."""
        return [Utterance(u.id, self(u.logmag).astype(np.float16), u.mask, u.audio) for u in utts]

    @classmethod
    def fit(cls, utts: list[Utterance]) -> "Normaliser":
        """Mean/std over every bin of ``utts`` (raw log-magnitudes), accumulated in float64."""
        n = sum(u.logmag.size for u in utts)
        s = sum(float(u.logmag.sum(dtype=np.float64)) for u in utts)
        mean = s / n
        var = sum(float(np.square(u.logmag.astype(np.float64) - mean).sum()) for u in utts) / n
        return cls(mean, max(float(np.sqrt(var)), 1e-5))


def row_to_utterance(row: dict, with_audio: bool, normalise: Callable[[np.ndarray], np.ndarray] | None = normalise_logmag) -> Utterance:
    """A dataset row (``iter_rows`` dict) as an :class:`Utterance`; clear errors for malformed rows.

    ``normalise``: maps the (frames, F) float32 log-magnitude to the model's input (None = keep it raw)."""
    rid = row.get("id", "?")
    logmag = np.asarray(row["spoof_logmag"], dtype=np.float32)
    if logmag.ndim != 2 or logmag.shape[0] < 1:
        raise ValueError(f"row {rid}: spoof_logmag has shape {logmag.shape}, expected (frames, n_freq)")
    mask = row.get("mask")
    if mask is not None:
        mask = np.asarray(mask, dtype=np.uint8)
        if mask.shape != logmag.shape:
            raise ValueError(f"row {rid}: mask shape {mask.shape} differs from spoof_logmag {logmag.shape}")
    audio = None
    if with_audio:
        cell = row.get("spoof_audio") or {}
        if not cell.get("bytes"):
            raise ValueError(f"row {rid}: spoof_audio has no bytes (ADDSegDiff needs the audio column)")
        audio, _ = decode_bytes(cell["bytes"])
    x = logmag if normalise is None else normalise(logmag)
    return Utterance(rid, x.astype(np.float16), mask, audio)


def load_split(ds, split: str, *, with_audio: bool = False, with_mask: bool = True, limit: int | None = None,
               normalise: Callable[[np.ndarray], np.ndarray] | None = normalise_logmag) -> list[Utterance]:
    """Rows of one split in memory (float16 conditions + uint8 masks: ~3 bytes per bin)."""
    if not shard_paths(ds, split):
        raise FileNotFoundError(f"no shards for split {split!r} in {Path(ds) / 'data'} (build the dataset with `annotate build`)")
    cols = ["id", "spoof_logmag"] + (["mask"] if with_mask else []) + (["spoof_audio"] if with_audio else [])
    out = []
    for row in iter_rows(ds, split, cols):
        out.append(row_to_utterance(row, with_audio, normalise))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ValueError(f"split {split!r} of {ds} has no rows")
    return out


def crop_frames(arr: np.ndarray, start: int, length: int, fill: float) -> np.ndarray:
    """Rows ``start:start+length`` of a time-first array, padded with ``fill`` past its end."""
    out = arr[start : start + length]
    if out.shape[0] < length:
        pad = np.full((length - out.shape[0], *arr.shape[1:]), fill, dtype=arr.dtype)
        out = np.concatenate([out, pad])
    return out


def crop_audio(audio: np.ndarray, start: int, length: int, hop: int = DEFAULT_STFT.hop_length) -> np.ndarray:
    """The samples under frames ``start:start+length`` (``length * hop`` samples, zero-padded)."""
    return crop_frames(audio, start * hop, length * hop, 0.0)


class SpecCondition:
    """SpecSegDiff condition: the normalised spoof log-magnitude crop, (C, 1, L, F)."""

    def __call__(self, utts: list[Utterance], starts: list[int], length: int) -> torch.Tensor:
        crops = [crop_frames(u.logmag, s, length, 0.0) for u, s in zip(utts, starts)]
        return torch.from_numpy(np.stack(crops).astype(np.float32))[:, None]


class DetectorCondition:
    """ADDSegDiff condition: frozen detector layer outputs on each crop's audio, (C, L_layers, T', D)."""

    def __init__(self, detector, layers: tuple[int, ...]):
        from .detector_features import layer_features

        for p in detector.parameters():
            p.requires_grad_(False)
        self.detector, self.layers, self._fn = detector.eval(), tuple(layers), layer_features

    def __call__(self, utts: list[Utterance], starts: list[int], length: int) -> torch.Tensor:
        audio = np.stack([crop_audio(u.audio, s, length) for u, s in zip(utts, starts)])
        return self._fn(self.detector, torch.from_numpy(audio.astype(np.float32)), self.layers)


class CropSampler:
    """Training batches: utterances from seeded per-epoch permutations (``training.distributed.EpochStream``), crop
    starts from ``default_rng([seed, step])``. The global batch is a pure function of (seed, step), so resuming replays
    exactly, and N ranks each take their contiguous part of it (disjoint utterances within an epoch)."""

    def __init__(self, utts: list[Utterance], crop_frames: int, batch_size: int, seed: int, condition):
        from training.distributed import EpochStream

        if any(u.mask is None for u in utts):
            raise ValueError("training utterances need masks (the split's mask column is withheld?)")
        self.utts, self.length, self.batch_size, self.seed, self.condition = utts, crop_frames, batch_size, seed, condition
        self.stream = EpochStream(len(utts), seed)

    def _draw(self, step: int) -> tuple[np.ndarray, list[int]]:
        rng = np.random.default_rng([self.seed, step])
        idx = self.stream.take(step * self.batch_size, self.batch_size)
        return idx, [int(rng.integers(0, max(self.utts[i].frames - self.length, 0) + 1)) for i in idx]

    def ids(self, step: int, part: slice = slice(None)) -> list[str]:
        """Ids of the utterances at positions ``part`` of step ``step``'s global batch."""
        return [self.utts[i].id for i in self._draw(step)[0][part]]

    def batch(self, step: int, part: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(condition, x0 mask in {-1,+1} (B,1,L,F), valid-frame weights (B,1,L,1)) of positions ``part`` of the global batch."""
        idx, starts = self._draw(step)
        utts, starts = [self.utts[i] for i in idx[part]], starts[part]
        cond = self.condition(utts, starts, self.length)
        masks = np.stack([crop_frames(u.mask, s, self.length, 0) for u, s in zip(utts, starts)]).astype(np.float32)
        valid = np.stack([(np.arange(self.length) < u.frames - s) for u, s in zip(utts, starts)]).astype(np.float32)
        x0 = torch.from_numpy(masks * 2 - 1)[:, None]
        return cond, x0, torch.from_numpy(valid)[:, None, :, None]
