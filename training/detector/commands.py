"""``train detector`` and ``train evaluate`` (argument parsing and wiring only; heavy imports are lazy)."""
from __future__ import annotations

import argparse
from pathlib import Path

from annotate.console import NON_NEGATIVE, POSITIVE, POSITIVE_FLOAT, PROBABILITY, check_options

from ..cli import Command


def _threads(n: int | None) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(n)


def _add_detector(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset folder built by `annotate build`")
    p.add_argument("--out", required=True, help="checkpoint folder (config.json + model.pt); resumed if it exists")
    p.add_argument("--config", default="small", choices=["small", "xlsr300m"], help="model size (default small)")
    p.add_argument("--frontend-weights", default=None,
                   help="local XLS-R checkpoint (torch state dict: torchaudio/fairseq/HF keys, or an HF folder); never downloaded")
    p.add_argument("--split", default="train")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 1000 small, 20000 xlsr300m)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 8 small, 14 xlsr300m (paper)")
    p.add_argument("--lr", type=float, default=None, help="Adam lr (default: 5e-4 small, 1e-6 xlsr300m as in the paper)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--class-weights", default=None, metavar="BONA,SPOOF",
                   help="CE weights (index 0 bona fide, 1 spoof); default: inverse class frequency")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rawboost-algo", type=int, default=0, choices=range(0, 9), help="on-the-fly RawBoost (paper: 5; 0 = off)")
    p.add_argument("--rawboost-prob", type=float, default=1.0)
    p.add_argument("--crop", type=int, default=None, help="crop length in samples (default: 16000 small, 64600 xlsr300m)")
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--sampler", default="all", choices=["all", "nc", "manifest"],
                   help="all = every train item; nc = neural-collapse selection from --from; manifest = --manifest CSV")
    p.add_argument("--from", dest="teacher", default=None, help="--sampler nc: the trained detector whose embeddings select")
    p.add_argument("--nc-per-class", type=int, default=100, help="--sampler nc: items per class")
    p.add_argument("--nc-clusters", type=int, default=4, help="--sampler nc: K-means clusters for the spoof class")
    p.add_argument("--nc-pool", type=int, default=None, help="--sampler nc: embed at most this many train items per class")
    p.add_argument("--manifest", default=None, help="--sampler manifest: CSV with id,label")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true")


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _run_detector(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from .config import TrainConfig, preset
    from .model import read_meta
    from .train import train

    check_options(a, {"steps": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE_FLOAT, "weight_decay": NON_NEGATIVE,
                      "seed": NON_NEGATIVE, "rawboost_prob": PROBABILITY, "crop": POSITIVE, "save_every": POSITIVE,
                      "nc_per_class": POSITIVE, "nc_clusters": POSITIVE, "nc_pool": POSITIVE, "threads": POSITIVE})
    _threads(a.threads)
    extra = {}
    items = None
    if a.sampler == "nc":
        if not a.teacher:
            raise ValueError("--sampler nc needs --from CKPT (a trained detector)")
        from .config import DetectorConfig
        from .nc_run import MANIFEST, load_manifest_items, nc_sample

        cfg = DetectorConfig.from_dict(read_meta(a.teacher)[1]["config"]).shallower()
        manifest = Path(a.out) / MANIFEST
        if manifest.exists():  # resuming: the selection is deterministic, reuse it
            items = load_manifest_items(a.dataset, manifest, a.split)
        else:
            manifest, items = nc_sample(a.teacher, a.dataset, a.out, a.nc_per_class, clusters=a.nc_clusters, seed=a.seed,
                                        pool_per_class=a.nc_pool, split=a.split, progress=not a.no_progress,
                                        device=_device(a.device))
        extra = {"sampler": "nc", "teacher": str(a.teacher), "manifest": str(manifest)}
        print(f"NC selection: {len(items)} items -> {manifest}")
    else:
        cfg = preset(a.config, a.frontend_weights)
        if a.sampler == "manifest":
            if not a.manifest:
                raise ValueError("--sampler manifest needs --manifest FILE.csv (columns id,label)")
            from .nc_run import load_manifest_items

            items = load_manifest_items(a.dataset, a.manifest, a.split)
            extra = {"sampler": "manifest", "manifest": str(a.manifest)}
    if a.crop is not None:
        cfg = replace(cfg, crop=a.crop)
    small = cfg.frontend.embed_dim < 1024
    cw = tuple(float(v) for v in a.class_weights.split(",")) if a.class_weights else None
    if cw is not None and len(cw) != 2:
        raise ValueError(f"--class-weights needs two numbers BONA,SPOOF, got {a.class_weights!r}")
    tcfg = TrainConfig(
        steps=(1000 if small else 20000) if a.steps is None else a.steps,
        batch_size=(8 if small else 14) if a.batch_size is None else a.batch_size,
        lr=(5e-4 if small else 1e-6) if a.lr is None else a.lr, weight_decay=a.weight_decay, seed=a.seed, class_weights=cw,
        rawboost_algo=a.rawboost_algo, rawboost_prob=a.rawboost_prob, save_every=a.save_every,
    )
    out = train(a.dataset, a.out, cfg, tcfg, items=items, split=a.split, progress=not a.no_progress, extra_meta=extra,
                device=_device(a.device))
    print(f"saved {out} (config.json + model.pt; logits index 0 = bona fide, 1 = spoof)")
    return 0


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", required=True, help="checkpoint folder (or its model.pt)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("-o", "--output", default=None, help="folder for scores.csv, metrics.json, eval.png (default: CKPT/eval-SPLIT)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-windows", type=int, default=8, help="crops averaged per utterance (1 = the paper's first crop)")
    p.add_argument("--nc", action="store_true", help="also the neural-collapse explanation (nc.csv, nc_pca.png)")
    p.add_argument("--nc-train-per-class", type=int, default=500, help="train items per class for the NC class means")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true")


def _run_evaluate(a: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .model import load_detector

    check_options(a, {"batch_size": POSITIVE, "max_windows": POSITIVE, "nc_train_per_class": POSITIVE,
                      "seed": NON_NEGATIVE, "threads": POSITIVE})
    _threads(a.threads)
    model = load_detector(a.detector, _device(a.device))
    det = Path(a.detector)
    out = Path(a.output) if a.output else (det if det.is_dir() else det.parent) / f"eval-{a.split}"
    res = evaluate(model, a.dataset, a.split, out, batch_size=a.batch_size, max_windows=a.max_windows, progress=not a.no_progress)
    print(f"EER {a.split}: {100 * res['eer']:.2f}%  ({res['n_bona']} bona fide, {res['n_spoof']} spoof)")
    for v, r in res["per_vocoder"].items():
        print(f"  {v:<20s} EER {100 * r['eer']:.2f}%  ({r['n_spoof']} spoof)")
    if a.nc:
        from .nc_run import nc_report

        nc = nc_report(model, a.dataset, a.split, out, max_train_per_class=a.nc_train_per_class, seed=a.seed,
                       progress=not a.no_progress)
        print(f"NC: nearest-mean label agrees with the model on {100 * nc['agreement']:.1f}% of {nc['n']} inputs "
              f"(NC accuracy {100 * nc['nc_accuracy']:.1f}%, model {100 * nc['model_accuracy']:.1f}%)")
    print(f"wrote {out}/metrics.json, scores.csv, eval.png" + (", nc.csv, nc_pca.png" if a.nc else ""))
    return 0


DETECTOR = Command("train the Wav2Vec2-AASIST detector (logits: 0 = bona fide, 1 = spoof)", _add_detector, _run_detector)
EVALUATE = Command("EER overall and per vocoder of a trained detector (+ NC explanation with --nc)", _add_evaluate, _run_evaluate)
