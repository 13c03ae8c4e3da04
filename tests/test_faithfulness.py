"""Faithfulness (AI, AD, AG, Fid-In) with toy torch detectors whose answers are computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from annotate.core.spectral import DEFAULT_STFT, istft, stft
from benchmark.faithfulness import faithfulness, masked_in, scores_from_probs

SR = DEFAULT_STFT.sample_rate
T = np.arange(SR) / SR  # 1 s: 440 Hz and 3000 Hz complete whole cycles


def tone(amp: float, hz: float = 440.0) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * T)).astype(np.float32)


class RMSDetector(torch.nn.Module):
    """Spoof logit k * (rms(x) - t), bona fide logit 0."""

    def __init__(self, k: float = 10.0, t: float = 0.3):
        super().__init__()
        self.k, self.t = k, t

    def forward(self, x):
        z = self.k * (x.pow(2).mean(dim=1).sqrt() - self.t)
        return torch.stack([torch.zeros_like(z), z], dim=1)


class BandDetector(torch.nn.Module):
    """A fixed linear model on the spectrum: spoof logit = w * mean |STFT| over bins 92..100 (~3 kHz) - b."""

    def __init__(self, w: float = 1.0, b: float = 2.0):
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x):
        band = stft(x).abs()[:, :, 92:101].mean(dim=(1, 2))
        z = self.w * band - self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def grid(n: int = SR) -> tuple[int, int]:
    return DEFAULT_STFT.n_frames(n), DEFAULT_STFT.n_freq


def test_masked_in_extremes_and_magnitude_phase_form():
    rng = np.random.default_rng(0)
    spoof, real = rng.standard_normal(SR).astype(np.float32) * 0.1, rng.standard_normal(SR).astype(np.float32) * 0.1
    np.testing.assert_allclose(masked_in(spoof, real, np.ones(grid())), spoof, atol=1e-5)
    np.testing.assert_allclose(masked_in(spoof, real, np.zeros(grid())), real, atol=1e-5)
    h = (rng.random(grid()) < 0.05).astype(np.float32)
    ss, sb = stft(spoof), stft(real)
    mag = h * np.abs(ss) + (1 - h) * np.abs(sb)
    phase = h * np.angle(ss) + (1 - h) * np.angle(sb)
    expected = istft((mag * np.exp(1j * phase)).astype(np.complex64), SR)
    np.testing.assert_allclose(masked_in(spoof, real, h), expected, atol=1e-5)
    with pytest.raises(ValueError, match="STFT grid"):
        masked_in(spoof, real, np.zeros((10, 257)))


def test_rms_detector_hand_computed_deletion():
    det = RMSDetector(k=10.0, t=0.3)
    spoof, real = tone(0.8), tone(0.2)
    p1 = sigmoid(10 * (0.8 / math.sqrt(2) - 0.3))  # 0.9345: predicted spoof
    o1 = sigmoid(10 * (0.2 / math.sqrt(2) - 0.3))  # empty mask: the masked-in input is the real twin
    out = faithfulness(det, spoof, real, np.zeros(grid()))
    assert out["AI"] == 0.0 and out["AG"] == 0.0 and out["FidIn"] == 0.0
    assert out["AD"] == pytest.approx(100 * (p1 - o1) / p1, abs=1e-3)
    keep_all = faithfulness(det, spoof, real, np.ones(grid()))
    assert keep_all["AD"] == pytest.approx(0.0, abs=1e-3) and keep_all["FidIn"] == 100.0


def test_rms_detector_hand_computed_increase():
    det = RMSDetector(k=10.0, t=0.3)
    spoof, real = tone(0.5), tone(0.9)
    p1 = sigmoid(10 * (0.5 / math.sqrt(2) - 0.3))
    o1 = sigmoid(10 * (0.9 / math.sqrt(2) - 0.3))
    out = faithfulness(det, spoof, real, np.zeros(grid()))
    assert out["AI"] == 100.0 and out["AD"] == 0.0 and out["FidIn"] == 100.0
    assert out["AG"] == pytest.approx(100 * (o1 - p1) / (1 - p1), abs=1e-3)


def test_band_detector_keeps_the_artifact_band():
    """Marking the 3 kHz artifact band keeps the detector's output; marking everything else removes it."""
    det = BandDetector(w=5.0, b=3.5)
    real = tone(0.3, 440.0)
    spoof = real + tone(0.05, 3000.0)  # the "vocoder artifact": bin 96 = 3000 Hz / 31.25 Hz
    p = torch.softmax(det(torch.from_numpy(np.stack([spoof, real]))), dim=1).numpy()
    assert p[0, 1] > 0.9 and p[1, 1] < 0.2
    band = np.zeros(grid(), dtype=np.float32)
    band[:, 88:105] = 1
    good = faithfulness(det, spoof, real, band)
    assert good["AD"] < 1.0 and good["FidIn"] == 100.0
    bad = faithfulness(det, spoof, real, 1 - band)
    expected_ad = 100 * (p[0, 1] - p[1, 1]) / p[0, 1]  # the complement leaves the real twin
    assert bad["AD"] == pytest.approx(expected_ad, abs=1.0) and bad["FidIn"] == 0.0


def test_tie_and_saturation_policies():
    tie = scores_from_probs(np.array([[0.5, 0.5]]), np.array([[0.5, 0.5]]))
    assert tie["AI"][0] == 0 and tie["AD"][0] == 0 and tie["AG"][0] == 0 and tie["FidIn"][0] == 100  # ties -> spoof
    sat = scores_from_probs(np.array([[0.0, 1.0]]), np.array([[0.2, 0.8]]))
    assert sat["AG"][0] == 0.0 and sat["AD"][0] == pytest.approx(20.0) and np.isfinite(sat["AG"]).all()
    bona = scores_from_probs(np.array([[0.8, 0.2]]), np.array([[0.9, 0.1]]))  # c = 0 (bona fide)
    assert bona["AI"][0] == 100 and bona["AG"][0] == pytest.approx(50.0) and bona["FidIn"][0] == 100

    class Saturated(torch.nn.Module):
        def forward(self, x):
            return torch.stack([torch.zeros(x.shape[0]), torch.full((x.shape[0],), 200.0)], dim=1)

    out = faithfulness(Saturated(), tone(0.5), tone(0.1), np.zeros(grid()))
    assert out == {"AI": 0.0, "AD": 0.0, "AG": 0.0, "FidIn": 100.0}


def test_bad_detector_output_is_reported():
    class Wrong(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 3)

    with pytest.raises(ValueError, match=r"expected \(2, 2\)"):
        faithfulness(Wrong(), tone(0.5), tone(0.1), np.zeros(grid()))
