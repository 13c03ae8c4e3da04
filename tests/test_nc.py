"""Neural collapse: class means, NC sampling (deterministic, balanced, K-means for the spoof class),
NC explanations; on the demo data with the small detector trained in test_detector."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from training.detector import nc


def _blobs(seed=0):
    """Bona fide: one blob; spoof: three blobs of different sizes (one per 'vocoder')."""
    rng = np.random.default_rng(seed)
    real = rng.normal(0, 1, (40, 8))
    fakes = [rng.normal(c, 0.5, (n, 8)) for c, n in ((6, 60), (-6, 30), (12, 30))]
    emb = np.concatenate([real, *fakes])
    labels = np.array([0] * 40 + [1] * 120)
    return emb, labels


def test_class_means_and_explain():
    emb, labels = _blobs()
    means = nc.class_means(emb, labels)
    assert np.allclose(means[0], emb[:40].mean(0)) and np.allclose(means[1], emb[40:].mean(0))
    logits = np.stack([-np.linalg.norm(emb - means[0], axis=1), -np.linalg.norm(emb - means[1], axis=1)], 1)
    ex = nc.explain(emb, logits, means)
    assert ex["agree"].all()  # a nearest-mean "model" always agrees
    flipped = nc.explain(emb, logits[:, ::-1], means)
    assert not flipped["agree"].any()
    s = nc.summary(ex, labels, logits[:, 1] - logits[:, 0])
    assert s["agreement"] == 1.0 and s["margin_score_spearman"] > 0.99
    with pytest.raises(ValueError, match="no items of class 1"):
        nc.class_means(emb[:40], labels[:40])


def test_selection_deterministic_balanced_and_clustered():
    emb, labels = _blobs()
    a = nc.select(emb, labels, 20, clusters=3, seed=0)
    b = nc.select(emb, labels, 20, clusters=3, seed=0)
    assert np.array_equal(a["index"], b["index"])
    lab = labels[a["index"]]
    assert (lab == 0).sum() == 20 and (lab == 1).sum() == 20 and len(set(a["index"])) == 40
    # bona fide picks are exactly the 20 nearest the bona fide mean
    d = np.linalg.norm(emb[:40] - a["means"][0], axis=1)
    assert set(a["index"][lab == 0]) == set(np.argsort(d)[:20])
    # spoof picks come from all three blobs in proportion to their sizes (60/30/30 -> 10/5/5)
    blob = np.digitize(a["index"][lab == 1], [100, 130])
    assert sorted(np.bincount(blob).tolist()) == [5, 5, 10]
    with pytest.raises(ValueError, match="only 40 bona fide"):
        nc.select(emb, labels, 41)


def test_allocate():
    take = nc._allocate(np.array([7, 2, 1]), 5)
    assert take.sum() == 5 and (take <= [7, 2, 1]).all()
    assert nc._allocate(np.array([3, 3]), 10).tolist() == [3, 3]


def test_nc_on_demo(demo_ds, tmp_path_factory, tmp_path):
    """Trained small detector: NC sampling through the CLI writes a balanced manifest and trains a shallower
    student; the nearest-mean label agrees with the teacher on a clear majority (> 0.7) of test inputs and on
    >= 90% of the confidently classified ones (max softmax >= 0.9), whose disagreements are listed."""
    from test_detector import trained_detector
    from training.cli import main
    from training.detector import load_detector
    from training.detector.nc_run import nc_report

    ck = trained_detector(tmp_path_factory, demo_ds)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rep = nc_report(ck, demo_ds, "test", tmp_path / "nc")
        assert rep["agreement"] > 0.7, rep
        assert rep["n_confident"] >= 5 and rep["agreement_confident"] >= 0.9, rep  # the bar on confident items
        assert len(rep["disagreements"]) == round(rep["n_confident"] * (1 - rep["agreement_confident"]))
        assert (tmp_path / "nc" / "nc_pca.png").stat().st_size > 10_000
        assert json.loads((tmp_path / "nc" / "nc.json").read_text())["agreement"] == rep["agreement"]
        outs = []
        for name in ("s1", "s2"):
            out = tmp_path / name
            assert main(["detector", "--dataset", str(demo_ds), "--out", str(out), "--sampler", "nc", "--from", str(ck),
                         "--nc-per-class", "6", "--nc-clusters", "3", "--steps", "2", "--no-progress", "--threads", "1"]) == 0
            outs.append(out)
        rows = [list(csv.DictReader(open(o / "nc_manifest.csv"))) for o in outs]
        assert rows[0] == rows[1]  # deterministic
        assert sum(r["label"] == "0" for r in rows[0]) == 6 and sum(r["label"] == "1" for r in rows[0]) == 6
        student, teacher = load_detector(outs[0]), load_detector(ck)
        assert student.num_layers < teacher.num_layers
        assert len(student.config.backend.res_channels) < len(teacher.config.backend.res_channels)
        meta = json.loads((outs[0] / "config.json").read_text())
        assert meta["sampler"] == "nc" and meta["train"]["n_bona"] == 6 and meta["train"]["n_spoof"] == 6
    finally:
        torch.set_num_threads(old)
