"""SegDiff (SpecSegDiff / ADDSegDiff): shapes, DDPM/DDIM maths, cached == naive sampling, overfitting, resume, submissions.

Runs on synthetic data (and a 33-bin band of three demo rows for the overfit check) with a narrow frequency axis
(33 bins) and a tiny UNet so the whole file stays fast.
"""
from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from training.segdiff.config import DiffusionConfig, ModelConfig, SegDiffConfig, TrainConfig, preset, replace
from training.segdiff.data import CropSampler, SpecCondition, Utterance, normalise_logmag
from training.segdiff.diffusion import Diffusion, NoiseSource
from training.segdiff.infer import crop_starts, explain_utterance, sample_batched, sample_naive
from benchmark.metrics import heatmap_iou_f1 as iou_f1
from training.segdiff.model import SegDiffUNet
from training.segdiff.train import train

NF = 33


@contextlib.contextmanager
def one_thread():
    """Single-threaded torch inside the block (the CI machine is small and shared)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def tiny_model_cfg(**kw) -> ModelConfig:
    base = dict(n_freq=NF, width=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), groups=4, heads=2,
                rrdb_blocks=1, rrdb_width=8, rrdb_growth=4)
    return ModelConfig(**{**base, **kw})


def tiny_cfg(steps: int, **train_kw) -> SegDiffConfig:
    tc = TrainConfig(crop_frames=16, batch_size=8, steps=steps, lr=3e-3, ema_decay=0.95, val_every=10**6, ckpt_every=10**6,
                     val_utterances=3, val_samples=4, val_ddim_steps=10, **train_kw)
    return SegDiffConfig(model=tiny_model_cfg(), train=tc)


def synth_utt(uid: str, frames: int, seed: int, nf: int = NF) -> Utterance:
    """A smooth random 'log-magnitude' whose mask is a deterministic function of it (its top 5%)."""
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.standard_normal((frames, nf)), (1.5, 1.5))
    mask = (x > np.quantile(x, 0.95)).astype(np.uint8)
    return Utterance(uid, normalise_logmag(x).astype(np.float16), mask)


def randomised(model: SegDiffUNet, seed: int = 0) -> SegDiffUNet:
    """Re-draw every parameter (the zero-initialised output convs would make eps == 0 and hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


# ----------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("frames", [1, 7, 37])
def test_model_shapes_any_length_and_full_freq(frames):
    cfg = tiny_model_cfg(n_freq=257, channel_mult=(1, 2, 2), attention_levels=(2,))
    m = SegDiffUNet(cfg)
    x, c = torch.randn(2, 1, frames, 257), torch.randn(2, 1, frames, 257)
    eps = m(x, torch.tensor([0, 99]), c)
    assert eps.shape == (2, 1, frames, 257)
    feats = m.encode_condition(c)
    assert feats.shape == (2, cfg.width, frames + (-frames) % 4, 260)  # padded to the down-sampling factor


def test_detector_condition_shapes():
    cfg = tiny_model_cfg(condition="detector", detector_layers=(0, 1, 2), detector_dim=24, layer_proj=10)
    m = SegDiffUNet(cfg)
    layers = torch.randn(2, 3, 11, 24)  # (B, L, T', D): T' at the detector's frame rate
    eps = m(torch.randn(2, 1, 29, NF), torch.tensor([3, 50]), layers)
    assert eps.shape == (2, 1, 29, NF)
    with pytest.raises(ValueError, match="expected 3 detector layers"):
        m(torch.randn(1, 1, 29, NF), torch.tensor([3]), layers[:1, :2])


@pytest.mark.parametrize("frames", [5, 16, 45])
def test_explain_utterance_odd_lengths(frames):
    m = randomised(SegDiffUNet(tiny_model_cfg()))
    utt = synth_utt("odd", frames, 1)
    heat = explain_utterance(m, Diffusion(), utt, SpecCondition(), 16, n_samples=3, ddim_steps=4)
    assert heat.shape == (frames, NF) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1


def test_crop_starts_cover_everything():
    for frames in (1, 15, 16, 17, 45, 100):
        starts = crop_starts(frames, min(16, frames), 8)
        covered = np.zeros(frames, bool)
        for s in starts:
            covered[s : s + 16] = True
        assert covered.all() and starts[-1] + min(16, frames) == frames


# ----------------------------------------------------------------------------------------------- diffusion maths


def test_schedule_matches_segdiff():
    d = Diffusion(DiffusionConfig(100))
    assert d.betas[0] == pytest.approx(1e-3) and d.betas[-1] == pytest.approx(0.2)
    assert d.timesteps(None) == list(range(99, -1, -1))
    ts = d.timesteps(10)
    assert ts[0] == 99 and ts[-1] == 0 and len(ts) == 10


class Oracle:
    """A 'model' that knows x0 and returns the exact eps: every sampler must then land on x0."""

    def __init__(self, x0: torch.Tensor, diff: Diffusion):
        self.x0, self.diff, self.cfg = x0, diff, ModelConfig(n_freq=x0.shape[-1])

    def encode_condition(self, cond, frames=None):
        return cond

    def denoise(self, x, t, feats):
        ab = torch.as_tensor(self.diff.alphas_cumprod, dtype=x.dtype)[t].reshape(-1, 1, 1, 1)
        return (x - ab.sqrt() * self.x0) / (1 - ab).sqrt()


@pytest.mark.parametrize("ddim_steps,eta", [(None, 0.0), (10, 0.0), (10, 1.0)])
def test_samplers_recover_x0_with_exact_eps(ddim_steps, eta):
    diff = Diffusion()
    x0 = (torch.rand(1, 1, 9, 7, generator=torch.Generator().manual_seed(0)) > 0.8).float() * 2 - 1
    heat = sample_batched(Oracle(x0, diff), diff, torch.zeros(1, 1, 9, 7), 9, NoiseSource(0, 0, 1, 5), [0], 5, ddim_steps, eta)
    np.testing.assert_allclose(heat[0].numpy(), ((x0[0, 0] + 1) / 2).numpy(), atol=1e-4)


class X0Oracle(Oracle):
    """Knows x0 and returns what an ``x0`` or ``logit`` network would: x0 itself, or a large logit of its sign."""

    def __init__(self, x0: torch.Tensor, diff: Diffusion):
        super().__init__(x0, diff)
        self.logit = diff.cfg.parameterisation == "logit"

    def denoise(self, x, t, feats):
        return (40.0 * self.x0 if self.logit else self.x0).expand_as(x)


@pytest.mark.parametrize("parameterisation", ["x0", "logit"])
@pytest.mark.parametrize("ddim_steps,eta", [(None, 0.0), (1, 0.0), (10, 1.0)])
def test_samplers_recover_x0_with_exact_x0(parameterisation, ddim_steps, eta):
    diff = Diffusion(DiffusionConfig(parameterisation=parameterisation))
    x0 = (torch.rand(1, 1, 9, 7, generator=torch.Generator().manual_seed(0)) > 0.8).float() * 2 - 1
    heat = sample_batched(X0Oracle(x0, diff), diff, torch.zeros(1, 1, 9, 7), 9, NoiseSource(0, 0, 1, 5), [0], 5, ddim_steps, eta)
    np.testing.assert_allclose(heat[0].numpy(), ((x0[0, 0] + 1) / 2).numpy(), atol=1e-4)


def test_one_ddim_step_is_the_pure_noise_end():
    """One step predicts from t = T-1 (the condition alone), never from t = 0 with pure noise as 'x_0'."""
    assert Diffusion().timesteps(1) == [99] and Diffusion().timesteps(2) == [99, 0]
    assert Diffusion().timesteps(5)[0] == 99 and Diffusion().timesteps(5)[-1] == 0


def test_t_max_fraction_trains_that_share_at_t_max():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, t, cond):
            seen.append(t.clone())
            return torch.zeros_like(x)

    diff = Diffusion(DiffusionConfig(parameterisation="logit"))
    x0 = -torch.ones(8, 1, 4, 5)
    diff.loss(Spy(), x0, x0, torch.Generator().manual_seed(0), t_max_fraction=0.5)
    assert (seen[0][:4] == 99).all() and not (seen[0][4:] == 99).all()


