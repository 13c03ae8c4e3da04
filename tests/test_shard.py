"""``explain --shard I/N`` + ``benchmark merge`` equals one unsharded ``explain`` (same seed); merge refuses bad parts."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from annotate.core.submission import parse_shard, shard_rows
from baselines.cli import main as explain_main
from baselines.explain import ExplainConfig, run
from baselines.shap import ShapConfig
from benchmark.cli import main as benchmark_main
from benchmark.submission import read_metadata
from test_rawwrapper import tiny_detector


def _same(a, b) -> None:
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.column("id").to_pylist() == tb.column("id").to_pylist()
    assert ta.column("heatmap").equals(tb.column("heatmap"))
    ma, mb = read_metadata(a), read_metadata(b)
    ma.pop("seconds_per_utterance", None), mb.pop("seconds_per_utterance", None)
    gap_a, gap_b = ma.pop("deeplift_convergence_gap_mean", None), mb.pop("deeplift_convergence_gap_mean", None)
    assert (gap_a is None) == (gap_b is None) and (gap_a is None or gap_a == pytest.approx(gap_b, rel=1e-9))
    assert ma == mb


def test_shard_rows_cover_the_split_once():
    for n_rows in (0, 1, 7, 10):
        for n in (1, 2, 3, 4):
            ranges = [shard_rows(n_rows, (i, n)) for i in range(n)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n_rows
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    with pytest.raises(ValueError, match="I/N"):
        parse_shard("2/2")


@pytest.mark.parametrize("method", ["gradientshap", "deepshap"])
def test_sharded_shap_merges_into_the_single_run(demo_ds, tmp_path, method):
    """DeepSHAP's parts each record their mean convergence gap: merged, the whole run's mean (row-weighted)."""
    det = tiny_detector()
    cfg = ExplainConfig(method=method, dataset=str(demo_ds), split="test", seed=3, limit=5, batch_rows=2,
                        shap=ShapConfig(n_references=2, n_samples=2, chunk=2, batch=2))
    whole = run(cfg, tmp_path / "whole.parquet", progress=False, detector=det)
    parts = [run(cfg, tmp_path / f"p{i}.parquet", progress=False, detector=det, shard=(i, 2)) for i in (1, 0)]
    assert read_metadata(parts[1])["rows"] == [0, 2] and read_metadata(parts[0])["rows"] == [2, 5]
    assert benchmark_main(["merge", *map(str, parts), "-o", str(tmp_path / "merged.parquet")]) == 0
    _same(whole, tmp_path / "merged.parquet")


def test_cli_shards_and_merge_checks(demo_ds, tmp_path, capsys):
    ds = str(demo_ds)
    args = ["--method", "smoothed-random", "--dataset", ds, "--split", "test", "--seed", "4", "--no-progress"]
    assert explain_main(args + ["-o", str(tmp_path / "whole.parquet")]) == 0
    for i in range(3):
        assert explain_main(args + ["-o", str(tmp_path / f"p{i}.parquet"), "--shard", f"{i}/3"]) == 0
    p = [str(tmp_path / f"p{i}.parquet") for i in range(3)]
    assert benchmark_main(["merge", p[2], p[0], p[1], "-o", str(tmp_path / "m.parquet")]) == 0
    _same(tmp_path / "whole.parquet", tmp_path / "m.parquet")
    capsys.readouterr()
    assert benchmark_main(["merge", p[0], p[0], p[1], "-o", str(tmp_path / "x.parquet")]) == 2
    assert "given twice" in capsys.readouterr().err and not (tmp_path / "x.parquet").exists()
    assert benchmark_main(["merge", p[0], p[1], "-o", str(tmp_path / "x.parquet")]) == 2
    assert "2/3 missing" in capsys.readouterr().err
    assert explain_main(args[:-3] + ["--seed", "5", "-o", str(tmp_path / "s5.parquet"), "--shard", "2/3"]) == 0
    assert benchmark_main(["merge", p[0], p[1], str(tmp_path / "s5.parquet"), "-o", str(tmp_path / "x.parquet")]) == 2
    assert "seed" in capsys.readouterr().err
    assert benchmark_main(["merge", str(tmp_path / "whole.parquet"), "-o", str(tmp_path / "x.parquet")]) == 2
    assert "not a part" in capsys.readouterr().err
    assert explain_main(args + ["-o", str(tmp_path / "y.parquet"), "--shard", "3/3"]) == 2
    assert np.isfinite(read_metadata(tmp_path / "m.parquet")["seconds_per_utterance"])
