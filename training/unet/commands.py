"""``train unet``: the supervised U-Net explainer (listed in training/cli.py as ``UNET``)."""
from __future__ import annotations

import argparse
import json
import sys

from annotate.core.commands import Command

from .config import PRESETS, preset, replace

HELP = ("train the supervised U-Net explainer (BCE + soft Dice on 128-frame crops of the spoof log-magnitude); "
        "re-running with more --steps resumes from OUT/last.pt")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train unet`` options (unset ones take the preset's value)."""
    d = preset("small").train
    p.add_argument("--dataset", required=True, help="dataset folder from `annotate build`")
    p.add_argument("--out", required=True, help="checkpoint folder (last.pt, config.json, metrics.jsonl)")
    p.add_argument("--config", choices=PRESETS, default="small", help="named preset (default small: a CPU)")
    p.add_argument("--steps", type=int, help=f"total optimiser steps (small preset: {d.steps}, at most ~15 CPU-minutes on one core, docs/performance.md)")
    p.add_argument("--batch-size", type=int, help=f"crops per step (small preset: {d.batch_size})")
    p.add_argument("--crop-frames", type=int, help=f"training crop length in STFT frames (small preset: {d.crop_frames})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (small preset: {d.lr})")
    p.add_argument("--seed", type=int, help="seed of the initial weights and of the crops (default 0)")
    p.add_argument("--val-every", type=int, help=f"steps between dev-split IoU checks (small preset: {d.val_every})")
    p.add_argument("--val-utterances", type=int, help=f"dev utterances scored at each check (small preset: {d.val_utterances})")
    p.add_argument("--train-split", default="train")
    p.add_argument("--dev-split", default="dev", help="split for validation IoU ('' to skip)")
    p.add_argument("--limit", type=int, help="use only the first N training rows")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda if available, else cpu); under torchrun, cuda = each rank's local GPU")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the forward pass (GPUs only)")
    p.add_argument("--no-progress", action="store_true")


def check_arguments(a: argparse.Namespace) -> None:
    """One-line ValueError for a bad parameter, before any data is read."""
    for name in ("steps", "batch_size", "crop_frames", "val_every", "val_utterances", "limit", "threads"):
        v = getattr(a, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if a.lr is not None and not a.lr > 0:
        raise ValueError(f"--lr must be positive, got {a.lr}")
    if a.seed is not None and a.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {a.seed}")


def build_config(a: argparse.Namespace):
    """The preset named by ``--config`` with the command-line overrides applied."""
    cfg = preset(a.config)
    train = replace(cfg.train, steps=a.steps, batch_size=a.batch_size, crop_frames=a.crop_frames, lr=a.lr, seed=a.seed,
                    val_every=a.val_every, val_utterances=a.val_utterances)
    return replace(cfg, train=train)


def run(a: argparse.Namespace) -> int:
    """Execute ``train unet``; bad input raises ValueError / FileNotFoundError (``train`` prints one line, exit 2)."""
    check_arguments(a)
    import torch

    from training.distributed import finish, setup

    from .train import train

    if a.threads is not None:
        torch.set_num_threads(a.threads)
    world = setup(a.device, bf16=a.bf16)  # a torchrun job's process group, or one process
    res = train(build_config(a), a.dataset, a.out, train_split=a.train_split, dev_split=a.dev_split or None,
                train_limit=a.limit, progress=not a.no_progress,
                log=lambda m: print(m, file=sys.stderr) if world.main else None, world=world)
    finish(world)
    if not world.main:
        return 0
    recent = res["losses"][-50:]
    summary = {"out": a.out, "step": res["step"], "final_loss": sum(recent) / len(recent) if recent else None,
               "val": res["val"][-1] if res["val"] else None}
    print(json.dumps(summary, indent=2))
    return 0


UNET = Command(help=HELP, add_arguments=add_arguments, run=run)