def test_q_sample_statistics():
    d = Diffusion()
    g = torch.Generator().manual_seed(0)
    x0 = torch.ones(4000, 1, 1, 1)
    t = torch.full((4000,), 60)
    xt = d.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    assert xt.mean().item() == pytest.approx(np.sqrt(d.alphas_cumprod[60]), abs=0.05)
    assert xt.std().item() == pytest.approx(np.sqrt(1 - d.alphas_cumprod[60]), abs=0.05)


# ----------------------------------------------------------------------------------------------- cached == naive


@pytest.mark.parametrize("ddim_steps,eta", [(None, 0.0), (8, 0.5)])
def test_cached_batched_equals_naive(ddim_steps, eta):
    m = randomised(SegDiffUNet(tiny_model_cfg()), seed=3)
    utt = synth_utt("same", 27, 4)  # 3 overlapping crops of 16 frames
    kw = dict(n_samples=2, ddim_steps=ddim_steps, eta=eta, seed=11)
    with one_thread():
        fast = explain_utterance(m, Diffusion(), utt, SpecCondition(), 16, max_batch=64, **kw)
        naive = explain_utterance(m, Diffusion(), utt, SpecCondition(), 16, naive=True, **kw)
        chunked = explain_utterance(m, Diffusion(), utt, SpecCondition(), 16, max_batch=2, **kw)
        per_chain = explain_utterance(m, Diffusion(), utt, SpecCondition(), 16, max_batch=1, **kw)  # 2 batches per crop
        other_seed = explain_utterance(m, Diffusion(), utt, SpecCondition(), 16, **{**kw, "seed": 12})
    np.testing.assert_allclose(fast, naive, atol=1e-4)
    for other in (chunked, per_chain):
        np.testing.assert_allclose(fast, other, atol=1e-4)
    assert np.abs(fast - other_seed).max() > 1e-2  # the noise really matters, so equality is not vacuous


