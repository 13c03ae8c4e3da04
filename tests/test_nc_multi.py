"""NC across corpora: vocoder subsets as separate datasets, multi-teacher NC sampling (each teacher selects from
its own dataset, per-class counts, deterministic), a student trained on the merged manifest, mAP, and
`train evaluate --nc` (confident agreement, disagreements listed) on a dataset the model never saw."""
from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from training.detector import Wav2Vec2AASIST, save_detector
from training.detector.config import TrainConfig
from training.detector.data import AudioStore, Item, MultiStore, index_split
from training.detector.evaluate import average_precision, metrics
from training.detector.subset import vocoder_subset


@pytest.fixture(scope="module")
def corpora(demo_ds, tmp_path_factory):
    """Two 'corpora' cut from the demo dataset (Griffin-Lim; WORLD + LPC) and an untrained tiny teacher for each."""
    from test_detector import _tiny_cfg

    root = tmp_path_factory.mktemp("corpora")
    a = vocoder_subset(demo_ds, root / "ds_gl", ["griffinlim"], split_names=["train"])
    b = vocoder_subset(demo_ds, root / "ds_wl", ["world", "lpc"], split_names=["train"])
    teachers = []
    for seed, name in ((1, "ta"), (2, "tb")):
        torch.manual_seed(seed)
        teachers.append(save_detector(Wav2Vec2AASIST(_tiny_cfg()), root / name))
    return {"a": a, "b": b, "ta": teachers[0], "tb": teachers[1]}


def test_vocoder_subset(demo_ds, corpora, tmp_path):
    vocs = {v for p in (corpora["b"] / "data").glob("*.parquet") for v in pq.read_table(p, columns=["vocoder"])["vocoder"].to_pylist()}
    assert vocs == {"world", "lpc"}
    full = [it for it in index_split(demo_ds, "train") if it.vocoder in ("world", "lpc")]
    assert len([it for it in index_split(corpora["b"], "train") if it.label == 1]) == len(full)
    assert json.loads((corpora["b"] / "subset.json").read_text())["vocoders"] == ["world", "lpc"]
    with pytest.raises(ValueError, match="no rows of vocoder"):
        vocoder_subset(demo_ds, tmp_path / "x", ["mp3"])


def test_multistore_reads_each_items_own_dataset(corpora):
    a, b = (index_split(corpora[k], "train") for k in ("a", "b"))
    from dataclasses import replace

    store = MultiStore(corpora["a"], "train")
    ib = replace(next(it for it in b if it.label == 1), dataset=str(corpora["b"]))
    assert np.array_equal(store.wave(ib), AudioStore(corpora["b"], "train").wave(ib))
    assert np.array_equal(store.wave(a[1]), AudioStore(corpora["a"], "train").wave(a[1]))  # "" = the default dataset


def test_multi_teacher_sampling(corpora, tmp_path):
    from training.detector.nc_run import MANIFEST, load_manifest_items, nc_sample_multi

    pairs = [(corpora["ta"], corpora["a"]), (corpora["tb"], corpora["b"])]
    runs = [nc_sample_multi(pairs, tmp_path / f"r{i}", 4, clusters=2, seed=0) for i in range(2)]
    rows = [list(csv.DictReader(open(p))) for p, _ in runs]
    assert rows[0] == rows[1]  # deterministic by seed
    items = runs[0][1]
    for (ck, ds), vocs in zip(pairs, ({"griffinlim"}, {"world", "lpc"})):
        mine = [r for r in rows[0] if r["dataset"] == str(ds)]
        assert all(r["teacher"] == str(ck) for r in mine)
        assert sum(r["label"] == "0" for r in mine) == 4 and sum(r["label"] == "1" for r in mine) == 4
        assert {r["vocoder"] for r in mine if r["label"] == "1"} <= vocs
        keys = {it.key for it in index_split(ds, "train")}
        assert all((r["id"], int(r["label"])) in keys for r in mine)
    assert [it.dataset for it in items] == [r["dataset"] for r in rows[0]]
    back = load_manifest_items(None, tmp_path / "r0" / MANIFEST)
    assert back == items
    with pytest.raises(ValueError, match="only"):
        nc_sample_multi(pairs, tmp_path / "big", 1000)


