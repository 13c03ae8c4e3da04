"""Training loop: BCE (foreground pos_weight) + soft Dice on SegDiff's random time crops, Adam, periodic dev IoU.

Crops come from :class:`training.segdiff.data.CropSampler` (a pure function of (seed, step)) and the model
has no other randomness, so re-running the same command with more ``--steps`` resumes from ``last.pt`` and
ends with the weights an uninterrupted run would have. Dev IoU uses :mod:`benchmark.metrics` (heatmaps
binarised at their own 95% quantile, as ``benchmark score`` does).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from training.distributed import World
from training.segdiff.data import CropSampler, SpecCondition, Utterance, load_split

from training.segdiff.losses import bce_dice as loss_fn

from .config import UNetConfig, replace
from .infer import CONFIG_FILE, METHOD, STATE_FILE, Normaliser, heatmap
from .model import UNet




@torch.no_grad()
def evaluate(model: UNet, utts: list[Utterance], max_frames: int) -> dict:
    """Mean IoU / F1 (percent, ``benchmark.metrics``) of each utterance's whole heatmap against its mask."""
    from benchmark.metrics import heatmap_iou_f1

    model.eval()
    ious, f1s = zip(*(heatmap_iou_f1(heatmap(model, u.logmag, max_frames), u.mask) for u in utts))
    return {"iou": float(np.mean(ious)), "f1": float(np.mean(f1s)), "n": len(utts)}


def _free_settings(cfg: UNetConfig) -> UNetConfig:
    """``cfg`` with the settings that may change between resumed runs reset to the defaults."""
    d = UNetConfig().train
    return replace(cfg, train=replace(cfg.train, steps=d.steps, val_every=d.val_every, val_utterances=d.val_utterances,
                                      ckpt_every=d.ckpt_every), max_frames=UNetConfig().max_frames)


def _save(out: Path, state: dict, meta: dict) -> None:
    """Atomic writes of ``last.pt`` and ``config.json``."""
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / STATE_FILE)
    tmpc = out / (CONFIG_FILE + ".tmp")
    tmpc.write_text(json.dumps(meta, indent=2))
    os.replace(tmpc, out / CONFIG_FILE)


def train(cfg: UNetConfig, dataset: str | Path, out: str | Path, *, train_split: str = "train", dev_split: str | None = "dev",
          train_limit: int | None = None, utts: list[Utterance] | None = None, dev_utts: list[Utterance] | None = None,
          progress: bool = True, log=print, world: World | None = None) -> dict:
    """Train (or resume) a U-Net; returns {"step", "losses", "val": [...], "normaliser"}. Under torchrun (``world``)
    each rank trains on its part of every global batch; rank 0 validates and writes.

    ``utts`` / ``dev_utts`` may be given directly with RAW log-magnitudes (tests); otherwise they are read from
    ``dataset``. Either way they are standardised here by the training rows' mean/std (or the checkpoint's)."""
    from tqdm import tqdm

    out, tc = Path(out), cfg.train
    world = world or World()
    part = world.part(tc.batch_size)
    state = None
    if (out / STATE_FILE).exists():
        state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
        if state.get("method") != METHOD:
            raise ValueError(f"{out} holds a checkpoint of another method (not `train unet`): pass a new --out")
        if _free_settings(UNetConfig.from_dict(state["config"])) != _free_settings(cfg):
            raise ValueError(f"{out} holds a checkpoint with another config: pass a new --out or the same options")
    if utts is None:
        utts = load_split(dataset, train_split, limit=train_limit, normalise=None)
    if dev_utts is None and dev_split:
        try:
            dev_utts = load_split(dataset, dev_split, limit=tc.val_utterances, normalise=None)
        except (FileNotFoundError, ValueError) as e:
            log(f"no validation: {e}")
    norm = Normaliser(*state["normalisation"]) if state else Normaliser.fit(utts)
    utts, dev_utts = norm.apply(utts), norm.apply(dev_utts or [])

    torch.manual_seed(tc.seed)
    net = UNet(cfg.model).to(world.device)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr)
    step, cpu_seconds = 0, 0.0
    if state:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, cpu_seconds = int(state["step"]), float(state.get("cpu_seconds", 0.0))
        log(f"resuming {out} at step {step}")
    model = world.wrap(net)  # DDP across ranks (the same module on one process)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
    sampler = CropSampler(utts, tc.crop_frames, tc.batch_size, tc.seed, SpecCondition())
    meta = {"method": METHOD, "dataset": str(dataset), "train_split": train_split, "train_rows": len(utts)}
    t_start, cpu0, losses, vals = time.time(), time.process_time(), [], []
    bar = tqdm(total=tc.steps, initial=step, disable=not (progress and world.main), desc="unet", unit="step")
    since_log: list[float] = []
    while step < tc.steps:
        model.train()
        x, x0, valid = (t.to(world.device) for t in sampler.batch(step, part))
        with world.autocast():
            logits = model(x)
        loss = loss_fn(logits.float(), (x0 + 1) / 2, valid, tc.pos_weight, tc.dice_weight, world=world)  # the whole batch's loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(world.mean(loss))
        since_log.append(losses[-1])
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        last = step == tc.steps
        do_val = bool(dev_utts) and (step % tc.val_every == 0 or last)
        if (step % tc.ckpt_every == 0 or last or do_val) and world.main:
            record = {"step": step, "loss": float(np.mean(since_log)), "wall_s": round(time.time() - t_start, 1)}
            since_log = []
            if do_val:
                record["val"] = evaluate(net, dev_utts, cfg.max_frames)
                vals.append({"step": step, **record["val"]})
                log(f"step {step}: loss {record['loss']:.4f}, dev IoU {record['val']['iou']:.2f}, F1 {record['val']['f1']:.2f}")
            cpu_seconds += time.process_time() - cpu0
            cpu0 = time.process_time()
            _save(out, {"method": METHOD, "model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "config": cfg.to_dict(), "normalisation": [norm.mean, norm.std], "cpu_seconds": cpu_seconds,
                        **{k: v for k, v in meta.items() if k != "method"}},
                  {**meta, "config": cfg.to_dict(), "normalisation": {"mean": norm.mean, "std": norm.std}, "step": step,
                   "cpu_seconds": round(cpu_seconds, 1)})
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
        if step % tc.ckpt_every == 0 or last or do_val:
            world.barrier()  # the other ranks wait while rank 0 validates and saves
    bar.close()
    return {"step": step, "losses": losses, "val": vals, "normaliser": norm}
