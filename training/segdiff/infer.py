"""Sampling heatmaps: whole utterances as overlapping time crops, stitched with a window.

The fast path encodes each crop's condition ONCE and denoises all (crop, sample) pairs of a chunk as
one batch; the naive path (reference for tests and perf) re-encodes the condition at every step and
runs one sample at a time. Both draw noise from the same per-(crop, sample) generators.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch

from .config import SegDiffConfig
from .diffusion import Diffusion, NoiseSource
from .model import SegDiffUNet

CONFIG_FILE, STATE_FILE = "config.json", "last.pt"


def crop_starts(frames: int, length: int, hop: int) -> list[int]:
    """Starts of length-``length`` crops covering ``frames`` with hop ``hop`` (last one flush with the end)."""
    if frames <= length:
        return [0]
    starts = list(range(0, frames - length, hop))
    return starts + [frames - length]


def stitch_window(length: int) -> np.ndarray:
    """Positive sine window: crops overlap-add smoothly and every frame gets non-zero weight."""
    return np.sin(np.pi * (np.arange(length) + 0.5) / length).astype(np.float64)


class Stitcher:
    """Overlap-add of crop heatmaps ``(length, F)`` starting at ``starts`` into one ``(frames, F)`` map,
    each crop weighted by :func:`stitch_window` (a single crop: weight 1)."""

    def __init__(self, frames: int, n_freq: int, starts: list[int], length: int):
        self.starts, self.length = starts, length
        self.acc, self.wsum = np.zeros((frames, n_freq)), np.zeros((frames, 1))
        self.win = stitch_window(length)[:, None] if len(starts) > 1 else np.ones((length, 1))

    def add(self, i: int, heat: np.ndarray) -> None:
        """Add crop ``i``'s heatmap (the crop starting at ``starts[i]``)."""
        s = self.starts[i]
        self.acc[s : s + self.length] += self.win * heat
        self.wsum[s : s + self.length] += self.win

    def result(self) -> np.ndarray:
        """The stitched map, float32."""
        return (self.acc / self.wsum).astype(np.float32)


def _to_heat(x0: torch.Tensor) -> torch.Tensor:
    """Final samples in [-1, 1] -> foreground probability in [0, 1]."""
    return (x0.clamp(-1, 1) + 1) / 2


DEFAULT_MAX_BATCH = 8  # sampling chains denoised together in one forward pass (bounds memory)


def _reverse_chains(model: SegDiffUNet, diff: Diffusion, feats: torch.Tensor, noise: NoiseSource, pairs: list[tuple[int, int]],
                    frames: int, ddim_steps: int | None, eta: float) -> torch.Tensor:
    """Run the chains ``pairs`` from x_T to x_0 as one batch: (len(pairs), 1, frames, F) in [-1, 1].

    ``feats``: cached condition features, batch 1 (broadcast) or one row per chain. The timestep is
    shared by the batch, so its embedding is computed once per step (batch-1 ``t``, broadcast).
    """
    shape = (1, frames, model.cfg.n_freq)
    steps, ddim = diff.timesteps(ddim_steps), ddim_steps is not None and ddim_steps < diff.T
    x = noise.draw(pairs, shape)
    for i, t in enumerate(steps):
        pred = model.denoise(x, torch.full((1,), t, dtype=torch.long), feats)
        z = noise.draw(pairs, shape) if diff.needs_noise(i, steps, ddim, eta) else None
        x = diff.step(x, pred, t, steps[i + 1] if i + 1 < len(steps) else -1, z, ddim, eta)
    return x


