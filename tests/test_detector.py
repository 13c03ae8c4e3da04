"""Wav2Vec2-AASIST detector: shapes, label convention, save/load, weight import, resume, a tiny training run."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from training.detector import Wav2Vec2AASIST, load_detector, preset, save_detector
from training.detector.config import DetectorConfig, TrainConfig
from training.detector.evaluate import eer

TRAIN_STEPS = 120  # batch 8, lr 5e-4: about a minute on one busy core


def trained_detector(tmp_path_factory, demo_ds: Path) -> Path:
    """The small detector trained on demo_ds's train split, shared by test files in one session: training
    resumes from its own checkpoint, so a second caller finds it finished and returns at once."""
    out = tmp_path_factory.getbasetemp() / "detector_small"
    from training.detector.train import train

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(demo_ds, out, preset("small"), TrainConfig(steps=TRAIN_STEPS, batch_size=8, lr=5e-4, seed=0, save_every=1000),
              progress=False)
    finally:
        torch.set_num_threads(old)
    return out


def _tiny_cfg() -> DetectorConfig:
    """An even smaller variant for unit tests that only check mechanics."""
    cfg = preset("small")
    fe = replace(cfg.frontend, conv_layers=((8, 10, 5),) + ((8, 3, 2),) * 4 + ((8, 2, 2),) * 2, embed_dim=32,
                 num_heads=2, ff_dim=32, pos_conv_kernel=8, pos_conv_groups=2)
    be = replace(cfg.backend, res_channels=(1, 4, 4, 8, 8, 8, 8), proj_dim=24, gat_dim=16, hs_dims=(8, 8))
    return replace(cfg, frontend=fe, backend=be, crop=8000)


def test_shapes_and_hooks():
    torch.manual_seed(0)
    m = Wav2Vec2AASIST(preset("small")).eval()
    x = torch.randn(3, 16000)
    seen = []
    h = m.gradcam_layer.register_forward_hook(lambda mod, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        logits = m(x)
        emb = m.embed(x)
        layers = m.layer_features(x)
        allout = m.forward_all(x)
    h.remove()
    assert logits.shape == (3, 2) and emb.shape == (3, 160)
    frames = ((16000 - 512) // 160 + 1) // 2  # log-spectral stem: 97 STFT frames, pooled in pairs -> 48
    assert len(layers) == 2 and all(t.shape == (3, frames, 128) for t in layers)
    assert seen[0][0] == 3 and seen[0][-1] == frames // 3  # time last, one step per 3 frames
    assert torch.allclose(allout["logits"], logits, atol=1e-5) and torch.allclose(allout["embedding"], emb, atol=1e-5)
    assert torch.allclose(allout["layers"][1], layers[1], atol=1e-5)
    assert torch.allclose(m.score(x), logits[:, 1] - logits[:, 0])
    with pytest.raises(ValueError, match="out of range"):
        m.layer_features(x, [5])
    # inputs shorter than the crop still work (different T'), gradients reach the waveform
    w = torch.randn(2, 7000, requires_grad=True)
    m(w)[:, 1].sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_paper_config_sizes():
    """The xlsr300m preset: T' = 201 for 64,600 samples, 42 spectral nodes, readout 160 (no weights: sizes only)."""
    cfg = preset("xlsr300m")
    assert cfg.crop == 64600 and cfg.frontend.embed_dim == 1024 and cfg.frontend.num_layers == 24
    assert cfg.backend.n_spectral == 42 and cfg.backend.embed_dim == 160 and cfg.segdiff_layers == (0, 4, 9, 14, 19, 23)
    n = 64600
    for _, k, s in cfg.frontend.conv_layers:
        n = (n - k) // s + 1
    assert n == 201 and n // cfg.backend.pool == 67


