"""Training loop: eps-MSE on random time crops, Adam, EMA, periodic dev IoU, resumable checkpoints.

A checkpoint folder holds ``config.json`` (config, dataset, detector, step) and ``last.pt`` (model, EMA,
optimiser, step, RNG states; loadable with ``torch.load(weights_only=True)``). Running the same command
again resumes from ``last.pt``; batches are a pure function of (seed, step), so the resumed run replays
exactly what an uninterrupted one would have seen.
"""
from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from .config import SegDiffConfig, replace
from annotate.core.spectral import DEFAULT_STFT
from training.distributed import World

from .data import CropSampler, Normaliser, SpecCondition, Utterance, load_split
from .diffusion import Diffusion
from .infer import CONFIG_FILE, STATE_FILE, explain_utterance
from .model import SegDiffUNet


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * model, parameter by parameter (buffers copied)."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def ema_decay(step: int, target: float) -> float:
    """Warm-up decay min(target, (1+step)/(10+step)): early EMA tracks the model instead of its init."""
    return min(target, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def evaluate(model: SegDiffUNet, diff: Diffusion, utts, condition, cfg: SegDiffConfig, *, n_samples: int,
             ddim_steps: int | None, seed: int = 0) -> dict:
    """Mean IoU/F1 (percent, ``benchmark.metrics``) over ``utts`` of the averaged heatmap against the mask."""
    from benchmark.metrics import heatmap_iou_f1

    model.eval()
    ious, f1s, hop_length = [], [], DEFAULT_STFT.hop_length
    n = cfg.train.val_max_frames
    for u in utts:
        if n and u.frames > n:
            u = Utterance(u.id, u.logmag[:n], u.mask[:n], None if u.audio is None else u.audio[: n * hop_length])
        heat = explain_utterance(model, diff, u, condition, cfg.train.crop_frames, n_samples=n_samples,
                                 ddim_steps=ddim_steps, seed=seed, hop=cfg.train.crop_frames)
        iou, f1 = heatmap_iou_f1(heat, u.mask)
        ious.append(iou)
        f1s.append(f1)
    return {"iou": float(np.mean(ious)), "f1": float(np.mean(f1s)), "n": len(utts)}


def _save(out: Path, cfg: SegDiffConfig, meta: dict, model, ema, opt, step: int, gen: torch.Generator) -> None:
    """Atomic write of the training state and the config JSON."""
    state = {
        "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "step": step,
        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
    }
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / STATE_FILE)
    tmpc = out / (CONFIG_FILE + ".tmp")
    tmpc.write_text(json.dumps({**meta, "config": cfg.to_dict(), "step": step}, indent=2))
    os.replace(tmpc, out / CONFIG_FILE)


def _check_same(out: Path, cfg: SegDiffConfig) -> None:
    """Refuse to resume a folder trained with another config (a silent mix would be meaningless)."""
    p = out / CONFIG_FILE
    if p.exists():
        old = SegDiffConfig.from_dict(json.loads(p.read_text())["config"])
        t = cfg.train
        free = dict(steps=t.steps, max_minutes=t.max_minutes, val_every=t.val_every, ckpt_every=t.ckpt_every,
                    val_utterances=t.val_utterances, val_samples=t.val_samples, val_ddim_steps=t.val_ddim_steps)
        if replace(old, train=replace(old.train, **free)) != cfg:
            raise ValueError(f"{out} holds a checkpoint with another config: pass a new --out or the same options")