@torch.inference_mode()
def sample_batched(model: SegDiffUNet, diff: Diffusion, cond: torch.Tensor, frames: int, noise: NoiseSource,
                   crop_ids: list[int], n_samples: int, ddim_steps: int | None = None, eta: float = 0.0,
                   max_batch: int = DEFAULT_MAX_BATCH) -> torch.Tensor:
    """Mean heatmap per crop (C, frames, F): each crop's condition encoded ONCE (all crops in one
    encoder call), then the C*S chains denoised in batches of at most ``max_batch`` (cache locality)."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    feats = model.encode_condition(cond, frames=frames)
    pairs = [(k, s) for k in range(len(crop_ids)) for s in range(n_samples)]
    acc = torch.zeros(len(crop_ids), frames, model.cfg.n_freq)
    for b0 in range(0, len(pairs), max_batch):
        part = pairs[b0 : b0 + max_batch]
        rows = [k for k, _ in part]
        # one crop: broadcast its batch-1 features; several: gather one row per chain
        f = feats[rows[0] : rows[0] + 1] if rows[0] == rows[-1] else feats[rows]
        x = _reverse_chains(model, diff, f, noise, [(crop_ids[k], s) for k, s in part], frames, ddim_steps, eta)
        acc.index_add_(0, torch.tensor(rows), _to_heat(x)[:, 0])
    return acc / n_samples


@torch.inference_mode()
def sample_naive(model: SegDiffUNet, diff: Diffusion, cond, frames: int, noise: NoiseSource,
                 crop_ids: list[int], n_samples: int, ddim_steps: int | None = None, eta: float = 0.0) -> torch.Tensor:
    """Reference loop: one sample at a time, the condition recomputed at every step.

    ``cond``: the crops' raw conditions (C, ...), or a callable ``k -> (1, ...)`` producing crop k's raw
    condition; :func:`explain_utterance` passes the provider, so ADDSegDiff's frozen detector runs at every
    step too, as it would inside a model whose forward takes the waveform.
    """
    raw = cond if callable(cond) else (lambda k: cond[k : k + 1])
    shape = (1, frames, model.cfg.n_freq)
    steps, ddim = diff.timesteps(ddim_steps), ddim_steps is not None and ddim_steps < diff.T
    out = []
    for k, c in enumerate(crop_ids):
        acc = 0
        for s in range(n_samples):
            x = noise.draw([(c, s)], shape)
            for i, t in enumerate(steps):
                feats = model.encode_condition(raw(k), frames=frames)
                pred = model.denoise(x, torch.full((1,), t, dtype=torch.long), feats)
                z = noise.draw([(c, s)], shape) if diff.needs_noise(i, steps, ddim, eta) else None
                x = diff.step(x, pred, t, steps[i + 1] if i + 1 < len(steps) else -1, z, ddim, eta)
            acc = acc + _to_heat(x)[0, 0]
        out.append(acc / n_samples)
    return torch.stack(out)


def utterance_key(uid: str) -> int:
    """Stable 32-bit key of an utterance id (seeds its noise generators)."""
    return zlib.crc32(uid.encode())


@torch.inference_mode()
def explain_utterance(model: SegDiffUNet, diff: Diffusion, utt, condition, crop_frames: int, *, n_samples: int = 32,
                      ddim_steps: int | None = None, eta: float = 0.0, seed: int = 0, hop: int | None = None,
                      max_batch: int = DEFAULT_MAX_BATCH, naive: bool = False) -> np.ndarray:
    """Heatmap (frames, F) of one utterance: crops stitched with :func:`stitch_window`.

    ``max_batch``: most chains denoised together (crops per encoder call = max_batch // n_samples, >= 1).
    """
    frames = utt.frames
    length = min(crop_frames, frames)
    starts = crop_starts(frames, length, hop or max(length // 2, 1))
    noise = NoiseSource(seed, utterance_key(utt.id), len(starts), n_samples)
    chunk = max(1, max_batch // n_samples)
    stitched = Stitcher(frames, model.cfg.n_freq, starts, length)
    for c0 in range(0, len(starts), chunk):
        ids = list(range(c0, min(c0 + chunk, len(starts))))
        if naive:
            def crop_condition(k: int, ids=ids) -> torch.Tensor:
                return condition([utt], [starts[ids[k]]], length)

            heat = sample_naive(model, diff, crop_condition, length, noise, ids, n_samples, ddim_steps, eta)
        else:
            cond = condition([utt] * len(ids), [starts[i] for i in ids], length)
            heat = sample_batched(model, diff, cond, length, noise, ids, n_samples, ddim_steps, eta, max_batch)
        heat = heat.double().numpy()
        for k, i in enumerate(ids):
            stitched.add(i, heat[k])
    return stitched.result()


# ----------------------------------------------------------------------------------------------- checkpoints


def load_checkpoint(path: str | Path, ema: bool = True) -> tuple[SegDiffUNet, SegDiffConfig, dict]:
    """(model in eval mode with EMA weights, config, extra metadata) from a ``train segdiff`` folder."""
    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    cfg_path, state_path = folder / CONFIG_FILE, folder / STATE_FILE
    if not cfg_path.exists() or not state_path.exists():
        raise FileNotFoundError(f"{path}: not a SegDiff checkpoint (need {CONFIG_FILE} and {STATE_FILE}; train one with `train segdiff`)")
    meta = json.loads(cfg_path.read_text())
    cfg = SegDiffConfig.from_dict(meta["config"])
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    model = SegDiffUNet(cfg.model)
    model.load_state_dict(state["ema" if ema else "model"])
    return model.eval(), cfg, meta


def input_normaliser(cfg: SegDiffConfig, meta: dict):
    """How a checkpoint standardises the spoof log-magnitude: per utterance, or by its training split's mean/std."""
    from .data import Normaliser, normalise_logmag

    if cfg.normalisation == "dataset":
        if not meta.get("normalisation"):
            raise ValueError("this checkpoint uses dataset normalisation but records no mean/std (config.json 'normalisation')")
        return Normaliser(*meta["normalisation"])
    return normalise_logmag


def make_condition(cfg: SegDiffConfig, meta: dict, detector_path: str | None = None):
    """The condition provider of a checkpoint: spectrogram crops, or the frozen detector's layers."""
    from .data import DetectorCondition, SpecCondition

    if cfg.model.condition == "spec":
        return SpecCondition()
    from .detector_features import load_frozen_detector

    path = detector_path or meta.get("detector")
    if not path:
        raise ValueError("this ADDSegDiff checkpoint names no detector: pass --detector CKPT")
    return DetectorCondition(load_frozen_detector(path), cfg.model.detector_layers)


def explain_split(checkpoint, dataset, split, out_path, *, n_samples: int = 32, ddim_steps: int | None = None, seed: int = 0,
                  limit: int | None = None, eta: float = 0.0, max_batch: int = DEFAULT_MAX_BATCH, detector: str | None = None,
                  hop: int | None = None, progress: bool = True, shard: tuple[int, int] | None = None) -> Path:
    """Write a submission (id, heatmap) for every spoof row of ``split``; the heatmap is the mean of
    ``n_samples`` sampled masks in [0, 1] (foreground probability). ``hop``: crop hop in frames
    (default half the training crop; the crop length itself = no overlap, half the cost)."""
    from tqdm import tqdm

    from annotate.core.dataset import iter_rows, row_count
    from annotate.core.submission import SubmissionWriter, shard_metadata, shard_rows

    from .data import row_to_utterance

    model, cfg, meta = load_checkpoint(checkpoint)
    model = model.to(memory_format=torch.channels_last)
    diff = Diffusion(cfg.diffusion)
    condition = make_condition(cfg, meta, detector)
    normalise = input_normaliser(cfg, meta)
    with_audio = cfg.model.condition == "detector"
    cols = ["id", "spoof_logmag"] + (["spoof_audio"] if with_audio else [])
    method = "specsegdiff" if cfg.model.condition == "spec" else "addsegdiff"
    metadata = {
        "method": method, "checkpoint": str(checkpoint), "dataset": str(dataset), "split": split,
        "n_samples": n_samples, "ddim_steps": ddim_steps, "eta": eta, "seed": seed,
        "crop_frames": cfg.train.crop_frames, "hop": hop or max(cfg.train.crop_frames // 2, 1), "normalisation": cfg.normalisation, "step": meta.get("step"),
    }
    total = row_count(dataset, split)
    if limit is not None:
        total = min(total, max(0, int(limit)))
    first, last = shard_rows(total, shard)
    metadata.update(shard_metadata(shard, total))
    with SubmissionWriter(out_path, metadata) as w:
        rows = iter_rows(dataset, split, cols, start=first, stop=last)
        for _, row in zip(tqdm(range(last - first), desc=f"{method} {split}", disable=not progress, unit="utt"), rows):
            utt = row_to_utterance(row, with_audio, normalise)
            heat = explain_utterance(model, diff, utt, condition, cfg.train.crop_frames, n_samples=n_samples,
                                     ddim_steps=ddim_steps, eta=eta, seed=seed, max_batch=max_batch, hop=hop)
            w.write(utt.id, heat)
    return Path(out_path)
