"""U-Net checkpoints and heatmaps: one forward pass per utterance (stitched crops past ``max_frames``).

A checkpoint folder holds ``last.pt`` (model and optimiser weights, config dict, normalisation mean/std,
step, CPU seconds: plain tensors and dicts, loaded with ``torch.load(weights_only=True)``), ``config.json``
(the same config and metadata for people) and ``metrics.jsonl`` (loss and dev IoU per evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.segdiff.data import Normaliser, Utterance
from training.segdiff.infer import Stitcher, crop_starts

from .config import UNetConfig
from .model import UNet

CONFIG_FILE, STATE_FILE = "config.json", "last.pt"
METHOD = "unet"


@torch.inference_mode()
def heatmap(model: UNet, logmag: np.ndarray, max_frames: int) -> np.ndarray:
    """Foreground probability ``(frames, F)`` float32 of a normalised log-magnitude ``(frames, F)``.

    Up to ``max_frames`` frames: one forward pass; longer: crops of ``max_frames`` at half-crop hops, stitched."""
    frames = logmag.shape[0]
    x = torch.from_numpy(np.ascontiguousarray(logmag, dtype=np.float32)).to(next(model.parameters()).device)
    if frames <= max_frames:
        return torch.sigmoid(model(x[None, None]))[0, 0].cpu().numpy()
    starts = crop_starts(frames, max_frames, max(max_frames // 2, 1))
    stitched = Stitcher(frames, logmag.shape[1], starts, max_frames)
    for i, s in enumerate(starts):
        stitched.add(i, torch.sigmoid(model(x[None, None, s : s + max_frames]))[0, 0].double().cpu().numpy())
    return stitched.result()


def load_checkpoint(path: str | Path) -> tuple[UNet, UNetConfig, Normaliser, dict]:
    """(model in eval mode, config, normaliser, metadata incl. step) from a ``train unet`` folder."""
    folder = Path(path)
    folder = folder if folder.is_dir() else folder.parent
    state_path = folder / STATE_FILE
    if not state_path.exists():
        raise FileNotFoundError(f"{path}: not a U-Net checkpoint (no {STATE_FILE}; train one with `train unet`)")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    if state.get("method") != METHOD:
        raise ValueError(f"{path}: a {state.get('method', 'non-U-Net')} checkpoint, not a `train unet` one")
    cfg = UNetConfig.from_dict(state["config"])
    model = UNet(cfg.model)
    model.load_state_dict(state["model"])
    meta = {k: state[k] for k in ("step", "dataset", "train_rows", "cpu_seconds") if k in state}
    return model.eval(), cfg, Normaliser(*state["normalisation"]), meta


def row_count(dataset, split: str) -> int:
    """Rows of a split from the Parquet footers (no data read)."""
    from annotate.core.dataset import row_count as count

    return count(dataset, split)


def explain_split(checkpoint, dataset, split: str, out_path, *, limit: int | None = None, progress: bool = True,
                  shard: tuple[int, int] | None = None) -> Path:
    """Write a submission (id, sigmoid heatmap on the row's grid) for every spoof row of ``split`` (``shard`` (I, N):
    only part I of N of them)."""
    from tqdm import tqdm

    from annotate.core.dataset import iter_rows
    from annotate.core.submission import SubmissionWriter, shard_metadata, shard_rows

    from training.segdiff.data import row_to_utterance

    model, cfg, norm, meta = load_checkpoint(checkpoint)
    total = row_count(dataset, split)
    if limit is not None:
        total = min(total, max(0, int(limit)))
    metadata = {
        "method": METHOD, "checkpoint": str(checkpoint), "dataset": str(dataset), "split": split, "limit": limit,
        "config": cfg.to_dict(), "normalisation": {"kind": cfg.normalisation, "mean": norm.mean, "std": norm.std},
        "step": meta.get("step"), **shard_metadata(shard, total),
    }
    first, last = shard_rows(total, shard)
    rows = iter_rows(dataset, split, ["id", "spoof_logmag"], start=first, stop=last)
    with SubmissionWriter(out_path, metadata) as w:
        for _, row in zip(tqdm(range(last - first), desc=f"{METHOD} {split}", unit="utt", disable=not progress), rows):
            utt = row_to_utterance(row, False, norm)
            w.write(utt.id, heatmap(model, utt.logmag, cfg.max_frames))
    return Path(out_path)
