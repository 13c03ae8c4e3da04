"""What holds the small detector back on real speech: train variants of the `small` preset on a dataset's train
split and print each one's test EER per spoof kind with its training CPU time (one run, one table).

    python perf/detector_defaults.py --dataset runs/devcorpus/ds --out runs/detvariants --variants default,conv,logspec

Each variant is the `small` preset with a few settings changed (see VARIANTS); training is single-threaded, so
its CPU time is its budget. A variant already trained in ``--out`` is evaluated again, not retrained.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

CONV = {"extractor": "conv"}  # the waveform conv extractor (the small preset's front end until 2026-12-06)
PLAIN = {"steps": 1000, "balanced": False}  # the training defaults of that time
VARIANTS = {
    # name: (DetectorConfig changes, TrainConfig changes, frontend changes)
    "default": ({}, {}, {}),  # `train detector --config small` today: log-spectral stem, 3000 balanced steps
    "conv": ({}, PLAIN, CONV),  # the former defaults
    "conv_steps4k": ({}, {**PLAIN, "steps": 4000}, CONV),
    "conv_balanced4k": ({}, {"steps": 4000, "balanced": True}, CONV),
    "conv_balanced4k_nonorm": ({}, {"steps": 4000, "balanced": True}, {**CONV, "normalize_input": False}),
    "conv_balanced4k_lr1e-4": ({}, {"steps": 4000, "balanced": True, "lr": 1e-4}, CONV),
    "conv_nonorm800": ({}, {**PLAIN, "steps": 800}, {**CONV, "normalize_input": False}),
    "conv_crop3s800": ({"crop": 48000}, {**PLAIN, "steps": 800}, CONV),
    "conv_preemph": ({}, PLAIN, {**CONV, "pre_emphasis": 0.97}),
    "logspec": ({}, PLAIN, {}),  # log-spectral stem, former training defaults
    "logspec_balanced3k": ({}, {}, {}),  # = default (named for the table in docs/devcorpus.md)
}
BASE_TRAIN = {"steps": 3000, "batch_size": 8, "lr": 5e-4, "seed": 0, "save_every": 1000, "balanced": True}  # `train detector --config small`


def run(name: str, dataset: str, out: Path, split: str) -> dict:
    import torch

    from training.detector.config import DetectorConfig, TrainConfig, preset
    from training.detector.evaluate import evaluate
    from training.detector.train import train

    dcfg_changes, tcfg_changes, fe_changes = VARIANTS[name]
    cfg = preset("small")
    cfg = replace(cfg, frontend=replace(cfg.frontend, **fe_changes), **dcfg_changes)
    tcfg = TrainConfig(**{**BASE_TRAIN, **tcfg_changes})
    ck = out / name
    torch.set_num_threads(1)
    cpu_file = ck / "cpu_seconds.json"
    saved = json.loads((ck / "config.json").read_text()) if (ck / "model.pt").exists() else {}
    if saved.get("step") != tcfg.steps or DetectorConfig.from_dict(saved["config"]) != cfg:
        c0 = time.process_time()
        train(dataset, ck, cfg, tcfg, progress=False)
        cpu_file.write_text(json.dumps({"cpu_seconds": time.process_time() - c0}))
    res = evaluate(ck, dataset, split, ck / f"eval_{split}", progress=False)
    cpu = json.loads(cpu_file.read_text())["cpu_seconds"] if cpu_file.exists() else float("nan")
    return {"variant": name, "cpu_min": cpu / 60, "eer": res["eer"], "map": res.get("map"),
            "per_kind": {k: v["eer"] for k, v in sorted(res["per_vocoder"].items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="default,conv,logspec")
    ap.add_argument("--split", default="test")
    a = ap.parse_args()
    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    rows = [run(n, a.dataset, a.out, a.split) for n in names]
    kinds = sorted({k for r in rows for k in r["per_kind"]})
    print(f"{'variant':22s} {'CPU-min':>7s} {'EER':>6s} " + " ".join(f"{k:>10s}" for k in kinds))
    for r in rows:
        print(f"{r['variant']:22s} {r['cpu_min']:7.1f} {100 * r['eer']:5.1f}% "
              + " ".join(f"{100 * r['per_kind'].get(k, float('nan')):9.1f}%" for k in kinds))
    (a.out / "table.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