def test_batches_split_across_crops_match_naive():
    """Batches of 3 chains over 3 crops x 2 samples: one batch ends mid-crop, the next spans two crops."""
    m = randomised(SegDiffUNet(tiny_model_cfg()), seed=7)
    utts = [synth_utt(f"c{i}", 16, 20 + i) for i in range(3)]
    cond = SpecCondition()(utts, [0, 0, 0], 16)
    args = (m, Diffusion(), cond, 16)
    fast = sample_batched(*args, NoiseSource(1, 2, 3, 2), [0, 1, 2], 2, 5, 0.0, max_batch=3)
    naive = sample_naive(*args, NoiseSource(1, 2, 3, 2), [0, 1, 2], 2, 5, 0.0)
    torch.testing.assert_close(fast, naive, rtol=0, atol=1e-4)
    assert (fast[0] - fast[1]).abs().max() > 1e-2  # each crop kept its own condition and noise


def test_shared_timestep_and_features_broadcast():
    """The fast path passes one timestep and one crop's features for the whole batch: same eps as per-row."""
    m = randomised(SegDiffUNet(tiny_model_cfg()), seed=5)
    x, c = torch.randn(3, 1, 13, NF), torch.randn(1, 1, 13, NF)
    feats = m.encode_condition(c)
    shared = m.denoise(x, torch.tensor([42]), feats)
    per_row = m.denoise(x, torch.full((3,), 42), feats.expand(3, -1, -1, -1))
    torch.testing.assert_close(shared, per_row, rtol=0, atol=1e-5)
    assert not torch.allclose(shared, m.denoise(x, torch.tensor([43]), feats))


# ----------------------------------------------------------------------------------------------- training


