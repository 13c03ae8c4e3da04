"""DeepSHAP as (window, reference) pairs in small batches is captum's DeepLiftShap, whatever the batch; its
convergence gap is captum's; the log-spectral front end's log gets DeepLift's Rescale rule."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from baselines import shap
from baselines.rawwrapper import SPOOF, RawWrapper, spectrogram
from baselines.shap import ShapConfig, deepshap, rescale_rules
from test_rawwrapper import tiny_detector


def _problem(silent_start: bool):
    det = tiny_detector(extractor="logspec")
    rng = np.random.default_rng(0)
    t = np.arange(det.config.crop) / 16000
    x = np.stack([0.3 * np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(t.size) for f in (220, 330)])
    refs = 0.1 * rng.standard_normal((3, det.config.crop))
    if silent_start:
        x[:, : x.shape[1] // 4] = 0.0  # digitally silent, as recorded prompts can be
    logmag, phase = spectrogram(x.astype(np.float32))
    return RawWrapper(det, det.config.crop).eval(), logmag, phase, spectrogram(refs.astype(np.float32))[0]


@pytest.fixture(scope="module")
def problem():
    return _problem(silent_start=False)


def _captum(wrapper, logmag, phase, refs):
    from captum.attr import DeepLiftShap

    with rescale_rules(True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr, delta = DeepLiftShap(wrapper).attribute(logmag.clone().requires_grad_(True), baselines=refs, target=SPOOF,
                                                      additional_forward_args=(phase,), return_convergence_delta=True)
    w, r = logmag.shape[0], refs.shape[0]
    with torch.no_grad():  # captum pairs input i with every reference: rows i*r .. i*r + r - 1
        fx = wrapper(logmag, phase)[:, SPOOF].repeat_interleave(r)
        fr = wrapper(refs.repeat(w, 1, 1), phase.repeat_interleave(r, 0))[:, SPOOF]
    return attr.detach(), float(delta.abs().sum() / (fx - fr).abs().sum())


@pytest.mark.parametrize("batch", [1, 4, 6])
def test_deepshap_in_pairs_is_captums_deepliftshap(problem, batch):
    wrapper, logmag, phase, refs = problem
    want, want_gap = _captum(wrapper, logmag, phase, refs)
    got, gap = deepshap(wrapper, logmag, phase, refs, ShapConfig(n_references=3, batch=batch))
    scale = float(want.abs().max())
    assert scale > 0
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-4 * scale)
    assert gap == pytest.approx(want_gap, rel=1e-3, abs=1e-6)


def test_log_of_the_spectral_front_end_gets_the_rescale_rule(monkeypatch):
    """As a plain call the log passes its gradient near the floor (up to 1/floor): the attributions stop adding
    up to f(x) - f(ref) once the input has silent bins (the gradient is taken there). With the Rescale rule on LogFloor the gap shrinks."""
    wrapper, logmag, phase, refs = _problem(silent_start=True)
    _, gap = deepshap(wrapper, logmag, phase, refs, ShapConfig(n_references=3))
    monkeypatch.setattr(shap, "EXTRA_RESCALE", tuple(t for t in shap.EXTRA_RESCALE if t.__name__ != "LogFloor"))
    _, gap_plain = deepshap(wrapper, logmag, phase, refs, ShapConfig(n_references=3))
    assert gap < 0.1 * gap_plain, (gap, gap_plain)