def test_average_precision_matches_sklearn():
    from sklearn.metrics import average_precision_score

    y = np.array([0, 0, 1, 1])
    assert average_precision(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(5 / 6)
    assert average_precision(y, np.array([0.0, 1, 2, 3])) == 1.0
    rng = np.random.default_rng(0)
    vocs = ["bonafide"] * 20 + ["gl"] * 15 + ["world"] * 25
    items = [Item(f"i{k}", int(v != "bonafide"), v, "u", 0, 0, k) for k, v in enumerate(vocs)]
    s = rng.normal(size=60) + np.array([0] * 20 + [1] * 15 + [0.3] * 25)
    res = metrics(items, s)
    lab = np.array([it.label for it in items])
    assert res["map"] == pytest.approx(average_precision_score(lab, s))
    for v, lo, hi in (("gl", 20, 35), ("world", 35, 60)):
        sel = np.r_[0:20, lo:hi]
        assert res["per_vocoder"][v]["map"] == pytest.approx(average_precision_score(lab[sel], s[sel]))
    with pytest.raises(ValueError, match="both"):
        average_precision(np.ones(3), np.arange(3.0))


def test_confident_agreement_summary():
    from training.detector import nc

    emb = np.array([[0.0], [0.2], [1.0], [0.9], [0.1]])
    means = np.array([[0.0], [1.0]])
    logits = np.array([[5.0, 0], [0, 5.0], [0, 5.0], [0.1, 0], [0, 0.1]])  # 2nd: confident, disagrees; 4th/5th unsure
    ex = nc.explain(emb, logits, means)
    s = nc.summary(ex, np.array([0, 0, 1, 1, 0]), logits[:, 1] - logits[:, 0], confidence=0.9)
    assert s["n_confident"] == 3 and s["agreement_confident"] == pytest.approx(2 / 3)
    assert s["agreement"] == pytest.approx(2 / 5)
    assert nc.summary(ex, np.zeros(5), np.zeros(5), confidence=1.0)["agreement_confident"] is None


def test_student_on_two_datasets_and_evaluate_nc(demo_ds, corpora, tmp_path):
    """`train detector --sampler nc --from A:DS_A --from B:DS_B` trains the shallower student on the merged
    selection; `train evaluate --nc` on the full demo test split (which no model trained on) writes EER/mAP and
    the NC explanation with class means from the student's own training items."""
    from training.cli import main
    from training.detector import load_detector
    from training.detector.train import train

    # teacher A trained two steps so its checkpoint records its training data (like any real teacher)
    from test_detector import _tiny_cfg

    ta = train(corpora["a"], tmp_path / "ta", _tiny_cfg(), TrainConfig(steps=2, batch_size=2, seed=0, save_every=10),
               progress=False)
    out = tmp_path / "student"
    args = ["detector", "--out", str(out), "--sampler", "nc", "--from", f"{ta}:{corpora['a']}",
            "--from", f"{corpora['tb']}:{corpora['b']}", "--nc-per-class", "3", "--nc-clusters", "2", "--steps", "2",
            "--batch-size", "2", "--no-progress", "--threads", "1"]
    assert main(args) == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["train"]["n_bona"] == 6 and meta["train"]["n_spoof"] == 6
    assert meta["train"]["datasets"] == sorted([str(corpora["a"]), str(corpora["b"])])
    assert [t["dataset"] for t in meta["teachers"]] == [str(corpora["a"]), str(corpora["b"])]
    assert load_detector(out).num_layers < load_detector(ta).num_layers
    assert main(args) == 0  # resumes from the recorded manifest (already finished)

    ev = tmp_path / "ev"
    assert main(["evaluate", "--detector", str(out), "--dataset", str(demo_ds), "--split", "test", "-o", str(ev), "--nc",
                 "--nc-confidence", "0.5", "--max-windows", "1", "--no-progress", "--threads", "1"]) == 0
    m = json.loads((ev / "metrics.json").read_text())
    assert 0 <= m["map"] <= 1 and all("map" in r for r in m["per_vocoder"].values())
    rep = json.loads((ev / "nc.json").read_text())
    assert rep["train_datasets"] == sorted([str(corpora["a"]), str(corpora["b"])]) and rep["n_train"] == 12
    rows = list(csv.DictReader(open(ev / "nc.csv")))
    assert len(rows) == rep["n"] == m["n_bona"] + m["n_spoof"]
    assert rep["n_confident"] == rep["n"]  # max softmax of two classes is always >= 0.5
    assert rep["agreement_confident"] == pytest.approx(np.mean([r["agree"] == "1" for r in rows]))
    for r in rows:
        assert (float(r["d_fake"]) < float(r["d_real"])) == (r["nc_label"] == "1")
    odd = list(csv.DictReader(open(ev / "nc_disagreements.csv")))
    assert [r["id"] for r in odd] == [d["id"] for d in rep["disagreements"]]
    assert len(odd) == sum(r["agree"] == "0" for r in rows)


def test_cli_errors(corpora, tmp_path, capsys):
    from training.cli import main

    assert main(["detector", "--out", str(tmp_path / "s"), "--sampler", "nc", "--from", str(corpora["ta"])]) == 2
    assert "no dataset" in capsys.readouterr().err
    assert main(["detector", "--out", str(tmp_path / "s"), "--sampler", "nc", "--from", f"{tmp_path}:{corpora['a']}"]) == 2
    assert "not a detector checkpoint" in capsys.readouterr().err
    assert main(["detector", "--out", str(tmp_path / "s"), "--sampler", "nc",
                 "--from", f"{corpora['ta']}:{tmp_path / 'nowhere'}"]) == 2
    assert "no 'train' shards" in capsys.readouterr().err
    assert main(["detector", "--out", str(tmp_path / "s")]) == 2
    assert "--dataset DS is required" in capsys.readouterr().err
    assert main(["evaluate", "--detector", str(corpora["ta"]), "--dataset", str(corpora["a"]), "--split", "train", "--nc"]) == 2
    assert "records no training data" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