def test_feature_extractors_geometry_and_old_configs():
    """Both feature extractors: frames where ``geometry`` says they are (frame j reads [j stride, j stride + field)),
    features of ``feature_dim`` into the encoder; a config saved before ``extractor`` existed loads as "conv"."""
    base = _tiny_cfg()
    n = 9000
    for extractor, expect in (("conv", (320, 400)), ("logspec", (320, 672))):
        cfg = replace(base, frontend=replace(base.frontend, extractor=extractor, spec_channels=(4, 8, 8, 8)))
        fe = cfg.frontend
        assert fe.geometry == expect
        torch.manual_seed(0)
        m = Wav2Vec2AASIST(cfg).eval()
        with torch.no_grad():
            feats, _ = m.ssl.feature_extractor(torch.randn(2, n), None)
        stride, field = fe.geometry
        assert feats.shape == (2, (n - field) // stride + 1, fe.feature_dim)
    old = json.loads(json.dumps(base.to_dict()))
    for key in ("extractor", "spec_n_fft", "spec_hop", "spec_channels", "pre_emphasis"):
        old["frontend"].pop(key)
    assert DetectorConfig.from_dict(old).frontend.extractor == "conv"
    with pytest.raises(ValueError, match="unknown feature extractor"):
        Wav2Vec2AASIST(replace(base, frontend=replace(base.frontend, extractor="mfcc")))


def test_pre_emphasis_filters_the_input():
    """``pre_emphasis = a`` equals feeding y[n] = x[n] - a x[n-1] to the same weights without it."""
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    m = Wav2Vec2AASIST(replace(cfg, frontend=replace(cfg.frontend, pre_emphasis=0.97))).eval()
    plain = Wav2Vec2AASIST(cfg).eval()
    plain.load_state_dict(m.state_dict())
    x = torch.randn(2, 8000)
    y = torch.cat([x[:, :1], x[:, 1:] - 0.97 * x[:, :-1]], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(m(x), plain(y))
        assert not torch.allclose(m(x), plain(x), atol=1e-4)


def test_save_load_reproduces_scores(tmp_path):
    torch.manual_seed(1)
    m = Wav2Vec2AASIST(_tiny_cfg())
    m.train()
    with torch.no_grad():  # move BN running stats away from their init so they must be saved too
        m(torch.randn(4, 8000))
    m.eval()
    x = torch.randn(2, 8000)
    with torch.no_grad():
        ref = m(x)
    save_detector(m, tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["labels"] == ["bonafide", "spoof"] and "index 1 = spoof" in meta["convention"]
    for path in (tmp_path / "ck", tmp_path / "ck" / "model.pt"):
        m2 = load_detector(path)
        assert not m2.training
        with torch.no_grad():
            assert torch.equal(m2(x), ref)
    with pytest.raises(FileNotFoundError, match="not a detector checkpoint"):
        load_detector(tmp_path)


def test_frontend_weight_import(tmp_path):
    """torchaudio and Hugging Face key layouts load into the front end; a shallower model takes the first layers."""
    from training.detector.model import build_frontend
    from training.detector.weights import load_into

    cfg = _tiny_cfg().frontend
    torch.manual_seed(2)
    src = build_frontend(replace(cfg, num_layers=3))
    sd = src.state_dict()
    torch.save(sd, tmp_path / "ta.pt")
    hf = {}
    for k, v in sd.items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        if k.startswith("encoder.feature_projection."):
            k = k[len("encoder."):]
        elif k.startswith("encoder.transformer."):
            k = "encoder." + k[len("encoder.transformer."):]
        hf["wav2vec2." + k] = v
    hf["wav2vec2.masked_spec_embed"] = torch.zeros(cfg.embed_dim)
    (tmp_path / "hf").mkdir()
    torch.save(hf, tmp_path / "hf" / "pytorch_model.bin")
    x = torch.randn(1, 4000)
    with torch.no_grad():
        ref = src.extract_features(x)[0]
    for path in (tmp_path / "ta.pt", tmp_path / "hf"):
        dst = build_frontend(replace(cfg, num_layers=2))
        load_into(dst, path)
        with torch.no_grad():
            got = dst.extract_features(x)[0]
        assert all(torch.equal(a, b) for a, b in zip(got, ref[:2]))
    wrong = build_frontend(replace(cfg, embed_dim=16, num_heads=2))
    with pytest.raises(ValueError, match="do not fit"):
        load_into(wrong, tmp_path / "ta.pt")


def test_eer_known_values():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert eer(y, np.arange(8.0))[0] == 0.0
    assert eer(y, -np.arange(8.0))[0] == 1.0
    assert abs(eer(y, np.array([0, 1, 2, 5, 3, 4, 6, 7.0]))[0] - 0.25) < 1e-9
    with pytest.raises(ValueError):
        eer(np.zeros(4), np.arange(4.0))


def test_class_weights_convention():
    from training.detector.data import Item
    from training.detector.train import class_weights

    items = [Item(f"r{i}", 0, "bonafide", "u", 0, 0, i) for i in range(1)] + [Item(f"s{i}", 1, "v", "u", 0, 0, i) for i in range(9)]
    assert np.allclose(class_weights(items, None), (0.9, 0.1))  # 1 : 9 -> the paper's weights, bona fide first
    assert class_weights(items, (0.3, 0.7)) == (0.3, 0.7)


def test_resume_equals_uninterrupted(demo_ds, tmp_path):
    from training.detector.train import train

    cfg = _tiny_cfg()
    t4 = TrainConfig(steps=4, batch_size=2, lr=5e-4, seed=3, save_every=2)
    train(demo_ds, tmp_path / "a", cfg, t4, progress=False)
    train(demo_ds, tmp_path / "b", cfg, replace(t4, steps=2), progress=False)
    train(demo_ds, tmp_path / "b", cfg, t4, progress=False)  # resumes at step 2
    sa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    log = [json.loads(line)["step"] for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="another config"):
        train(demo_ds, tmp_path / "b", replace(cfg, crop=4000), t4, progress=False)


def test_tiny_training_run_beats_chance(demo_ds, tmp_path_factory, tmp_path):
    """The small config trained ~a minute on demo_ds: test EER < 0.35 (chance = 0.5; the demo test split has
    only a handful of bona fide utterances, so the bound is loose on purpose) and spoof inputs get the
    higher index-1 logit on average (the label convention)."""
    from training.cli import main

    ck = trained_detector(tmp_path_factory, demo_ds)
    out = tmp_path / "ev"
    assert main(["evaluate", "--detector", str(ck), "--dataset", str(demo_ds), "--split", "test", "-o", str(out),
                 "--no-progress", "--threads", "1"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["eer"] < 0.35, res
    assert set(res["per_vocoder"]) == {"griffinlim", "world", "lpc"}
    assert (out / "eval.png").stat().st_size > 10_000
    rows = (out / "scores.csv").read_text().splitlines()[1:]
    lab = np.array([int(r.split(",")[1]) for r in rows])
    sc = np.array([float(r.split(",")[3]) for r in rows])
    assert len(rows) == res["n_bona"] + res["n_spoof"]
    assert sc[lab == 1].mean() > sc[lab == 0].mean()


@pytest.mark.slow
def test_xlsr300m_forward_shapes():
    """The paper configuration end to end on one 64,600-sample input (random weights; ~1.3 GB of RAM)."""
    torch.manual_seed(0)
    m = Wav2Vec2AASIST(preset("xlsr300m")).eval()
    assert 3.0e8 < sum(p.numel() for p in m.ssl.parameters()) < 3.3e8
    seen = []
    m.gradcam_layer.register_forward_hook(lambda mod, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        out = m.forward_all(torch.randn(1, 64600))
    assert out["logits"].shape == (1, 2) and out["embedding"].shape == (1, 160)
    assert [t.shape for t in out["layers"]] == [(1, 201, 1024)] * 6
    assert seen == [(1, 64, 42, 67)]


def test_balanced_batches_are_half_bona_fide():
    from training.detector.data import Item
    from training.detector.train import BatchPlan

    items = [Item(f"r{i}", int(i % 5 != 0), "v", f"u{i}", 0, 0, i) for i in range(100)]  # 1 bona fide : 4 spoof
    plan = BatchPlan(items, TrainConfig(batch_size=8, balanced=True))
    labels = [items[i].label for s in range(50) for i in plan.indices(s)]
    assert labels.count(0) == labels.count(1) == 200
    plain = BatchPlan(items, TrainConfig(batch_size=8))
    epoch = np.concatenate([plain.indices(s) for s in range(10)])  # the first 80 of a permutation of 100 items
    assert len(set(epoch.tolist())) == 80
    assert 8 < sum(items[i].label == 0 for i in epoch) < 30  # uniform over items: about a fifth bona fide
    assert np.array_equal(BatchPlan(items, TrainConfig(batch_size=8)).indices(3), plain.indices(3))  # a function of (seed, step)
