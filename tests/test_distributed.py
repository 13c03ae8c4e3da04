"""Data-parallel training under ``torchrun --nproc_per_node 2`` (gloo, CPU) on the demo dataset.

Each rank trains on its own part of the same global batch, so a 2-process run reproduces the 1-process run with
that batch: BatchNorm statistics are all-reduced (``training.distributed.SyncedBatchNorm``) and batch-normalised
losses rescaled, leaving only float summation order. Stated tolerance: 1e-4 relative on the logged losses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REL_TOL = 1e-4


def _run(nproc: int, script: str, *args) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1
           else [sys.executable])
    res = subprocess.run(cmd + [str(ROOT / "tests" / "ddp" / script), *map(str, args)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _check_disjoint(records: list[dict]) -> None:
    """Per step the two ranks' items differ, and over the run (within one epoch) no item went to both ranks."""
    per_rank = [set(), set()]
    for r in records:
        assert len(r["items"]) == 2 and not set(r["items"][0]) & set(r["items"][1]), r
        for k in (0, 1):
            per_rank[k] |= set(r["items"][k])
    assert per_rank[0] and not per_rank[0] & per_rank[1]


def test_detector_two_processes_match_one(demo_ds, tmp_path):
    from training.detector.model import load_detector, read_meta

    two, one = tmp_path / "two", tmp_path / "one"
    _run(2, "detector_run.py", demo_ds, two, 2, 4)  # 2 steps: the checkpoint at step 2
    assert sorted(p.name for p in two.iterdir()) == ["config.json", "model.pt", "train_log.jsonl", "train_state.pt"]
    _run(2, "detector_run.py", demo_ds, two, 3, 4)  # resumes at step 2, one more step
    _run(1, "detector_run.py", demo_ds, one, 3, 4)  # one process, the same global batches
    a, b = _log(two / "train_log.jsonl"), _log(one / "train_log.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3]
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=REL_TOL)
    _check_disjoint(a)
    assert read_meta(two)[1]["step"] == 3 and read_meta(two)[1]["train"]["processes"] == 2
    load_detector(two)  # the rank-0 checkpoint loads as a plain detector


def _train_segdiff(nproc: int, ds, out, steps: int) -> None:
    args = ["-m", "training.cli", "segdiff", "--dataset", str(ds), "--out", str(out), "--steps", str(steps), "--batch-size", "4",
            "--crop-frames", "16", "--width", "8", "--ckpt-every", "1", "--dev-split", "", "--threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [])
    res = subprocess.run(cmd + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def test_segdiff_two_processes_match_one(demo_ds, tmp_path):
    from training.segdiff.infer import load_checkpoint

    two, one = tmp_path / "two", tmp_path / "one"
    _train_segdiff(2, demo_ds, two, 2)
    assert sorted(p.name for p in two.iterdir()) == ["config.json", "last.pt", "metrics.jsonl"]
    _train_segdiff(2, demo_ds, two, 3)  # resumes at step 2
    _train_segdiff(1, demo_ds, one, 3)
    a, b = _log(two / "metrics.jsonl"), _log(one / "metrics.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3]
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=REL_TOL)
    _check_disjoint([{"items": s} for r in a for s in r["items"]])
    model, _, meta = load_checkpoint(two)  # rank 0's checkpoint loads for inference
    assert meta["step"] == 3 and meta["processes"] == 2

    # and it explains in shards: two parts merged equal one run (same seed)
    import pyarrow.parquet as pq

    from baselines.cli import main as explain
    from benchmark.cli import main as benchmark

    args = ["--method", "specsegdiff", "--checkpoint", str(two), "--dataset", str(demo_ds), "--limit", "3", "--seed", "2",
            "--n-samples", "2", "--ddim-steps", "2", "--no-progress"]
    assert explain(args + ["-o", str(tmp_path / "whole.parquet")]) == 0
    for i in (0, 1):
        assert explain(args + ["-o", str(tmp_path / f"p{i}.parquet"), "--shard", f"{i}/2"]) == 0
    assert benchmark(["merge", str(tmp_path / "p1.parquet"), str(tmp_path / "p0.parquet"), "-o", str(tmp_path / "m.parquet")]) == 0
    whole, merged = pq.read_table(tmp_path / "whole.parquet"), pq.read_table(tmp_path / "m.parquet")
    assert whole.column("id").to_pylist() == merged.column("id").to_pylist() and whole.column("heatmap").equals(merged.column("heatmap"))
