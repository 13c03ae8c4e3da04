"""The neural-collapse generalisation experiment (seed paper "Audio Deep Fake Detection"): distinct teachers on
disjoint vocoder groups, an NC student on a fraction of their data, and a detector on everything, all evaluated on
a held-out spoof kind and held-out speakers (the dataset's test split). Prints EER, mAP and training items per model.

Each vocoder group becomes a dataset of its own (``training.detector.subset.vocoder_subset``, train split only);
the held-out vocoder is in no training set. Everything goes through the ``train`` commands, so each model folder
under ``--out`` can be inspected and re-evaluated; a rerun resumes what is finished.

    python perf/nc_generalisation.py --dataset DS --holdout-vocoder lpc --steps 1000 --nc-per-class 100 --out runs/ncgen
    python perf/nc_generalisation.py --dataset DS --holdout-vocoder opus --groups griffinlim,world mp3 --out runs/ncgen2
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

CODECS = ("mp3", "opus")


def default_groups(vocoders: list[str]) -> list[list[str]]:
    """Codecs against the other vocoders when both are present, else the sorted list cut in two halves."""
    codecs = [v for v in vocoders if v in CODECS]
    rest = [v for v in vocoders if v not in CODECS]
    if codecs and rest:
        return [rest, codecs]
    h = (len(vocoders) + 1) // 2
    return [vocoders[:h], vocoders[h:]]


def _scores(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, vocoders, scores) of an evaluation's scores.csv."""
    rows = list(csv.DictReader(open(path)))
    return (np.array([int(r["label"]) for r in rows]), np.array([r["vocoder"] for r in rows]),
            np.array([float(r["score"]) for r in rows]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="a built dataset with train and test splits (speaker-disjoint)")
    p.add_argument("--holdout-vocoder", required=True, help="the spoof kind no model trains on")
    p.add_argument("--groups", nargs="+", default=None, metavar="V1,V2",
                   help="one comma-separated vocoder group per teacher (default: codecs vs the rest, or two halves)")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps of every model")
    p.add_argument("--nc-per-class", type=int, default=100, help="the student's items per class per teacher")
    p.add_argument("--nc-clusters", type=int, default=4)
    p.add_argument("--config", default="small", choices=["small", "xlsr300m"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)

    from annotate.core.dataset import read_table, shard_paths
    from training.cli import main as train_cli
    from training.detector.evaluate import average_precision, eer
    from training.detector.subset import vocoder_subset

    ds, out = Path(a.dataset), Path(a.out)
    for split in ("train", "test"):
        if not shard_paths(ds, split):
            p.error(f"{ds} has no {split!r} shards; the experiment needs a built dataset with train and test splits")
    if a.steps < 1 or a.nc_per_class < 1:
        p.error("--steps and --nc-per-class must be positive")
    train_vocs = sorted(set(read_table(ds, "train", ["vocoder"]).column("vocoder").to_pylist()))
    test_vocs = set(read_table(ds, "test", ["vocoder"]).column("vocoder").to_pylist())
    if a.holdout_vocoder not in train_vocs or a.holdout_vocoder not in test_vocs:
        p.error(f"--holdout-vocoder {a.holdout_vocoder}: not a vocoder of both splits (train has {train_vocs})")
    seen = [v for v in train_vocs if v != a.holdout_vocoder]
    groups = [g.split(",") for g in a.groups] if a.groups else default_groups(seen)
    flat = [v for g in groups for v in g]
    if len(groups) < 2 or any(not g for g in groups) or len(set(flat)) != len(flat) or not set(flat) <= set(seen):
        p.error(f"--groups must be at least two disjoint non-empty groups of {seen} (the held-out vocoder excluded)")
    common = ["--steps", str(a.steps), "--seed", str(a.seed), "--save-every", str(a.steps)]
    common += ["--threads", str(a.threads)] if a.threads else []

    def run(args: list[str]) -> None:
        if train_cli(args) != 0:
            raise SystemExit(f"failed: train {' '.join(args)}")

    data = out / "data"
    teachers = []
    for i, g in enumerate(groups):
        sub = vocoder_subset(ds, data / f"group{i}", g, split_names=["train"])
        run(["detector", "--dataset", str(sub), "--out", str(out / f"teacher{i}"), "--config", a.config, *common])
        teachers.append((out / f"teacher{i}", sub, "+".join(g)))
    every = vocoder_subset(ds, data / "all", flat, split_names=["train"])
    run(["detector", "--dataset", str(every), "--out", str(out / "all"), "--config", a.config, *common])
    froms = [x for ck, sub, _ in teachers for x in ("--from", f"{ck}:{sub}")]
    run(["detector", "--out", str(out / "student"), "--sampler", "nc", *froms, "--nc-per-class", str(a.nc_per_class),
         "--nc-clusters", str(a.nc_clusters), *common])

    models = [(f"teacher {name}", ck) for ck, _, name in teachers]
    models += [("NC student (" + " + ".join(n for *_, n in teachers) + ")", out / "student"), ("all (" + "+".join(flat) + ")", out / "all")]
    table = []
    for name, ck in models:
        ev = ck / "eval-test"
        run(["evaluate", "--detector", str(ck), "--dataset", str(ds), "--split", "test", "-o", str(ev), "--seed", str(a.seed),
             *(["--threads", str(a.threads)] if a.threads else [])])
        tr = json.loads((ck / "config.json").read_text())["train"]
        y, v, s = _scores(ev / "scores.csv")
        held = (y == 0) | (v == a.holdout_vocoder)
        known = (y == 0) | (v != a.holdout_vocoder)
        table.append({"model": name, "train_items": tr["n_bona"] + tr["n_spoof"],
                      "eer": eer(y, s)[0], "map": average_precision(y, s),
                      "eer_holdout": eer(y[held], s[held])[0], "map_holdout": average_precision(y[held], s[held]),
                      "eer_seen": eer(y[known], s[known])[0], "map_seen": average_precision(y[known], s[known])})
    head = (f"{'model':<44s} {'items':>6s}  {'EER':>6s} {'mAP':>6s}  {'EER ' + a.holdout_vocoder:>12s} "
            f"{'mAP ' + a.holdout_vocoder:>12s}  {'EER seen':>8s} {'mAP seen':>8s}")
    lines = [f"{a.dataset}: test split (held-out speakers), held-out vocoder {a.holdout_vocoder}, {a.steps} steps each, "
             f"NC {a.nc_per_class} per class per teacher", head]
    for r in table:
        lines.append(f"{r['model']:<44s} {r['train_items']:6d}  {100 * r['eer']:5.1f}% {r['map']:6.3f}  "
                     f"{100 * r['eer_holdout']:11.1f}% {r['map_holdout']:12.3f}  {100 * r['eer_seen']:7.1f}% {r['map_seen']:8.3f}")
    print("\n".join(lines))
    (out / "table.txt").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"args": vars(a), "groups": groups, "rows": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