def test_overfit_few_utterances_and_loss_falls(tmp_path):
    utts = [synth_utt(f"u{i}", f, i) for i, f in enumerate([40, 50, 45])]
    cfg = tiny_cfg(steps=150)
    with one_thread():
        res = train(cfg, "synthetic", tmp_path / "ck", utts=utts, dev_utts=utts, condition=SpecCondition(), progress=False, log=lambda *_: None)
    losses = res["losses"]
    assert np.mean(losses[-15:]) < 0.5 * np.mean(losses[:10])
    val = res["val"][-1]
    # chance for a 5% mask is IoU ~2.6; an unwired condition cannot beat it on three utterances
    assert val["iou"] > 25, val
    assert (tmp_path / "ck" / "last.pt").exists() and (tmp_path / "ck" / "config.json").exists()


def test_overfit_demo_utterances(tmp_path, demo_ds):
    """The issue's wiring check on real rows: three demo utterances (different sentences), each a 32-frame window
    of the 33-bin band where their masks have most content (the full 257 bins would take minutes on a CPU)."""
    from training.segdiff.data import load_split

    utts, seen = [], set()
    for u in load_split(demo_ds, "train"):
        utt = u.id.split("__", 1)[1]  # one row per sentence: its vocoded twins share the condition, not the mask
        if utt not in seen:
            seen.add(utt)
            utts.append(u)
    wins = [(u, u.frames // 3) for u in utts[:3]]
    cover = sum(u.mask[s : s + 32].sum(axis=0) for u, s in wins)
    b0 = int(np.argmax(np.convolve(cover, np.ones(NF), mode="valid")))
    short = [Utterance(u.id, u.logmag[s : s + 32, b0 : b0 + NF].copy(), u.mask[s : s + 32, b0 : b0 + NF].copy()) for u, s in wins]
    cfg = tiny_cfg(steps=300)
    # the small preset's target (the clean mask's logit) and its one-step prediction from t = T-1
    cfg = replace(cfg, diffusion=replace(cfg.diffusion, parameterisation="logit"),
                  train=replace(cfg.train, val_samples=1, val_ddim_steps=1))
    with one_thread():
        res = train(cfg, "synthetic", tmp_path / "ck", utts=short, dev_utts=short, condition=SpecCondition(),
                    progress=False, log=lambda *_: None)
    losses = res["losses"]
    assert np.mean(losses[-15:]) < 0.2 * np.mean(losses[:10])
    # chance: a random 5% of the pixels against masks covering c of them has IoU ~ 0.05c / (0.05 + c - 0.05c)
    c = float(np.mean([u.mask.mean() for u in short]))
    chance = 100 * 0.05 * c / (0.05 + c - 0.05 * c)
    val = res["val"][-1]
    assert val["iou"] > 4 * chance, (val, chance)  # measured: IoU 29.8 against a chance level of 3.2
    # the heatmaps follow their own condition: each matches its own mask better than the other utterances' masks
    from training.segdiff.infer import load_checkpoint

    model, mcfg, _ = load_checkpoint(tmp_path / "ck")
    with one_thread():
        heats = [explain_utterance(model, Diffusion(mcfg.diffusion), u, SpecCondition(), 16, n_samples=1, ddim_steps=1, hop=16)
                 for u in short]
    own = np.mean([iou_f1(heats[i], short[i].mask)[0] for i in range(3)])
    other = np.mean([iou_f1(heats[i], short[j].mask)[0] for i in range(3) for j in range(3) if i != j])
    assert own > 2 * other, (own, other)  # measured: 29.8 against 0.5


def _demo_band(ds, split: str, frames: int, band: tuple[int, int]) -> list[Utterance]:
    """Every row of a demo split as its first ``frames`` frames of the frequency bins ``band``."""
    from training.segdiff.data import load_split

    lo, hi = band
    return [Utterance(u.id, u.logmag[:frames, lo:hi].copy(), u.mask[:frames, lo:hi].copy()) for u in load_split(ds, split)]


def test_specsegdiff_uses_its_condition_on_demo(tmp_path, demo_ds):
    """Generalisation to unseen demo sentences, against the shuffled-condition control (each crop trained with
    another crop's spectrogram): only a model that reads its condition beats the control."""
    from training.segdiff.data import load_split

    cover = sum(u.mask[:48].sum(axis=0) for u in load_split(demo_ds, "train"))
    b0 = int(np.argmax(np.convolve(cover, np.ones(NF), mode="valid")))
    train_utts = _demo_band(demo_ds, "train", 48, (b0, b0 + NF))
    held_out = _demo_band(demo_ds, "test", 48, (b0, b0 + NF))
    scores = {}
    for shuffled in (False, True):
        cfg = tiny_cfg(steps=200, shuffle_condition=shuffled)
        cfg = replace(cfg, diffusion=replace(cfg.diffusion, parameterisation="logit"),
                      train=replace(cfg.train, val_samples=1, val_ddim_steps=1, val_utterances=len(held_out)))
        with one_thread():
            res = train(cfg, "synthetic", tmp_path / f"ck{shuffled}", utts=train_utts, dev_utts=held_out,
                        condition=SpecCondition(), progress=False, log=lambda *_: None)
        scores[shuffled] = res["val"][-1]["iou"]
    assert scores[False] > scores[True] + 5, scores  # measured: 32.8 against 23.8 (the control learns the band's prior)


def test_resume_replays_exactly(tmp_path):
    utts = [synth_utt(f"u{i}", f, i) for i, f in enumerate([20, 30])]
    kw = dict(utts=utts, dev_utts=None, dev_split=None, condition=SpecCondition(), progress=False, log=lambda *_: None)
    with one_thread():
        train(tiny_cfg(steps=4), "synthetic", tmp_path / "a", **kw)
        train(tiny_cfg(steps=2), "synthetic", tmp_path / "b", **kw)
        train(tiny_cfg(steps=4), "synthetic", tmp_path / "b", **kw)  # resumes at step 2
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-6)
        torch.testing.assert_close(a["ema"][k], b["ema"][k], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="another config"):
        train(replace(tiny_cfg(steps=5), model=tiny_model_cfg(width=16)), "synthetic", tmp_path / "a", **kw)


def test_crop_sampler_is_a_function_of_step():
    utts = [synth_utt("a", 10, 0), synth_utt("b", 40, 1)]
    s = CropSampler(utts, 16, 4, seed=5, condition=SpecCondition())
    c1, x1, v1 = s.batch(7)
    c2, x2, v2 = s.batch(7)
    assert torch.equal(c1, c2) and torch.equal(x1, x2)
    assert c1.shape == (4, 1, 16, NF) and set(torch.unique(x1).tolist()) <= {-1.0, 1.0}
    assert v1.shape == (4, 1, 16, 1)
    assert not torch.equal(s.batch(8)[1], x1)


def test_presets():
    for name in ("paper", "small"):
        for cond in ("spec", "detector"):
            cfg = preset(name, cond)
            assert SegDiffConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert preset("paper", "spec").model.rrdb_blocks == 12 and preset("paper", "detector").model.rrdb_blocks == 1
    assert preset("paper", "spec").train.lr == 1e-4 and preset("paper", "spec").train.weight_decay == 1e-4
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_metrics_iou_f1():
    mask = np.zeros((20, 20), np.uint8)
    mask[:1, :] = 1  # 5% foreground
    assert iou_f1(mask.astype(float), mask) == (pytest.approx(100.0), pytest.approx(100.0))
    rng = np.random.default_rng(0)
    ious = [iou_f1(rng.random((100, 257)), (rng.random((100, 257)) > 0.95).astype(np.uint8))[0] for _ in range(5)]
    assert 1.5 < np.mean(ious) < 4.0  # uniform random ~2.6


# ----------------------------------------------------------------------------------------------- dataset -> submission


def _write_dataset(root, utts, split):
    from annotate.core.audio import encode_flac
    from annotate.core.dataset import ShardWriter, features

    feats = features(n_freq=NF)
    w = ShardWriter(root / "data" / f"{split}-00000-of-00001.parquet", feats)
    for u in utts:
        n = (u.frames - 1) * 128
        audio = {"bytes": encode_flac(np.zeros(max(n, 1), np.float32), 16000), "path": None}
        w.write({"id": u.id, "utt_id": u.id, "speaker": "s", "vocoder": "v", "source": "synthetic", "split": split,
                 "spoof_audio": audio, "real_audio": audio, "spoof_logmag": u.logmag.astype(np.float32) * 3 - 5,
                 "mask": u.mask, "diff": u.logmag.astype(np.float16), "num_samples": n, "offset": 0,
                 "align_score": 1.0, "rawboost": 0, "rawboost_seed": 0, "augment_copy": 0})
    w.close()


@pytest.mark.parametrize("normalisation", ["per-utterance", "dataset"])
def test_train_from_dataset_and_explain_split(tmp_path, normalisation):
    from benchmark.submission import read_metadata
    import pyarrow.parquet as pq

    from training.segdiff.infer import explain_split

    ds = tmp_path / "ds"
    _write_dataset(ds, [synth_utt(f"tr{i}", 24 + i, i) for i in range(3)], "train")
    _write_dataset(ds, [synth_utt(f"te{i}", f, 10 + i) for i, f in enumerate([9, 40, 23])], "test")
    with one_thread():
        res = train(replace(tiny_cfg(steps=3), normalisation=normalisation), ds, tmp_path / "ck", dev_split=None,
                    progress=False, log=lambda *_: None)
        assert res["step"] == 3
        out = explain_split(tmp_path / "ck", ds, "test", tmp_path / "sub.parquet", n_samples=2, ddim_steps=3, progress=False)
        limited = explain_split(tmp_path / "ck", ds, "test", tmp_path / "sub2.parquet", n_samples=2, ddim_steps=3, limit=1, progress=False)
    t = pq.read_table(out)
    assert t.column("id").to_pylist() == ["te0", "te1", "te2"]
    shapes = [np.asarray(h).shape for h in t.column("heatmap").to_pylist()]
    assert shapes == [(9, NF), (40, NF), (23, NF)]
    meta = read_metadata(out)
    assert meta["method"] == "specsegdiff" and meta["n_samples"] == 2 and meta["ddim_steps"] == 3
    assert pq.read_table(limited).num_rows == 1
    saved = json.loads((tmp_path / "ck" / "config.json").read_text()).get("normalisation")
    if normalisation == "dataset":  # the training split's mean/std, kept for inference
        raw = np.concatenate([synth_utt(f"tr{i}", 24 + i, i).logmag.astype(np.float32).ravel() * 3 - 5 for i in range(3)])
        assert saved == pytest.approx([raw.mean(), raw.std()], rel=1e-3)
    else:
        assert saved is None


def test_addsegdiff_with_small_detector(tmp_path):
    from training.detector.config import small
    from training.detector.model import Wav2Vec2AASIST

    from training.segdiff.data import DetectorCondition

    det = Wav2Vec2AASIST(small(), load_frontend_weights=False).eval()
    utts = []
    for i, f in enumerate([30, 41]):
        u = synth_utt(f"d{i}", f, i)
        u.audio = np.random.default_rng(i).standard_normal((f - 1) * 128).astype(np.float32) * 0.1
        utts.append(u)
    cond = DetectorCondition(det, (0, 1))
    cfg = replace(tiny_cfg(steps=2), model=tiny_model_cfg(condition="detector", detector_layers=(0, 1), detector_dim=128, layer_proj=8))
    with one_thread():
        res = train(cfg, "synthetic", tmp_path / "add", utts=utts, dev_utts=None, dev_split=None, condition=cond, progress=False, log=lambda *_: None)
        assert res["step"] == 2 and np.isfinite(res["losses"]).all()
        m = SegDiffUNet(cfg.model).eval()
        heat = explain_utterance(m, Diffusion(), utts[1], cond, 16, n_samples=2, ddim_steps=2)
    assert heat.shape == (41, NF)
    assert not any(p.requires_grad for p in det.parameters())
