"""Training loop: weighted cross-entropy on random crops, Adam, seeded per step, resumable.

Randomness: batch indices, crop starts and RawBoost seeds come from ``np.random.default_rng([seed, step])``
and dropout from ``torch.manual_seed`` reset per step, so a resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import DetectorConfig, TrainConfig
from .data import AudioStore, Item, MultiStore, index_split, open_store, random_crop
from .model import Wav2Vec2AASIST, read_meta, save_detector

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"


def class_weights(items: Sequence[Item], given: tuple[float, float] | None) -> tuple[float, float]:
    """CE weights (bona fide, spoof). Default: inverse class frequency normalised to sum 1, i.e.
    (n_spoof, n_bona) / n. With 1 real per V spoofs this is (V, 1)/(V+1): for V = 9 it is the paper's
    0.9 on bona fide / 0.1 on spoof (their [0.1, 0.9] with bona fide = index 1)."""
    if given is not None:
        return float(given[0]), float(given[1])
    n_b = sum(1 for it in items if it.label == 0)
    n_s = len(items) - n_b
    if n_b == 0 or n_s == 0:
        raise ValueError(f"training needs both classes; got {n_b} bona fide and {n_s} spoof items")
    return n_s / len(items), n_b / len(items)


def _by_class(items: Sequence[Item]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the bona fide and of the spoof items."""
    labels = np.array([it.label for it in items])
    return np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)


