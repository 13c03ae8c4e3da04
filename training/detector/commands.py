"""``train detector`` and ``train evaluate`` (argument parsing and wiring only; heavy imports are lazy)."""
from __future__ import annotations

import argparse
from pathlib import Path

from annotate.core.console import NON_NEGATIVE, POSITIVE, POSITIVE_FLOAT, PROBABILITY, check_options

from annotate.core.commands import Command


def _threads(n: int | None) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(n)


def _add_detector(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None,
                   help="dataset folder built by `annotate build` (required unless every --from names its dataset)")
    p.add_argument("--out", required=True, help="checkpoint folder (config.json + model.pt); resumed if it exists")
    p.add_argument("--config", default="small", choices=["small", "xlsr300m"], help="model size (default small)")
    p.add_argument("--frontend-weights", default=None,
                   help="local XLS-R checkpoint (torch state dict: torchaudio/fairseq/HF keys, or an HF folder); never downloaded")
    p.add_argument("--split", default="train")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: 3000 small, 20000 xlsr300m)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 8 small, 14 xlsr300m (paper)")
    p.add_argument("--lr", type=float, default=None, help="Adam lr (default: 5e-4 small, 1e-6 xlsr300m as in the paper)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--class-weights", default=None, metavar="BONA,SPOOF",
                   help="CE weights (index 0 bona fide, 1 spoof); default: inverse class frequency (equal with --balanced)")
    p.add_argument("--balanced", action=argparse.BooleanOptionalAction, default=None,
                   help="batches half bona fide, half spoof (default: on for small, off for xlsr300m)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rawboost-algo", type=int, default=0, choices=range(0, 9), help="on-the-fly RawBoost (paper: 5; 0 = off)")
    p.add_argument("--rawboost-prob", type=float, default=1.0)
    p.add_argument("--crop", type=int, default=None, help="crop length in samples (default: 16000 small, 64600 xlsr300m)")
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--sampler", default="all", choices=["all", "nc", "manifest"],
                   help="all = every train item; nc = neural-collapse selection from --from; manifest = --manifest CSV")
    p.add_argument("--from", dest="teacher", action="append", default=None, metavar="CKPT[:DS]",
                   help="--sampler nc: a trained detector whose embeddings select from its dataset DS (default --dataset); "
                        "repeat for NC across corpora (the student is the first teacher's shallower config)")
    p.add_argument("--nc-per-class", type=int, default=100, help="--sampler nc: items per class per teacher")
    p.add_argument("--nc-clusters", type=int, default=4, help="--sampler nc: K-means clusters for the spoof class")
    p.add_argument("--nc-pool", type=int, default=None, help="--sampler nc: embed at most this many train items per class")
    p.add_argument("--manifest", default=None, help="--sampler manifest: CSV with id,label")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda if available, else cpu); under torchrun, cuda = each rank's local GPU")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast of the forward pass (GPUs only)")
    p.add_argument("--no-progress", action="store_true")


def _split_teacher(value: str) -> tuple[str, str | None]:
    """``CKPT:DS`` -> (CKPT, DS), splitting at the first ':' whose left part is an existing path; ``CKPT`` -> (CKPT, None)."""
    for i, ch in enumerate(value):
        if ch == ":" and Path(value[:i]).exists() and value[i + 1:]:
            return value[:i], value[i + 1:]
    return value, None


