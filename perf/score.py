"""Scoring throughput: utterances per second of `benchmark score` on a synthetic submission, vs just reading it.

    .venv/bin/python perf/score.py [--n 10000] [--frames 100] [--workers 2] [--workdir DIR [--reuse]] [--no-reference]

Writes a synthetic dataset (random 5%-density masks, no audio) and a uniform-random float32
submission, then times, in one run on the same files: (1) reading every heatmap into numpy,
(2) reading + the per-utterance reference metrics (``score.utterance_scores`` one by one, the
pre-vectorisation path), (3) the full validate + vectorised score + bootstrap pipeline (no
detector), in one process and with ``--workers`` processes, and (4) the full score (truth masks read
too) with the dataset read from a ``memory://`` copy vs the local folder, best of ``--rounds`` alternating
rounds: the ratio local/memory time is the speed of the fsspec path relative to local (target >= 0.8).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="utterances")
    ap.add_argument("--frames", type=int, default=100, help="frames per utterance (100 frames = 0.8 s)")
    ap.add_argument("--workers", type=int, default=2, help="scoring processes for the second timed run")
    ap.add_argument("--reuse", action="store_true", help="reuse files already in --workdir")
    ap.add_argument("--workdir", help="where to write the files (default: a temporary folder)")
    ap.add_argument("--no-reference", action="store_true", help="skip timing the per-utterance reference metrics")
    ap.add_argument("--rounds", type=int, default=2, help="alternating local / memory:// rounds (best of each)")
    a = ap.parse_args()

    from benchmark.score import load_truth, score_submission, utterance_scores
    from benchmark.submission import SubmissionWriter, iter_heatmaps, submission_files
    from benchmark.synthetic import write_dataset

    work = Path(a.workdir or tempfile.mkdtemp(prefix="vocmask-perf-"))
    vocoders = ("melgan", "hifigan", "waveglow", "wavegrad")
    per = -(-a.n // len(vocoders))
    t0 = time.perf_counter()
    ds, sub = work / "ds", work / "sub.parquet"
    if not (a.reuse and sub.exists()):
        write_dataset(ds, n_per_vocoder=per, vocoders=vocoders, with_audio=False, frames=a.frames, seed=0)
    truth = load_truth(ds, "test")
    if not (a.reuse and sub.exists()):
        rng = np.random.default_rng(0)
        with SubmissionWriter(sub, {"method": "uniform random (perf)"}) as w:
            for i in truth.ids:
                w.write(i, rng.random((a.frames, 257), dtype=np.float32))
    n = len(truth.ids)
    size = sub.stat().st_size / 2**20
    print(f"wrote {n} utterances x {a.frames} frames x 257 bins ({size:.0f} MiB submission) in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    total = 0.0
    for _, h, _ in iter_heatmaps(submission_files(sub)):
        total += float(h[0, 0])  # touch each heatmap so nothing is skipped
    read_s = time.perf_counter() - t0

    ref_s = None
    if not a.no_reference:
        t0 = time.perf_counter()
        ref_iou = {}
        for i, h, _ in iter_heatmaps(submission_files(sub)):
            ref_iou[i] = utterance_scores(h, truth.masks[i])[0]["IoU"]
        ref_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = score_submission(sub, ds, "test", truth=truth)
    score_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    result_w = score_submission(sub, ds, "test", truth=truth, workers=a.workers)
    score_w = time.perf_counter() - t0
    assert result_w["overall"] == result["overall"], "worker pool changed the results"

    if ref_s is not None:
        ref_mean = sum(ref_iou.values()) / len(ref_iou)
        assert abs(ref_mean - result["overall"]["IoU"]["mean"]) < 1e-9, "vectorised and reference IoU differ"
    print(f"read only : {read_s:7.2f} s  {n / read_s:9.0f} utterances/s")
    if ref_s is not None:
        print(f"reference : {ref_s:7.2f} s  {n / ref_s:9.0f} utterances/s  ({ref_s / read_s:.1f}x the read time), "
              "read + per-utterance metrics, no validation or bootstrap")
    print(f"full score: {score_s:7.2f} s  {n / score_s:9.0f} utterances/s  ({score_s / read_s:.1f}x the read time), 1 process")
    print(f"full score: {score_w:7.2f} s  {n / score_w:9.0f} utterances/s  ({score_w / read_s:.1f}x the read time), "
          f"{a.workers} worker processes (identical results)")
    import fsspec

    from benchmark.stats import BootstrapConfig

    mem = "memory://vocmask-perf-ds"
    fsspec.filesystem("memory").put(str(ds), "/vocmask-perf-ds", recursive=True)
    boot = BootstrapConfig(resamples=0, seed=0)
    best = {"local": float("inf"), "memory": float("inf")}
    outs = {}
    for _ in range(a.rounds):
        for name, loc in (("local", ds), ("memory", mem)):
            t0 = time.perf_counter()
            outs[name] = score_submission(sub, loc, "test", boot=boot)  # truth masks read from the dataset too
            best[name] = min(best[name], time.perf_counter() - t0)
    assert outs["memory"]["overall"] == outs["local"]["overall"], "memory:// changed the results"
    print(f"score, dataset local   : {best['local']:7.2f} s  {n / best['local']:9.0f} utterances/s (truth read + score, no bootstrap)")
    print(f"score, dataset memory://: {best['memory']:7.2f} s  {n / best['memory']:9.0f} utterances/s  "
          f"speed {best['local'] / best['memory']:.2f} of local (target >= 0.8; identical results)")
    o = result["overall"]
    print("calibration (uniform random vs random 5% masks): " + ", ".join(f"{m} {o[m]['mean']:.2f}" for m in ("GDice", "F1", "IoU", "FBound", "SSIM", "AUC")))
    print(f"files under {work}")


if __name__ == "__main__":
    main()
