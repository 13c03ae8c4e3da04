"""The ``train segdiff`` subcommand (registered by training/cli.py via :func:`add_parser` / :func:`run`)."""
from __future__ import annotations

import argparse
import json

from annotate.core.console import NON_NEGATIVE, POSITIVE, POSITIVE_FLOAT, between, check_options

from .config import preset, replace


HELP = "train SpecSegDiff (--condition spec) or ADDSegDiff (--condition detector); re-running resumes from OUT/last.pt"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``segdiff`` to a ``train`` subparsers object; returns the new parser."""
    p = subparsers.add_parser("segdiff", help=HELP, description=HELP)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train segdiff`` options."""
    p.add_argument("--dataset", required=True, help="dataset folder from `annotate build`")
    p.add_argument("--condition", choices=("spec", "detector"), default="spec",
                   help="spec = SpecSegDiff (spoof log-magnitude), detector = ADDSegDiff (frozen detector layers)")
    p.add_argument("--detector", help="`train detector` checkpoint (required for --condition detector)")
    p.add_argument("--out", required=True, help="checkpoint folder (config.json, last.pt, metrics.jsonl)")
    p.add_argument("--config", choices=("paper", "small"), default="small", help="named preset (default small: CPU)")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--crop-frames", type=int, help="training crop length in STFT frames (also the inference crop)")
    p.add_argument("--width", type=int, help="UNet base width")
    p.add_argument("--rrdb-blocks", type=int)
    p.add_argument("--parameterisation", choices=("eps", "x0", "logit"),
                   help="what the network predicts: the noise, the clean mask, or the clean mask's logit (BCE + Dice)")
    p.add_argument("--fg-weight", type=float, help="loss weight of foreground mask bins relative to background")
    p.add_argument("--t-max-fraction", type=float, help="share of each batch trained at t = T-1 (from the condition alone)")
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--ema-decay", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--val-every", type=int, help="steps between dev-split IoU checks")
    p.add_argument("--val-utterances", type=int, help="dev utterances scored at each check")
    p.add_argument("--ckpt-every", type=int)
    p.add_argument("--max-minutes", type=float, help="stop (and save) after this wall time; run again to resume")
    p.add_argument("--train-split", default="train")
    p.add_argument("--dev-split", default="dev", help="split for validation IoU ('' to skip)")
    p.add_argument("--limit", type=int, help="use only the first N training rows")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda if available, else cpu); under torchrun, cuda = each rank's local GPU")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the forward pass (GPUs only)")
    p.add_argument("--no-progress", action="store_true")


def build_config(a):
    """The preset named by ``--config`` with the command-line overrides applied."""
    cfg = preset(a.config, a.condition)
    model = replace(cfg.model, width=a.width, rrdb_blocks=a.rrdb_blocks)
    if a.condition == "detector":
        from .detector_features import frame_geometry, detector_spec, load_frozen_detector

        if not a.detector:
            raise SystemExit("error: --condition detector needs --detector CKPT (train one with `train detector`)")
        det = load_frozen_detector(a.detector)
        layers, dim = detector_spec(det)
        stride, field = frame_geometry(det)
        model = replace(model, detector_layers=layers, detector_dim=dim, detector_stride=stride, detector_field=field)
    diffusion = replace(cfg.diffusion, parameterisation=a.parameterisation)
    train = replace(cfg.train, steps=a.steps, batch_size=a.batch_size, crop_frames=a.crop_frames, lr=a.lr, fg_weight=a.fg_weight,
                    t_max_fraction=a.t_max_fraction,
                    weight_decay=a.weight_decay, ema_decay=a.ema_decay, seed=a.seed, val_every=a.val_every,
                    val_utterances=a.val_utterances, ckpt_every=a.ckpt_every, max_minutes=a.max_minutes)
    return replace(cfg, model=model, diffusion=diffusion, train=train)


def run(args) -> int:
    """Execute ``train segdiff`` with parsed ``args``."""
    import torch

    from training.distributed import finish, setup

    from .train import train

    check_options(args, {**{k: POSITIVE for k in ("steps", "batch_size", "crop_frames", "width", "rrdb_blocks", "val_every",
                                                  "val_utterances", "ckpt_every", "limit", "threads")},
                         "lr": POSITIVE_FLOAT, "fg_weight": POSITIVE_FLOAT, "t_max_fraction": between(0.0, 1.0), "weight_decay": NON_NEGATIVE, "seed": NON_NEGATIVE,
                         "ema_decay": between(0.0, 1.0, open_hi=True), "max_minutes": POSITIVE_FLOAT})
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = build_config(args)
    try:
        world = setup(args.device, bf16=args.bf16)  # a torchrun job's process group, or one process
        res = train(cfg, args.dataset, args.out, detector=args.detector, train_split=args.train_split,
                    dev_split=args.dev_split or None, train_limit=args.limit, progress=not args.no_progress,
                    log=print if world.main else (lambda *_: None), world=world)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    finish(world)
    if not world.main:
        return 0
    summary = {"out": args.out, "step": res["step"], "final_loss": sum(res["losses"][-50:]) / max(len(res["losses"][-50:]), 1),
               "val": res["val"][-1] if res["val"] else None, "stopped_early": res["stopped_early"]}
    print(json.dumps(summary, indent=2))
    return 0


def main(argv=None) -> int:
    """Standalone entry (``python -m training.segdiff.cli ...``) until ``train segdiff`` is registered."""
    parser = argparse.ArgumentParser(prog="segdiff")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
