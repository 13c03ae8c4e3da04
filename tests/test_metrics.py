"""Known answers for every segmentation and localisation metric, the paper's GDice identity, the bootstrap."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from skimage.metrics import structural_similarity
from scipy.ndimage import binary_dilation
from skimage.morphology import disk
from sklearn.metrics import roc_auc_score

from benchmark import localisation as L
from benchmark import metrics as M
from benchmark.stats import BootstrapConfig, mean_ci, summarise


def _mask(shape, pixels):
    m = np.zeros(shape, dtype=bool)
    for p in pixels:
        m[p] = True
    return m


def test_f1_iou_gdice_known_answers():
    truth = _mask((4, 4), [(0, 0), (0, 1)])
    pred = _mask((4, 4), [(0, 1), (3, 3)])
    assert M.f1(pred, truth) == pytest.approx(0.5)
    assert M.iou(pred, truth) == pytest.approx(1 / 3)
    # by hand: w_fg = 1/2^2, w_bg = 1/14^2; intersections 1 and 13; sums 4 and 28
    assert M.gdice(pred, truth) == pytest.approx(2 * (1 / 4 + 13 / 196) / (4 / 4 + 28 / 196))
    assert M.gdice(pred, truth) == pytest.approx(124 / 224)
    assert M.gdice(truth, truth) == pytest.approx(1.0)
    s = M.segmentation_scores_binary(pred, truth)
    assert s["F1"] == pytest.approx(50.0) and s["IoU"] == pytest.approx(100 / 3)


def test_gdice_paper_identity_at_five_percent():
    assert round(100 * M.gdice_at_density(0.0650), 1) == 10.9
    assert round(100 * M.gdice_at_density(0.5534), 1) == 57.5
    assert round(100 * M.gdice_at_density(0.05), 1) == 9.5  # uniform-random calibration row
    # the same identity holds on actual maps of exactly 5% density with a chosen overlap
    truth = np.zeros((20, 100), dtype=bool)
    truth.flat[:100] = True
    for tp in (0, 13, 55, 100):
        pred = np.zeros_like(truth)
        pred.flat[100 - tp : 200 - tp] = True
        f1 = M.f1(pred, truth)
        assert f1 == pytest.approx(tp / 100)
        assert M.gdice(pred, truth) == pytest.approx(M.gdice_at_density(f1))


def test_binarise_and_empty_policies():
    h = np.arange(100, dtype=np.float32).reshape(10, 10)
    b = M.binarise(h)
    assert b.dtype == bool and b.sum() == 5 and b.flat[95:].all()
    const = np.full((20, 20), 0.3)
    assert not M.binarise(const).any()
    truth = _mask((20, 20), [(5, 5), (5, 6)])
    s = M.segmentation_scores(const, truth)
    assert s["F1"] == 0 and s["IoU"] == 0 and s["FBound"] == 0
    empty = np.zeros((20, 20), dtype=bool)
    assert M.f1(empty, empty) == 0 and M.iou(empty, empty) == 0 and M.fbound(empty, empty) == 0
    assert M.gdice(empty, empty) == pytest.approx(1.0)  # empty truth class takes the background weight
    assert M.gdice(truth, empty) < 1.0


def test_boundary_definition():
    m = _mask((5, 5), [(2, 2)])
    expected = _mask((5, 5), [(1, 1), (1, 2), (2, 1), (2, 2)])  # differs from E, S or SE neighbour
    np.testing.assert_array_equal(M.boundary(m), expected)
    assert not M.boundary(np.ones((4, 4), bool)).any()


def test_fbound_known_answer_two_pixels_apart():
    pred = _mask((12, 12), [(5, 5)])
    truth = _mask((12, 12), [(5, 7)])
    per_r = M.fbound_per_radius(pred, truth)
    np.testing.assert_allclose(per_r, [0.5, 1, 1, 1, 1])
    assert M.fbound(pred, truth) == pytest.approx(0.9)
    assert M.fbound(truth, truth) == pytest.approx(1.0)


def _fbound_reference(pred, truth, r):
    bp, bt = M.boundary(pred), M.boundary(truth)
    precision = (bp & binary_dilation(bt, structure=disk(r))).sum() / bp.sum()
    recall = (bt & binary_dilation(bp, structure=disk(r))).sum() / bt.sum()
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_fbound_matches_disk_dilation_reference():
    rng = np.random.default_rng(0)
    for density in (0.02, 0.05, 0.3):
        pred, truth = rng.random((40, 33)) < density, rng.random((40, 33)) < density
        ours = M.fbound_per_radius(pred, truth)
        ref = [_fbound_reference(pred, truth, r) for r in M.RADII]
        np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_ssim_equals_skimage_and_known_values():
    rng = np.random.default_rng(1)
    for shape in ((11, 11), (30, 257)):
        pred, truth = rng.random(shape) < 0.05, rng.random(shape) < 0.2
        ref = structural_similarity(
            pred.astype(float), truth.astype(float), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1,
        )
        assert M.ssim(pred, truth) == pytest.approx(ref, abs=1e-12)
    zeros, ones = np.zeros((15, 15), bool), np.ones((15, 15), bool)
    assert M.ssim(zeros, zeros) == pytest.approx(1.0)
    c1 = 0.01**2
    assert M.ssim(zeros, ones) == pytest.approx(c1 / (1 + c1))
    assert np.isnan(M.ssim(np.zeros((10, 257), bool), np.zeros((10, 257), bool)))


def test_roc_auc_known_and_sklearn_with_ties():
    assert L.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert L.roc_auc(np.array([1.0, 1.0, 0.0, 0.0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    rng = np.random.default_rng(2)
    h = np.round(rng.random((30, 40)), 1)  # many ties
    t = rng.random((30, 40)) < 0.1
    assert L.roc_auc(h, t) == pytest.approx(roc_auc_score(t.ravel(), h.ravel()), abs=1e-12)
    assert np.isnan(L.roc_auc(h, np.zeros_like(t))) and np.isnan(L.roc_auc(h, np.ones_like(t)))


def test_relevance_mass_and_pointing_game():
    h = np.array([[1.0, -1.0], [3.0, 0.0]])
    t = np.array([[1, 1], [0, 0]], dtype=bool)
    assert L.relevance_mass_accuracy(h, t) == pytest.approx(0.25)
    assert L.relevance_mass_accuracy(-np.abs(h), t) == 0.0
    assert L.pointing_game(h, ~t) == 1.0 and L.pointing_game(h, t) == 0.0
    tied = np.array([[2.0, 2.0], [0.0, 1.0]])
    assert L.pointing_game(tied, t & np.array([[1, 0], [0, 0]], bool)) == pytest.approx(0.5)
    assert L.pointing_game(np.zeros((4, 5)), _mask((4, 5), [(0, 0)])) == pytest.approx(1 / 20)
    s = L.localisation_scores(h, t)
    assert set(s) == {"AUC", "RMA", "PG"} and s["RMA"] == pytest.approx(25.0)


def test_uniform_random_calibration_near_chance():
    rng = np.random.default_rng(3)
    f1s, ious = [], []
    for _ in range(20):
        truth = M.binarise(rng.random((100, 257)))
        s = M.segmentation_scores(rng.random((100, 257)), truth)
        f1s.append(s["F1"])
        ious.append(s["IoU"])
    assert 4.0 < np.mean(f1s) < 6.0 and 2.0 < np.mean(ious) < 3.2


def test_bootstrap_ci_seeded_and_brackets_mean():
    v = np.random.default_rng(4).normal(10, 2, size=400)
    a, b = mean_ci(v, BootstrapConfig(seed=7)), mean_ci(v, BootstrapConfig(seed=7))
    assert a == b
    lo, hi = a["ci"]
    assert lo < a["mean"] < hi and 0.2 < hi - lo < 0.6  # ~ 2 * 1.96 * 2 / sqrt(400) = 0.39
    with_nan = mean_ci(np.array([1.0, np.nan, 3.0]))
    assert with_nan["mean"] == 2.0 and with_nan["n"] == 2 and with_nan["n_undefined"] == 1
    assert mean_ci(np.array([np.nan]))["mean"] is None
    overall, per = summarise({"IoU": np.array([1.0, 2.0, 3.0, 5.0])}, np.array(["a", "a", "b", "b"]))
    assert overall["IoU"]["mean"] == 2.75 and per["a"]["IoU"]["mean"] == 1.5 and per["b"]["IoU"]["mean"] == 4.0


def test_metric_modules_never_import_torch():
    code = (
        "import sys, benchmark.metrics, benchmark.localisation, benchmark.stats, benchmark.submission, "
        "benchmark.score, benchmark.leaderboard, benchmark.chance, benchmark.cli; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
