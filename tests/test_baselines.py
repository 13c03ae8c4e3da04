"""Every explainer: heatmap on the row's grid for odd lengths, same seed -> same heatmap; the run loop
writes a valid, resumable submission with its metadata; the CLI reports bad input in one line."""
from __future__ import annotations

import numpy as np
import pytest

from annotate.core.audio import encode_flac
from annotate.core.dataset import iter_rows
from annotate.core.spectral import DEFAULT_STFT
from baselines import explain as ex
from baselines.chance import row_seed
from baselines.cli import main
from baselines.explain import DETECTOR_METHODS, ExplainConfig, make_explainer, run
from baselines.gradcam import time_to_frames
from baselines.shap import ShapConfig
from benchmark.submission import iter_heatmaps, read_metadata, submission_files
from test_rawwrapper import tiny_detector

ALL = DETECTOR_METHODS + ("random", "smoothed-random", "energy")
SMALL_SHAP = ShapConfig(n_references=4, n_samples=4, chunk=2, batch=2)


@pytest.fixture(scope="module")
def detector():
    return tiny_detector()


def _row(n: int, seed: int = 0, id: str | None = None) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    frames = DEFAULT_STFT.n_frames(n)
    return {"id": id or f"utt{n}", "num_samples": n, "spoof_audio": {"bytes": encode_flac(x, 16000), "path": None},
            "spoof_logmag": rng.standard_normal((frames, 257)).astype(np.float32)}


def _explainer(method: str, ds, detector, seed: int = 0):
    return make_explainer(ExplainConfig(method=method, dataset=str(ds), seed=seed, shap=SMALL_SHAP), detector=detector)


@pytest.mark.parametrize("method", ALL)
def test_heatmap_has_the_row_grid_for_odd_lengths(method, demo_ds, detector):
    """3001 samples (tiled up to the 8000-sample crop) and 12001 (two overlapping crops)."""
    fn = _explainer(method, demo_ds, detector)
    for n in (3001, 12001):
        heat = fn(_row(n))
        assert heat.shape == (1 + n // 128, 257), (method, n, heat.shape)
        assert heat.dtype == np.float32 and np.isfinite(heat).all()
        assert heat.max() > heat.min(), f"{method}: constant heatmap"


@pytest.mark.parametrize("method", ["random", "smoothed-random", "gradientshap", "deepshap"])
def test_same_seed_same_heatmap(method, demo_ds, detector):
    row = _row(9001, id="x1")
    a = _explainer(method, demo_ds, detector, seed=3)(row)
    b = _explainer(method, demo_ds, detector, seed=3)(row)  # a fresh explainer: nothing cached between them
    np.testing.assert_array_equal(a, b)
    c = _explainer(method, demo_ds, detector, seed=4)(row)
    assert not np.array_equal(a, c)  # the seed matters (deepshap: other references)


def test_row_seed_depends_on_seed_and_id():
    assert row_seed(0, "a") == row_seed(0, "a")
    assert len({row_seed(0, "a"), row_seed(1, "a"), row_seed(0, "b")}) == 3
    assert 0 <= row_seed(123, "x") < 2**63


def test_gradcam_time_map_lands_on_the_right_frames():
    cam = np.zeros((1, 10))
    cam[0, 7] = 1.0  # step 7 of 10 over 12800 samples is centred on sample 9600 = frame 75
    frames = time_to_frames(cam, 12800, 101)
    assert frames.shape == (1, 101) and int(np.argmax(frames[0])) == 75


def test_run_writes_submission_with_metadata_and_resumes(demo_ds, detector, tmp_path, monkeypatch):
    cfg = ExplainConfig(method="gradcam", dataset=str(demo_ds), detector="tiny", limit=5, batch_rows=2)
    ref = run(cfg, tmp_path / "ref.parquet", progress=False, detector=detector)
    meta = read_metadata(ref)
    assert meta["method"] == "gradcam" and meta["detector"] == "tiny" and meta["settings"]["relu"] is True
    assert meta["seconds_per_utterance"] > 0 and meta["stft"]["hop_length"] == 128
    got = {i: h for i, h, _ in iter_heatmaps(submission_files(ref))}
    shapes = {r["id"]: r["spoof_logmag"].shape for r in iter_rows(demo_ds, "test", ["id", "spoof_logmag"])}
    assert len(got) == 5 and all(h.shape == shapes[i] for i, h in got.items())
    assert not ex.parts_dir(tmp_path / "ref.parquet").exists()

    calls, crash = [], [True]
    real = ex.make_explainer

    def crashing(*a, **k):
        inner = real(*a, **k)

        def f(row):
            calls.append(row["id"])
            if crash[0] and len(calls) == 3:
                raise RuntimeError("killed")
            return inner(row)

        return f

    monkeypatch.setattr(ex, "make_explainer", crashing)
    out = tmp_path / "sub.parquet"
    with pytest.raises(RuntimeError, match="killed"):
        run(cfg, out, progress=False, detector=detector)
    assert not out.exists() and len(list(ex.parts_dir(out).glob("part-*.parquet"))) == 1  # rows 0-1 kept
    calls.clear()
    crash[0] = False
    run(cfg, out, progress=False, detector=detector)
    assert len(calls) == 3  # rows 2, 3, 4 only
    again = {i: h for i, h, _ in iter_heatmaps(submission_files(out))}
    assert list(again) == list(got)
    for i in got:
        np.testing.assert_array_equal(again[i], got[i])


def test_cli_chance_baseline_is_a_valid_submission(demo_ds, tmp_path):
    from benchmark.score import validate_submission

    out = tmp_path / "energy.parquet"
    assert main(["--method", "energy", "--dataset", str(demo_ds), "-o", str(out), "--no-progress"]) == 0
    validate_submission(out, demo_ds, "test")
    meta = read_metadata(out)
    assert meta["method"] == "energy" and meta["detector"] is None and meta["split"] == "test"


def test_cli_errors_are_one_line(demo_ds, tmp_path, capsys):
    assert main(["--method", "attnlrp", "--dataset", str(demo_ds), "-o", str(tmp_path / "a.parquet")]) == 2
    assert "--detector" in capsys.readouterr().err
    assert main(["--method", "specsegdiff", "--dataset", str(demo_ds), "-o", str(tmp_path / "b.parquet")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["--method", "random", "--dataset", str(tmp_path / "nope"), "-o", str(tmp_path / "c.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no shards for split 'test'" in err
    out = tmp_path / "d.parquet"
    assert main(["--method", "deepshap", "--dataset", str(demo_ds), "--detector", "x", "-o", str(out), "--deepshap-batch", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--deepshap-batch" in err and not out.exists()  # refused before any work
