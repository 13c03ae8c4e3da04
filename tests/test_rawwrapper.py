"""RawWrapper reproduces the detector on demo utterances; crop/tile windows map heatmaps back onto the row grid."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from annotate.core.audio import decode_bytes
from annotate.core.dataset import iter_rows
from annotate.core.spectral import DEFAULT_STFT
from baselines.rawwrapper import RawWrapper, make_windows, spectrogram


def tiny_detector(seed: int = 0, crop: int = 8000, extractor: str | None = None):
    """A randomly initialised Wav2Vec2-AASIST, small enough for unit tests (BN statistics moved off init);
    ``extractor``: "conv" or "logspec" (default: the small preset's)."""
    from training.detector import Wav2Vec2AASIST, preset

    cfg = preset("small")
    fe = replace(cfg.frontend, conv_layers=((8, 10, 5),) + ((8, 3, 2),) * 4 + ((8, 2, 2),) * 2, embed_dim=32,
                 num_heads=2, ff_dim=32, pos_conv_kernel=8, pos_conv_groups=2, spec_channels=(4, 8, 8, 8),
                 extractor=extractor or cfg.frontend.extractor)
    be = replace(cfg.backend, res_channels=(1, 4, 4, 8, 8, 8, 8), proj_dim=24, gat_dim=16, hs_dims=(8, 8))
    torch.manual_seed(seed)
    m = Wav2Vec2AASIST(replace(cfg, frontend=fe, backend=be, crop=crop))
    m.train()
    with torch.no_grad():
        m(torch.randn(4, crop) * 0.1)
    return m.eval()


def test_rawwrapper_equals_detector_on_demo(demo_ds):
    det = tiny_detector()
    worst, n = 0.0, 0
    for row in iter_rows(demo_ds, "test", ["id", "spoof_audio", "num_samples"]):
        x, _ = decode_bytes(row["spoof_audio"]["bytes"])
        for length in (det.config.crop, x.size):  # the detector's crop length, and the whole (odd-length) utterance
            crops = make_windows(x, det.config.crop).crops if length == det.config.crop else x[None]
            logmag, phase = spectrogram(crops)
            wrapper = RawWrapper(det, crops.shape[1])
            with torch.no_grad():
                ref = det(torch.from_numpy(crops))
                out = wrapper(logmag, phase)
            assert out.shape == ref.shape == (crops.shape[0], 2)
            worst = max(worst, (out - ref).abs().max().item())
        n += 1
        if n == 3:
            break
    assert n == 3
    assert worst <= 1e-4, f"RawWrapper differs from the detector by {worst:.3g}"


def test_rawwrapper_is_a_function_of_the_log_magnitude():
    """Gradients reach logM, and changing logM changes the output (a uniform gain would not: the small
    detector normalises its input's level, so the change boosts the low-frequency half only)."""
    det = tiny_detector()
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    logmag, phase = spectrogram(x[None])
    wrapper = RawWrapper(det, 8000)
    lm = logmag.clone().requires_grad_(True)
    wrapper(lm, phase)[:, 1].sum().backward()
    assert lm.grad is not None and lm.grad.abs().sum() > 0 and torch.isfinite(lm.grad).all()
    with torch.no_grad():
        boosted = logmag.clone()
        boosted[..., :128] += 2.0
        assert not torch.allclose(wrapper(boosted, phase), wrapper(logmag, phase), atol=1e-4)


@pytest.mark.parametrize("length", [3001, 8000, 8001, 20011])
def test_windows_cover_odd_lengths(length):
    n = 8000
    x = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    win = make_windows(x, n)
    frames = DEFAULT_STFT.n_frames(length)
    assert win.crops.shape[1] == n and win.n_frames == frames
    assert win.frame_map.shape == (win.crops.shape[0], DEFAULT_STFT.n_frames(n))
    if length >= n:  # crops are slices of the signal at their recorded start
        for c, m in zip(win.crops, win.frame_map):
            start = m[1] * DEFAULT_STFT.hop_length - DEFAULT_STFT.hop_length
            assert np.any([np.array_equal(c, x[s : s + n]) for s in (start, length - n)])
    else:  # tiled: the crop repeats the signal
        assert np.array_equal(win.crops[0][:length], x) and np.array_equal(win.crops[0][length : 2 * length], x[: n - length])
    ones = np.ones((win.crops.shape[0], win.frame_map.shape[1], 257), np.float32)
    back = win.to_utterance(ones)
    assert back.shape == (frames, 257) and np.all(back >= 1.0 - 1e-6)
    ramp = np.broadcast_to(np.arange(frames, dtype=np.float32)[:, None], (frames, 257))
    crops_ramp = ramp[win.frame_map]  # a map that already lives on the utterance grid comes back unchanged
    if length >= n:
        np.testing.assert_allclose(win.to_utterance(crops_ramp), ramp, atol=1e-4)
    else:  # tiled copies add up: each frame gets its value times its number of copies
        counts = np.bincount(win.frame_map[0], minlength=frames)
        np.testing.assert_allclose(win.to_utterance(crops_ramp)[:, 0], ramp[:, 0] * np.maximum(counts, 1) * (counts > 0) + ramp[:, 0] * (counts == 0), atol=1e-3)