def draw_batch(rng: np.random.Generator, items: Sequence[Item], tcfg: TrainConfig,
               by_class: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Item indices of one batch: uniform over items, or (``balanced``) half from each class."""
    if not tcfg.balanced:
        return rng.integers(0, len(items), tcfg.batch_size)
    bona, spoof = by_class
    n_b = tcfg.batch_size // 2
    return np.concatenate([bona[rng.integers(0, len(bona), n_b)], spoof[rng.integers(0, len(spoof), tcfg.batch_size - n_b)]])


def _batch(store: AudioStore | MultiStore, items: Sequence[Item], idx: np.ndarray, n: int, rng: np.random.Generator,
           tcfg: TrainConfig, sr: int) -> tuple[torch.Tensor, torch.Tensor]:
    waves, labels = [], []
    for i in idx:
        it = items[int(i)]
        x = random_crop(store.wave(it), n, rng)
        if tcfg.rawboost_algo and rng.random() < tcfg.rawboost_prob:
            from annotate import rawboost  # lazy: numpy/scipy-heavy, optional

            x = rawboost.augment(x, tcfg.rawboost_algo, int(rng.integers(2**31)), sr)
        waves.append(x)
        labels.append(it.label)
    return torch.from_numpy(np.stack(waves)), torch.tensor(labels, dtype=torch.long)


def _same_config(out: Path, cfg: DetectorConfig) -> None:
    _, meta = read_meta(out)
    if meta["config"] != json.loads(json.dumps(cfg.to_dict())):
        raise ValueError(f"{out} holds a checkpoint of another config; pass a new --out or the same settings to resume")


def train(
    ds: str | Path,
    out: str | Path,
    cfg: DetectorConfig,
    tcfg: TrainConfig,
    *,
    items: Sequence[Item] | None = None,
    split: str = "train",
    progress: bool = True,
    extra_meta: dict | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Train (or resume) a detector on ``ds``'s ``split`` (or on ``items`` of it, or of the datasets their
    ``dataset`` fields name); returns the checkpoint folder."""
    from tqdm import tqdm

    out = Path(out)
    items = list(items) if items is not None else index_split(ds, split)
    weights = class_weights(items, tcfg.class_weights)
    by_class = _by_class(items)
    if tcfg.balanced and tcfg.class_weights is None:  # half of each batch is bona fide: no reweighting needed
        weights = (0.5, 0.5)
    store = open_store(ds, split, items)  # items may carry their own dataset (NC across corpora)
    torch.manual_seed(tcfg.seed)
    model = Wav2Vec2AASIST(cfg)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    start = 0
    if (out / STATE_FILE).exists():
        _same_config(out, cfg)
        state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])  # moves its tensors to the parameters' device
        start = int(state["step"])
    meta = {
        "train": {**{k: v for k, v in asdict(tcfg).items() if k != "extra"}, **tcfg.extra, "class_weights_used": weights,
                  "dataset": str(ds), "split": split, "n_bona": sum(1 for it in items if it.label == 0),
                  "n_spoof": sum(1 for it in items if it.label == 1),
                  **({"datasets": sorted({it.dataset or str(ds) for it in items})} if isinstance(store, MultiStore) else {})},
        **(extra_meta or {}),
    }
    w = torch.tensor(weights, dtype=torch.float32, device=device)
    model.train()
    bar = tqdm(range(start, tcfg.steps), initial=start, total=tcfg.steps, disable=not progress, desc="train detector")
    out.mkdir(parents=True, exist_ok=True)
    if (out / LOG_FILE).exists():  # drop lines of steps after the checkpoint we resume from
        kept = [ln for ln in (out / LOG_FILE).read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
        (out / LOG_FILE).write_text("".join(ln + "\n" for ln in kept))
    log = open(out / LOG_FILE, "a")
    try:
        for step in bar:
            rng = np.random.default_rng([tcfg.seed, step])
            idx = draw_batch(rng, items, tcfg, by_class)
            x, y = _batch(store, items, idx, cfg.crop, rng, tcfg, cfg.sample_rate)
            torch.manual_seed(tcfg.seed * 1_000_003 + step)
            loss = F.cross_entropy(model(x.to(device)), y.to(device), weight=w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
            log.write(json.dumps({"step": step + 1, "loss": round(loss.item(), 6)}) + "\n")
            done = step + 1
            if done % tcfg.save_every == 0 or done == tcfg.steps:
                bn = lambda: precise_bn(model, store, items, cfg, tcfg, done)
                _checkpoint(model, opt, out, done, meta, bn)
    finally:
        log.close()
    return out


def _bn_layers(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def precise_bn(model: Wav2Vec2AASIST, store: AudioStore | MultiStore, items: Sequence[Item], cfg: DetectorConfig,
               tcfg: TrainConfig, step: int) -> None:
    """Replace the BatchNorm running statistics by their plain average over ``precise_bn_batches`` training
    batches with the current weights. The exponential running averages lag behind fast-moving weights
    (measured on the demo data after 150 steps: every test score shifted by about +5, all inputs called
    spoof); the recomputed statistics match what the network saw in training."""
    layers = _bn_layers(model)
    if not layers or tcfg.precise_bn_batches <= 0:
        return
    was_training = model.training
    saved = [(m.momentum,) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = plain mean over the batches
    model.train()
    for b in range(tcfg.precise_bn_batches):
        rng = np.random.default_rng([tcfg.seed, step, 1 + b, 7])
        idx = draw_batch(rng, items, tcfg, _by_class(items))
        x, _ = _batch(store, items, idx, cfg.crop, rng, replace(tcfg, rawboost_algo=0), cfg.sample_rate)
        torch.manual_seed(tcfg.seed * 1_000_003 + step)
        model(x.to(next(model.parameters()).device))
    for m, (mom,) in zip(layers, saved):
        m.momentum = mom
    model.train(was_training)


def _checkpoint(model: Wav2Vec2AASIST, opt: torch.optim.Optimizer, out: Path, step: int, meta: dict,
                calibrate=None) -> None:
    """The resume state (raw weights, optimiser, step: one atomic file, so a run killed at any point
    resumes consistently), then the load_detector-able weights + config, with BatchNorm statistics
    recomputed by ``calibrate`` for the saved copy only (training continues from the raw state)."""
    tmp = out / (STATE_FILE + ".tmp")
    raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"model": raw, "optimizer": opt.state_dict(), "step": step}, tmp)
    if calibrate is not None:
        calibrate()
    save_detector(model, out, {**meta, "step": step})
    os.replace(tmp, out / STATE_FILE)
    model.load_state_dict(raw)
