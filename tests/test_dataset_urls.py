"""One reader for every location: a dataset copied to ``memory://`` and read through ``file://`` trains, explains
and scores exactly like the local folder; a Hub-layout tree (``annotate publish --dry-run``) honours its configs."""
from __future__ import annotations

import uuid

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from annotate.core.dataset import Dataset, build_config, open_dataset


@pytest.fixture(scope="module")
def locations(demo_ds):
    """The demo dataset as a local folder, a ``memory://`` copy and a ``file://`` URL."""
    name = f"/vocmask-{uuid.uuid4().hex[:8]}"
    mem = fsspec.filesystem("memory")
    mem.put(str(demo_ds), name, recursive=True)
    yield {"local": str(demo_ds), "memory": f"memory://{name}", "file": f"file://{demo_ds}"}
    mem.rm(name, recursive=True)


def test_reader_gives_the_same_rows_everywhere(locations):
    local = Dataset(locations["local"])
    some = [r["id"] for r in local.iter_rows("test", ["id"], start=3, stop=6)]
    assert len(some) == 3
    for where in ("memory", "file"):
        d = open_dataset(locations[where])
        assert d.splits() == local.splits() == ["dev", "test", "train"]
        assert [d.num_rows(s) for s in d.splits()] == [local.num_rows(s) for s in local.splits()]
        assert d.build_config() == local.build_config() and d.summary() == local.summary()
        assert [r["id"] for r in d.iter_rows("test", ["id"], start=3, stop=6)] == some
        got, want = d.read_rows(some[::-1], "test", ["id", "mask"]), local.read_rows(some, "test", ["id", "mask"])
        assert all(np.array_equal(got[i]["mask"], want[i]["mask"]) for i in some)
        assert d.read_table("train", ["id", "offset"]).equals(local.read_table("train", ["id", "offset"]))
    with pytest.raises(KeyError, match="not in"):
        local.read_rows(["no-such-id"])
    with pytest.raises(FileNotFoundError, match="no shards for split 'nope'"):
        local.require("nope")


def test_train_explain_score_identical_from_urls(locations, tmp_path):
    from baselines.explain import ExplainConfig, run
    from baselines.shap import ShapConfig
    from benchmark.score import score_submission
    from benchmark.stats import BootstrapConfig
    from training.detector.config import TrainConfig
    from training.detector.train import train
    from training.segdiff.data import load_split
    from test_detector import _tiny_cfg
    from test_rawwrapper import tiny_detector

    det = tiny_detector()
    cfg = ExplainConfig(method="gradientshap", split="test", seed=1, limit=4, dataset="",
                        shap=ShapConfig(n_references=2, n_samples=2, chunk=2, batch=2))
    boot = BootstrapConfig(resamples=0, seed=0)
    out = {}
    for where, loc in locations.items():
        ck = train(loc, tmp_path / f"det-{where}", _tiny_cfg(), TrainConfig(steps=2, batch_size=2, lr=5e-4, seed=0, save_every=2,
                                                                            precise_bn_batches=1), progress=False)
        sub = run(ExplainConfig(**{**cfg.__dict__, "dataset": loc}), tmp_path / f"sub-{where}.parquet", progress=False, detector=det)
        res = score_submission(sub, loc, "test", boot=boot, limit=4)
        utts = load_split(loc, "dev", limit=2)
        out[where] = (torch.load(ck / "model.pt", weights_only=True), pq.read_table(sub), res, utts)
    w0, t0, r0, u0 = out["local"]
    for where in ("memory", "file"):
        w, t, r, u = out[where]
        assert all(torch.equal(w0[k], w[k]) for k in w0)
        assert t.column("id").equals(t0.column("id")) and t.column("heatmap").equals(t0.column("heatmap"))
        assert r["overall"] == r0["overall"] and r["per_vocoder"] == r0["per_vocoder"] and r["dataset"] == locations[where]
        assert [x.id for x in u] == [x.id for x in u0] and all(np.array_equal(a.mask, b.mask) for a, b in zip(u, u0))


def test_hub_layout_honours_configs(demo_ds, tmp_path):
    from annotate.hub.publish import stage_tree

    tree = stage_tree(demo_ds, tmp_path / "tree", repo_id="vocmask/demo", withhold=True, key=tmp_path / "key.parquet",
                      figure=False).root
    assert not (tree / "build.json").exists()
    name = f"/hub-{uuid.uuid4().hex[:8]}"
    fsspec.filesystem("memory").put(str(tree), name, recursive=True)
    try:
        for loc in (str(tree), f"memory://{name}"):
            assert Dataset(loc).splits() == ["dev", "test", "train"]  # default config + the test split of `benchmark`
            assert Dataset(loc, "default").splits() == ["dev", "train"]
            bench = Dataset(loc, "benchmark")
            assert bench.splits() == ["test"] and "mask" not in bench.schema("test").names
            assert "mask" in Dataset(loc, "default").schema("train").names
            assert bench.num_rows("test") == Dataset(str(demo_ds)).num_rows("test")
            hub, built = build_config(loc), build_config(demo_ds)  # from the shards' metadata (publish drops local paths)
            assert {k: v for k, v in hub.items() if k != "root"} == {k: v for k, v in built.items() if k != "root"}
            assert Dataset(loc).summary() is None
            with pytest.raises(ValueError, match="no config 'nope'"):
                Dataset(loc, "nope").splits()
    finally:
        fsspec.filesystem("memory").rm(name, recursive=True)
