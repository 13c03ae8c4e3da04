"""How many DeepSHAP references / GradientSHAP samples the benchmark needs (one run, one thread):

    python perf/shap_references.py --dataset runs/devcorpus/ds --detector runs/exp/det_logspec --rows 30

Both methods are Monte Carlo means (over bona fide references; over samples on the baseline-input line), so
a 20-draw estimate is the mean of four independent 5-draw ones. On the first ``--rows`` spoof rows of
``--split`` this computes the four 5-draw estimates, pairs them into two 10-draw ones and all into the
20-draw one, and prints, per size: IoU with the ground-truth mask (the benchmark's metric: the map
binarised at its 95% quantile), the agreement with the 20-draw map (IoU of the two binarised maps;
a 10-draw estimate's agreement with the other, disjoint 10-draw one is the noise floor at 10), and the
CPU-seconds per utterance. Means over rows with 95% bootstrap CIs.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GROUPS = 4  # independent 5-draw estimates


def _ci(v: list[float]) -> str:
    from benchmark.stats import mean_ci

    s = mean_ci(np.asarray(v, dtype=float))
    lo, hi = s["ci"]
    return f"{s['mean']:5.1f} [{lo:5.1f}, {hi:5.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--detector", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--rows", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import torch

    from annotate.core.audio import decode_bytes
    from annotate.core.dataset import iter_rows
    from baselines.explain import DetectorExplainer, ExplainConfig
    from baselines.rawwrapper import make_windows, spectrogram
    from baselines.shap import ShapConfig, deepshap, gradientshap
    from benchmark.metrics import binarise, iou

    torch.set_num_threads(1)
    per = 5
    cfg = ExplainConfig(method="deepshap", dataset=a.dataset, detector=a.detector, seed=a.seed,
                        shap=ShapConfig(n_references=per * GROUPS))
    ex = DetectorExplainer(cfg)
    refs = ex.references
    stats = {(m, k): {"gt": [], "agree": [], "s": []} for m in ("deepshap", "gradientshap") for k in (5, 10, 20)}
    floor10 = {"deepshap": [], "gradientshap": []}
    n = 0
    for row in iter_rows(a.dataset, a.split, ["id", "spoof_audio", "mask"]):
        if row["mask"] is None:
            continue
        x, _ = decode_bytes(row["spoof_audio"]["bytes"])
        win = make_windows(x, ex.length)
        logmag, phase = spectrogram(win.crops)
        truth = np.asarray(row["mask"]) > 0.5
        for m in ("deepshap", "gradientshap"):
            parts, secs = [], []
            for g in range(GROUPS):
                t0 = time.process_time()
                if m == "deepshap":
                    att = deepshap(ex.wrapper, logmag, phase, refs[g * per:(g + 1) * per], replace(cfg.shap, n_references=per))[0]
                else:
                    att = gradientshap(ex.wrapper, logmag, phase, a.seed * 1000 + g, replace(cfg.shap, n_samples=per))
                secs.append(time.process_time() - t0)
                parts.append(att.numpy())
            est = {5: [parts[0]], 10: [(parts[0] + parts[1]) / 2, (parts[2] + parts[3]) / 2], 20: [np.mean(parts, axis=0)]}
            maps = {k: [binarise(win.to_utterance(e)) for e in v] for k, v in est.items()}
            full = maps[20][0]
            for k, ms in maps.items():
                s = stats[(m, k)]
                s["gt"].append(100 * iou(ms[0], truth))
                s["agree"].append(100 * iou(ms[0], full))
                s["s"].append(sum(secs) * k / (per * GROUPS))
            floor10[m].append(100 * iou(maps[10][0], maps[10][1]))
        n += 1
        if n == a.rows:
            break
    print(f"{n} spoof rows of {Path(a.dataset).name}/{a.split}, detector {a.detector}; means with 95% bootstrap CIs")
    print(f"{'method':13s} {'draws':>5s}  {'IoU vs mask':>20s}  {'IoU vs 20-draw map':>20s}  {'CPU-s/utt':>9s}")
    for (m, k), s in stats.items():
        print(f"{m:13s} {k:5d}  {_ci(s['gt']):>20s}  {_ci(s['agree']):>20s}  {np.mean(s['s']):9.2f}")
    for m, v in floor10.items():
        print(f"{m}: two disjoint 10-draw maps agree at IoU {_ci(v)}")


if __name__ == "__main__":
    main()
