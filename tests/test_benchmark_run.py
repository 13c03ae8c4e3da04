"""`benchmark run` on the demo dataset: every planned method explained and scored, Table 1 printed, resumable."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.cli import main

LIMIT = 3


@pytest.fixture(scope="module")
def detector(demo_ds, tmp_path_factory):
    from test_detector import trained_detector  # session-cached: trained once for every test file

    return trained_detector(tmp_path_factory, demo_ds)


@pytest.fixture(scope="module")
def segdiff_ckpt(demo_ds, tmp_path_factory):
    """A SpecSegDiff checkpoint trained 2 steps on demo_ds (mechanics only)."""
    from training.segdiff.config import ModelConfig, SegDiffConfig, TrainConfig
    from training.segdiff.train import train

    # 3 levels and a 32-frame crop keep the mid-block attention small (~500 tokens): inference in seconds
    mc = ModelConfig(width=8, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(), groups=4, heads=2,
                     rrdb_blocks=1, rrdb_width=8, rrdb_growth=4)
    tc = TrainConfig(crop_frames=32, batch_size=2, steps=2, val_every=10**6, ckpt_every=10**6)
    out = tmp_path_factory.mktemp("segdiff") / "spec"
    with _one_thread():
        train(SegDiffConfig(model=mc, train=tc), demo_ds, out, dev_split=None, progress=False, log=lambda *_: None)
    return out


class _one_thread:
    def __enter__(self):
        self.old = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def _table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if "|" in line and not line.startswith("Method"):
            left, right = line.split("|")
            cells = left.split()
            vals = cells[-5:] + right.split()
            rows[" ".join(cells[:-5]).removesuffix(" *")] = vals
    return rows


def test_run_table_resume_and_leaderboard(demo_ds, detector, segdiff_ckpt, tmp_path, capsys):
    out = tmp_path / "results"
    args = ["run", "--dataset", str(demo_ds), "--detector", str(detector), "--segdiff", str(segdiff_ckpt),
            "--methods", "gradcam", "specsegdiff", "--limit", str(LIMIT), "--out", str(out), "--bootstrap", "100",
            "--segdiff-samples", "2", "--ddim-steps", "2", "--threads", "1", "--workers", "1", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "GDice" in printed and "Fid-In" in printed and "Note: percent" in printed
    rows = _table_rows(printed)
    assert list(rows) == ["Grad-CAM", "SpecSegDiff", "chance: uniform random", "chance: smoothed random", "chance: spoof energy"]

    files = sorted(p.name for p in out.glob("*.json"))
    assert files == ["chance_smoothed_random.json", "chance_spoof_energy.json", "chance_uniform_random.json",
                     "gradcam.json", "specsegdiff.json"]
    results = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in out.glob("*.json")}
    for name, r in results.items():
        assert r["n_utterances"] == LIMIT and r["run"]["limit"] == LIMIT
        o = r["overall"]
        for m in ("GDice", "F1", "IoU", "FBound", "SSIM", "AI", "AD", "AG", "FidIn"):
            assert 0.0 <= o[m]["mean"] <= 100.0, (name, m)
        # the printed table shows exactly the JSON means
        shown = rows[name]
        assert shown == [f"{o[m]['mean']:.1f}" for m in ("GDice", "F1", "IoU", "FBound", "SSIM", "AI", "AD", "AG", "FidIn")]
    assert results["chance: uniform random"]["kind"] == "chance" and results["Grad-CAM"]["kind"] == "xai"
    assert results["SpecSegDiff"]["method"]["method"] == "specsegdiff"
    # Grad-CAM is time-only: constant over frequency, so its binarised map is whole frames
    import pyarrow.parquet as pq

    heat = np.asarray(pq.read_table(out / "submissions" / "gradcam.parquet").column("heatmap")[0].as_py())
    assert heat.shape[1] == 257 and np.allclose(heat, heat[:, :1])

    # resumable: a second run computes nothing (files untouched) and prints the same table
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert main(args) == 0
    again = capsys.readouterr()
    assert _table_rows(again.out) == rows and again.err.count("skipped") == 5
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == stamps

    # another --limit on the same folder is refused with a one-line message, not silently mixed
    bad = list(args)
    bad[bad.index("--limit") + 1] = "2"
    assert main(bad) == 2
    assert "other settings" in capsys.readouterr().err

    # the results folder is a leaderboard folder: the chance rows are recognised, not recomputed
    assert main(["leaderboard", str(out), "--format", "csv"]) == 0
    csv_rows = capsys.readouterr().out.strip().splitlines()
    assert len(csv_rows) == 1 + 5


def test_run_workers_write_the_same_submissions(demo_ds, detector, tmp_path, capsys):
    """Rows split among 2 explain processes, merged: the same heatmaps and scores as one process, no parts left."""
    import pyarrow.parquet as pq

    got = {}
    for w in (1, 2):
        out = tmp_path / f"w{w}"
        assert main(["run", "--dataset", str(demo_ds), "--detector", str(detector), "--methods", "gradcam", "--limit", "4",
                     "--out", str(out), "--workers", str(w), "--bootstrap", "100", "--no-progress"]) == 0
        capsys.readouterr()
        assert sorted(p.name for p in (out / "submissions").iterdir()) == [
            "chance_smoothed_random.parquet", "chance_spoof_energy.parquet", "chance_uniform_random.parquet", "gradcam.parquet"]
        got[w] = {p.stem: pq.read_table(p).select(["id", "heatmap"]).to_pydict() for p in (out / "submissions").iterdir()}
        got[w]["iou"] = {p.stem: json.loads(p.read_text())["overall"]["IoU"]["mean"] for p in out.glob("*.json")}
    assert got[1]["iou"] == got[2]["iou"]
    for name in got[1]:
        if name != "iou":
            assert got[1][name]["id"] == got[2][name]["id"]
            for a, b in zip(got[1][name]["heatmap"], got[2][name]["heatmap"]):
                np.testing.assert_array_equal(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))


def test_run_without_detector_has_no_faithfulness(demo_ds, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--dataset", str(demo_ds), "--limit", "2", "--out", str(out), "--bootstrap", "100", "--no-progress"]) == 0
    cap = capsys.readouterr()
    rows = _table_rows(cap.out)
    assert list(rows) == ["chance: uniform random", "chance: smoothed random", "chance: spoof energy"]
    assert all(v[5:] == ["-"] * 4 for v in rows.values())
    assert "no --detector" in cap.out


def test_run_input_errors(demo_ds, tmp_path, capsys):
    base = ["run", "--dataset", str(demo_ds), "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(base + ["--methods", "gradcam"]) == 2
    assert "--detector" in capsys.readouterr().err
    assert main(base + ["--methods", "nosuch"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(base + ["--methods", "specsegdiff"]) == 2
    assert "--segdiff" in capsys.readouterr().err
    assert main(base + ["--segdiff", str(tmp_path / "missing")]) == 2
    assert "not a SegDiff checkpoint" in capsys.readouterr().err
    assert main(base + ["--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--workers" in err and len(err.strip().splitlines()) == 1
    assert main(base + ["--deepshap-references", "0"]) == 2
    err = capsys.readouterr().err
    assert "--deepshap-references" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before any work


def test_shap_counts_reach_explain_and_the_settings(demo_ds):
    from baselines.shap import ShapConfig
    from benchmark.run import Job, RunConfig, _shap_config, settings
    from benchmark.score import load_truth

    cfg = RunConfig(dataset=str(demo_ds), detector="d", deepshap_references=7)
    assert _shap_config(cfg) == ShapConfig(n_references=7)
    assert _shap_config(RunConfig(dataset=str(demo_ds), gradientshap_samples=3)).n_samples == 3
    truth = load_truth(demo_ds, "test")
    s = settings(cfg, truth, Job("deepshap", "DeepSHAP", "deepshap", "xai"))
    assert s["shap"]["n_references"] == 7  # a stored result made with other counts is not reused
    assert "shap" not in settings(cfg, truth, Job("gradcam", "Grad-CAM", "gradcam", "xai"))


def test_shared_spoof_probabilities_leave_faithfulness_unchanged(demo_ds, detector, tmp_path):
    """`benchmark run` shares the detector's output on each spoof input among its methods: same AI/AD/AG/Fid-In."""
    from baselines.explain import ExplainConfig, run
    from benchmark.score import score_submission

    sub = run(ExplainConfig(method="energy", dataset=str(demo_ds), limit=4), tmp_path / "e.parquet", progress=False)
    plain = score_submission(sub, demo_ds, detector=detector, limit=4)
    cache = {}
    first = score_submission(sub, demo_ds, detector=detector, limit=4, spoof_probs=cache)
    assert len(cache) == 4
    before = {k: v.copy() for k, v in cache.items()}
    again = score_submission(sub, demo_ds, detector=detector, limit=4, spoof_probs=cache)
    assert all(np.array_equal(before[k], cache[k]) for k in cache)  # reused, not recomputed
    for m in ("AI", "AD", "AG", "FidIn"):
        want = plain["overall"][m]["mean"]
        assert first["overall"][m]["mean"] == pytest.approx(want, abs=1e-6)
        assert again["overall"][m]["mean"] == pytest.approx(want, abs=1e-6)