def _teachers(values: list[str] | None, dataset: str | None, split: str) -> list[tuple[str, str]]:
    """The (checkpoint, dataset) pairs of the --from options, each checked before any work."""
    from annotate.core.dataset import shard_paths

    from .model import read_meta

    if not values:
        raise ValueError("--sampler nc needs --from CKPT[:DS] (a trained detector, and the dataset it selects from)")
    pairs = []
    for v in values:
        ck, ds = _split_teacher(v)
        ds = ds or dataset
        if not ds:
            raise ValueError(f"--from {v}: no dataset; write --from CKPT:DS or pass --dataset DS")
        read_meta(ck)  # a clear error if CKPT is not a checkpoint
        if not shard_paths(ds, split):
            raise FileNotFoundError(f"--from {v}: no {split!r} shards in {Path(ds) / 'data'}; is {ds} a dataset built by `annotate build`?")
        pairs.append((ck, ds))
    return pairs


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _run_detector(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..distributed import finish, setup
    from .config import TrainConfig, preset
    from .model import read_meta
    from .train import train

    check_options(a, {"steps": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE_FLOAT, "weight_decay": NON_NEGATIVE,
                      "seed": NON_NEGATIVE, "rawboost_prob": PROBABILITY, "crop": POSITIVE, "save_every": POSITIVE,
                      "nc_per_class": POSITIVE, "nc_clusters": POSITIVE, "nc_pool": POSITIVE, "threads": POSITIVE})
    _threads(a.threads)
    world = setup(a.device, bf16=a.bf16)  # a torchrun job's process group, or one process
    extra = {}
    items = None
    if a.sampler == "nc":
        from .config import DetectorConfig
        from .nc_run import MANIFEST, load_manifest_items, nc_sample_multi

        teachers = _teachers(a.teacher, a.dataset, a.split)
        a.dataset = a.dataset or teachers[0][1]
        cfg = DetectorConfig.from_dict(read_meta(teachers[0][0])[1]["config"]).shallower()
        manifest = Path(a.out) / MANIFEST
        if not manifest.exists() and world.main:  # rank 0 selects; the other ranks read its manifest
            manifest, items = nc_sample_multi(teachers, a.out, a.nc_per_class, clusters=a.nc_clusters, seed=a.seed,
                                              pool_per_class=a.nc_pool, split=a.split, progress=not a.no_progress,
                                              device=str(world.device))
        world.barrier()
        if items is None:  # resuming (the selection is deterministic, reuse it) or a rank other than 0
            items = load_manifest_items(a.dataset, manifest, a.split)
        extra = {"sampler": "nc", "teacher": teachers[0][0], "teachers": [{"checkpoint": c, "dataset": d} for c, d in teachers],
                 "manifest": str(manifest)}
        if world.main:
            print(f"NC selection: {len(items)} items from {len(teachers)} teacher(s) -> {manifest}")
    else:
        if not a.dataset:
            raise ValueError("--dataset DS is required (only --sampler nc can take the datasets from --from CKPT:DS)")
        if a.teacher:
            raise ValueError("--from is for --sampler nc; add --sampler nc or drop --from")
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
        steps=(3000 if small else 20000) if a.steps is None else a.steps,
        batch_size=(8 if small else 14) if a.batch_size is None else a.batch_size,
        lr=(5e-4 if small else 1e-6) if a.lr is None else a.lr, weight_decay=a.weight_decay, seed=a.seed, class_weights=cw,
        rawboost_algo=a.rawboost_algo, rawboost_prob=a.rawboost_prob, save_every=a.save_every,
        balanced=small if a.balanced is None else a.balanced,
    )
    out = train(a.dataset, a.out, cfg, tcfg, items=items, split=a.split, progress=not a.no_progress, extra_meta=extra,
                world=world)
    finish(world)
    if world.main:
        print(f"saved {out} (config.json + model.pt; logits index 0 = bona fide, 1 = spoof)")
    return 0


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", required=True, help="checkpoint folder (or its model.pt)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("-o", "--output", default=None, help="folder for scores.csv, metrics.json, eval.png (default: CKPT/eval-SPLIT)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-windows", type=int, default=8, help="crops averaged per utterance (1 = the paper's first crop)")
    p.add_argument("--nc", action="store_true",
                   help="also the neural-collapse explanation (nc.csv, nc_disagreements.csv, nc.json, nc_pca.png)")
    p.add_argument("--nc-train-per-class", type=int, default=500, help="training items per class for the NC class means")
    p.add_argument("--nc-train-dataset", default=None,
                   help="class means from this dataset's train split (default: the items the checkpoint was trained on)")
    p.add_argument("--nc-confidence", type=float, default=0.9,
                   help="agreement is also reported on items the model classifies with max softmax >= this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true")


def _run_evaluate(a: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .model import load_detector

    check_options(a, {"batch_size": POSITIVE, "max_windows": POSITIVE, "nc_train_per_class": POSITIVE,
                      "seed": NON_NEGATIVE, "threads": POSITIVE, "nc_confidence": PROBABILITY})
    from annotate.core.dataset import shard_paths

    for ds, split in ((a.dataset, a.split), (a.nc_train_dataset, "train")):
        if ds is not None and not shard_paths(ds, split):
            raise FileNotFoundError(f"no {split!r} shards in {Path(ds) / 'data'}; is {ds} a dataset built by `annotate build`?")
    _threads(a.threads)
    tr = None
    if a.nc:  # the NC class means' training items, resolved before any work
        from dataclasses import replace

        from .data import index_split
        from .nc_run import training_items

        tr = ([replace(it, dataset=str(a.nc_train_dataset)) for it in index_split(a.nc_train_dataset, "train")]
              if a.nc_train_dataset else training_items(a.detector))
    model = load_detector(a.detector, _device(a.device))
    det = Path(a.detector)
    out = Path(a.output) if a.output else (det if det.is_dir() else det.parent) / f"eval-{a.split}"
    res = evaluate(model, a.dataset, a.split, out, batch_size=a.batch_size, max_windows=a.max_windows, progress=not a.no_progress)
    print(f"EER {a.split}: {100 * res['eer']:.2f}%  mAP {res['map']:.4f}  ({res['n_bona']} bona fide, {res['n_spoof']} spoof)")
    for v, r in res["per_vocoder"].items():
        print(f"  {v:<20s} EER {100 * r['eer']:.2f}%  mAP {r['map']:.4f}  ({r['n_spoof']} spoof)")
    if a.nc:
        from .nc_run import nc_report

        nc = nc_report(model, a.dataset, a.split, out, train_items=tr, max_train_per_class=a.nc_train_per_class,
                       seed=a.seed, confidence=a.nc_confidence, progress=not a.no_progress)
        conf = nc["agreement_confident"]
        print(f"NC: nearest-mean label agrees with the model on {100 * nc['agreement']:.1f}% of {nc['n']} inputs, "
              + (f"{100 * conf:.1f}% of the {nc['n_confident']} with max softmax >= {a.nc_confidence:g} "
                 f"({len(nc['disagreements'])} disagreements listed)" if conf is not None else "no confident inputs")
              + f"; NC accuracy {100 * nc['nc_accuracy']:.1f}%, model {100 * nc['model_accuracy']:.1f}%")
    print(f"wrote {out}/metrics.json, scores.csv, eval.png" + (", nc.json, nc.csv, nc_disagreements.csv, nc_pca.png" if a.nc else ""))
    return 0


DETECTOR = Command("train the Wav2Vec2-AASIST detector (logits: 0 = bona fide, 1 = spoof)", _add_detector, _run_detector)
EVALUATE = Command("EER and mAP overall and per vocoder of a trained detector on any dataset (+ NC explanation with --nc)", _add_evaluate, _run_evaluate)