def train(cfg: SegDiffConfig, dataset: str | Path, out: str | Path, *, detector: str | None = None, train_split: str = "train",
          dev_split: str | None = "dev", train_limit: int | None = None, utts=None, dev_utts=None, condition=None,
          progress: bool = True, log=print, world: World | None = None) -> dict:
    """Train (or resume) a SegDiff model; returns {"step", "loss", "val": [...]}. Under torchrun (``world``) each rank
    trains on its part of every global batch; rank 0 validates and writes.

    ``utts`` / ``dev_utts`` / ``condition`` may be given directly (tests); otherwise they are read from ``dataset``.
    """
    from tqdm import tqdm

    out = Path(out)
    tc = cfg.train
    world = world or World()
    part = world.part(tc.batch_size)
    torch.manual_seed(tc.seed)
    torch.set_flush_denormal(True)  # tiny EMA/Adam values as denormals slow every later step several-fold
    with_audio = cfg.model.condition == "detector"
    if condition is None:
        if with_audio:
            from .data import DetectorCondition
            from .detector_features import load_frozen_detector

            if not detector:
                raise ValueError("--condition detector needs --detector CKPT (a `train detector` checkpoint)")
            condition = DetectorCondition(load_frozen_detector(detector), cfg.model.detector_layers)
        else:
            condition = SpecCondition()
    by_dataset = cfg.normalisation == "dataset"
    raw = {"normalise": None} if by_dataset else {}
    from_rows, dev_from_rows = utts is None, dev_utts is None  # rows read here are raw when normalised by dataset
    if utts is None:
        utts = load_split(dataset, train_split, with_audio=with_audio, limit=train_limit, **raw)
    if dev_utts is None and dev_split:
        try:
            dev_utts = load_split(dataset, dev_split, with_audio=with_audio, limit=tc.val_utterances, **raw)
        except (FileNotFoundError, ValueError) as e:
            log(f"no validation: {e}")
    _check_same(out, cfg)
    norm = None
    if by_dataset:  # fitted once on the training rows, kept in the checkpoint, applied at inference
        saved = json.loads((out / CONFIG_FILE).read_text()).get("normalisation") if (out / CONFIG_FILE).exists() else None
        norm = Normaliser(*saved) if saved else Normaliser.fit(utts) if from_rows else None
        if norm is not None and from_rows:
            utts = norm.apply(utts)
        if norm is not None and dev_from_rows and dev_utts:
            dev_utts = norm.apply(dev_utts)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)

    net = SegDiffUNet(cfg.model).to(world.device, memory_format=torch.channels_last)
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    gen = torch.Generator().manual_seed(tc.seed)
    step, prev = 0, {}
    if (out / STATE_FILE).exists():
        st = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
        net.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["optimizer"])
        gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        step = int(st["step"])
        prev = json.loads((out / CONFIG_FILE).read_text())
        log(f"resuming {out} at step {step}")
    model = world.wrap(net)  # DDP across ranks (the same module on one process)
    meta = {"dataset": str(dataset), "detector": str(detector) if detector else None, "train_split": train_split,
            "train_rows": len(utts), "method": "specsegdiff" if cfg.model.condition == "spec" else "addsegdiff",
            "cpu_seconds": prev.get("cpu_seconds", 0.0) if step else 0.0, "processes": world.size}
    if norm is not None:
        meta["normalisation"] = [norm.mean, norm.std]
    diff = Diffusion(cfg.diffusion)
    sampler = CropSampler(utts, tc.crop_frames, tc.batch_size, tc.seed, condition)
    hist_path = out / "metrics.jsonl"
    t_start, cpu0, losses, vals = time.time(), time.process_time(), [], []
    bar = tqdm(total=tc.steps, initial=step, disable=not (progress and world.main), desc="segdiff", unit="step")
    stopped, seen = False, []
    while step < tc.steps:
        model.train()
        cond, x0, valid = (t.to(world.device) for t in sampler.batch(step, part))
        if tc.shuffle_condition:  # a derangement (within this rank's part): no crop keeps its own condition
            cond = cond.roll(1, 0)
        with world.autocast():
            loss = diff.loss(model, x0, cond, gen, valid, fg_weight=tc.fg_weight, t_max_fraction=tc.t_max_fraction,
                             world=world)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, net, ema_decay(step, tc.ema_decay))
        if world.size > 1:  # the utterances each rank trained on (logged by rank 0)
            seen.append(world.gather(sampler.ids(step, part)))
        step += 1
        losses.append(world.mean(loss))
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        out_of_time = tc.max_minutes > 0 and world.mean(float(time.time() - t_start > tc.max_minutes * 60)) > 0
        last = step == tc.steps or out_of_time
        record = {"step": step, "loss": float(np.mean(losses[-tc.ckpt_every:])), "wall_s": round(time.time() - t_start, 1)}
        if seen and world.main:
            record["items"] = seen  # per step since the last record: each rank's utterance ids
        if dev_utts and (step % tc.val_every == 0 or last) and world.main:
            record["val"] = evaluate(ema, diff, dev_utts, condition, cfg, n_samples=tc.val_samples, ddim_steps=tc.val_ddim_steps)
            vals.append({"step": step, **record["val"]})
            log(f"step {step}: loss {record['loss']:.4f}, dev IoU {record['val']['iou']:.2f}, F1 {record['val']['f1']:.2f}")
        if step % tc.ckpt_every == 0 or last or (dev_utts and step % tc.val_every == 0):
            if world.main:
                meta["cpu_seconds"] = meta.get("cpu_seconds", 0.0) + time.process_time() - cpu0
                cpu0 = time.process_time()
                _save(out, cfg, meta, net, ema, opt, step, gen)
                with hist_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            seen = []
            world.barrier()  # the other ranks wait while rank 0 validates and saves
        if out_of_time:
            log(f"stopping at step {step}: --max-minutes {tc.max_minutes} reached (run again to resume)")
            stopped = True
            break
    bar.close()
    return {"step": step, "losses": losses, "val": vals, "stopped_early": stopped}