def test_vectorised_scoring_equals_per_utterance_reference():
    """benchmark.batch.score_batch (stacked, vectorised) == score.utterance_scores one by one, on awkward maps:
    odd lengths, maps below the SSIM window, narrow widths, ties, constant heatmaps, empty and full masks."""
    from scipy import ndimage

    from benchmark.batch import score_batch
    from benchmark.score import utterance_scores

    rng = np.random.default_rng(0)
    items = []
    for k in range(40):
        f, w = int(rng.integers(1, 90)), (257, 257, 20, 9)[k % 4]
        h = [rng.random((f, w), dtype=np.float32), ndimage.gaussian_filter(rng.random((f, w)), 2),
             np.zeros((f, w), np.float32), np.round(rng.random((f, w)) * 3) - 1, rng.standard_normal((f, w)).astype(np.float16)][k % 5]
        t = [ndimage.gaussian_filter(rng.random((f, w)), 1.5) > 0.6, np.zeros((f, w), bool), rng.random((f, w)) < 0.05][k % 3]
        if k == 7:
            t = np.ones((f, w), bool)
        items.append((h, t))
    values, preds = score_batch(items)
    for k, (h, t) in enumerate(items):
        ref, pred = utterance_scores(h, t)
        assert np.array_equal(pred, preds[k]), k
        for m, v in ref.items():
            tol = 1e-4 if m == "SSIM" else 1e-9  # SSIM filters run in float32 in the vectorised path
            if np.isnan(v):
                assert np.isnan(values[m][k]), (k, m)
            else:
                assert values[m][k] == pytest.approx(v, abs=tol), (k, m, v, values[m][k])
