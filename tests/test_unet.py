"""Supervised U-Net explainer: shapes, overfitting demo rows, determinism, resume, and the CLIs end to end.

Tiny models (widths 8/16, 32-frame crops, all 257 bins) keep the file to seconds of CPU.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.metrics import binarise, iou
from training.segdiff.data import Utterance, load_split
from training.unet.config import ModelConfig, TrainConfig, UNetConfig, preset, replace
from training.unet.infer import Normaliser, heatmap, load_checkpoint
from training.unet.model import UNet
from training.unet.train import train

QUIET = dict(progress=False, log=lambda *_: None)


def tiny_cfg(steps: int, **train_kw) -> UNetConfig:
    tc = dict(crop_frames=32, batch_size=3, steps=steps, lr=3e-3, val_every=10**6, ckpt_every=10**6)
    return UNetConfig(model=ModelConfig(widths=(8, 16), groups=4), train=TrainConfig(**{**tc, **train_kw}))


@pytest.fixture(scope="module")
def three_rows(demo_ds) -> list[Utterance]:
    """Three demo training rows of different sentences, raw log-magnitudes (the U-Net normalises them itself)."""
    rows, seen = [], set()
    for u in load_split(demo_ds, "train", normalise=None):
        sentence = u.id.split("__", 1)[1]
        if sentence not in seen:
            seen.add(sentence)
            rows.append(u)
    return rows[:3]


def state_of(folder) -> dict:
    return torch.load(folder / "last.pt", map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("frames", [1, 7, 37, 130])
def test_heatmap_shape_for_odd_lengths(frames):
    torch.manual_seed(0)
    model = UNet(ModelConfig(widths=(8, 16, 32), groups=4)).eval()
    x = np.random.default_rng(frames).standard_normal((frames, 257)).astype(np.float32)
    for max_frames in (2048, 16):  # one pass, and stitched 16-frame crops
        heat = heatmap(model, x, max_frames)
        assert heat.shape == (frames, 257) and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert model(torch.from_numpy(x)[None, None]).shape == (1, 1, frames, 257)


def test_normaliser_is_the_training_rows_mean_and_std(three_rows):
    norm = Normaliser.fit(three_rows)
    allbins = np.concatenate([u.logmag.astype(np.float64).ravel() for u in three_rows])
    assert norm.mean == pytest.approx(allbins.mean()) and norm.std == pytest.approx(allbins.std())
    z = np.concatenate([norm(u.logmag).ravel() for u in three_rows])
    assert abs(z.mean()) < 1e-3 and z.std() == pytest.approx(1.0, abs=1e-3)


def test_presets_round_trip():
    for name in ("small", "large"):
        cfg = preset(name)
        assert UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    small = preset("small")
    assert small.model.widths == (16, 32, 64) and small.train.crop_frames == 128 and small.train.batch_size == 8
    assert small.train.lr == 1e-3 and small.train.pos_weight == 4.0
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


# ----------------------------------------------------------------------------------------------- training


def test_overfits_three_demo_rows_from_their_own_input(tmp_path, three_rows):
    res = train(tiny_cfg(150), "demo", tmp_path / "ck", utts=three_rows, dev_utts=three_rows, **QUIET)
    losses = res["losses"]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])  # measured: 1.54 -> 0.94
    # chance for a 5% mask against a 5% prediction is IoU ~2.6
    assert res["val"][-1]["iou"] > 20, res["val"]  # measured: 41.8
    model, cfg, norm, meta = load_checkpoint(tmp_path / "ck")
    assert meta["step"] == 150
    heats = [heatmap(model, norm(u.logmag), cfg.max_frames) for u in three_rows]

    def score(i: int, j: int) -> float:
        n = min(three_rows[i].frames, three_rows[j].frames)
        return 100 * iou(binarise(heats[i][:n]), three_rows[j].mask[:n])

    own = np.mean([score(i, i) for i in range(3)])
    other = np.mean([score(i, j) for i in range(3) for j in range(3) if i != j])
    assert own > 5 * other, (own, other)  # measured: 41.8 against 1.4: the heatmap follows its own input


def test_same_seed_same_weights_and_resume_replays(tmp_path, three_rows):
    kw = dict(utts=three_rows, dev_utts=None, dev_split=None, **QUIET)
    train(tiny_cfg(4), "demo", tmp_path / "a", **kw)
    train(tiny_cfg(4), "demo", tmp_path / "same", **kw)
    train(tiny_cfg(4, seed=1), "demo", tmp_path / "other", **kw)
    train(tiny_cfg(2), "demo", tmp_path / "b", **kw)
    assert state_of(tmp_path / "b")["step"] == 2
    train(tiny_cfg(4), "demo", tmp_path / "b", **kw)  # resumes at step 2
    a, same, other, b = (state_of(tmp_path / n) for n in ("a", "same", "other", "b"))
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], same["model"][k])
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6)
    assert any(not torch.equal(a["model"][k], other["model"][k]) for k in a["model"])
    assert a["normalisation"] == b["normalisation"]
    with pytest.raises(ValueError, match="another config"):
        train(replace(tiny_cfg(6), model=ModelConfig(widths=(8, 16, 32), groups=4)), "demo", tmp_path / "a", **kw)
    (tmp_path / "segdiff").mkdir()
    torch.save({"model": {}, "step": 3}, tmp_path / "segdiff" / "last.pt")  # another method's checkpoint folder
    with pytest.raises(ValueError, match="another method"):
        train(tiny_cfg(4), "demo", tmp_path / "segdiff", **kw)


# ----------------------------------------------------------------------------------------------- CLIs


def test_train_explain_score_and_benchmark_run_cli(tmp_path, demo_ds, capsys):
    from baselines.cli import main as explain_main
    from benchmark.cli import main as benchmark_main
    from benchmark.leaderboard import load_results, render
    from training.cli import main as train_main

    ck, sub = tmp_path / "ck", tmp_path / "sub.parquet"
    args = ["unet", "--dataset", str(demo_ds), "--out", str(ck), "--steps", "3", "--batch-size", "2", "--crop-frames", "32",
            "--val-every", "3", "--val-utterances", "2", "--threads", "1", "--no-progress"]
    assert train_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 3 and 0 <= summary["val"]["iou"] <= 100
    log = [json.loads(line) for line in (ck / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and "iou" in log[-1]["val"] and np.isfinite(log[-1]["loss"])
    assert train_main(args[:6] + ["5"] + args[7:]) == 0  # more --steps: resumes
    assert state_of(ck)["step"] == 5

    assert explain_main(["--method", "unet", "--checkpoint", str(ck), "--dataset", str(demo_ds), "--split", "test",
                         "-o", str(sub), "--no-progress"]) == 0
    res = tmp_path / "unet.json"
    assert benchmark_main(["score", str(sub), "--dataset", str(demo_ds), "--split", "test", "--bootstrap", "100", "-o", str(res)]) == 0
    result = json.loads(res.read_text())
    assert result["n_utterances"] > 0 and 0 <= result["overall"]["IoU"]["mean"] <= 100

    out = tmp_path / "run"
    assert benchmark_main(["run", "--dataset", str(demo_ds), "--unet", str(ck), "--limit", "3", "--bootstrap", "100",
                           "--out", str(out), "--no-progress"]) == 0
    table = (out / "table.txt").read_text()
    assert "U-Net" in table
    unet_rows = [r for r in load_results(out) if r["name"] == "U-Net"]
    assert len(unet_rows) == 1 and unet_rows[0]["kind"] == "unet" and unet_rows[0]["run"]["checkpoint_step"] == 5
    assert "U-Net" in render(load_results(out), "md")


@pytest.mark.parametrize("bad, message", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--steps", "-3"], "--steps must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--lr", "0"], "--lr must be positive"),
])
def test_train_bad_parameter_exits_2_with_one_line(tmp_path, demo_ds, capsys, bad, message):
    from training.cli import main as train_main

    out = tmp_path / "ck"
    assert train_main(["unet", "--dataset", str(demo_ds), "--out", str(out), "--no-progress"] + bad) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # refused before any work


def test_explain_and_run_refuse_a_missing_or_foreign_checkpoint(tmp_path, demo_ds, capsys):
    from baselines.cli import main as explain_main
    from benchmark.cli import main as benchmark_main

    base = ["--method", "unet", "--dataset", str(demo_ds), "-o", str(tmp_path / "s.parquet"), "--no-progress"]
    assert explain_main(base) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    torch.save({"model": {}, "step": 1}, tmp_path / "foreign" / "last.pt")
    for ck, message in ((tmp_path / "nothing", "not a U-Net checkpoint"), (tmp_path / "foreign", "not a `train unet` one")):
        assert explain_main(base + ["--checkpoint", str(ck)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        assert benchmark_main(["run", "--dataset", str(demo_ds), "--unet", str(ck), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
