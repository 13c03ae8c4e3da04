"""Issue 3: matched RawBoost rows replay bit for bit; a SIGKILLed build resumes to the same rows;
a Dask LocalCluster build equals the loky build."""
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from annotate.pipeline.build import BuildConfig, annotate_pair, build
from annotate.core.dataset import iter_rows, read_table, shard_paths
from annotate.sources import read_source
from annotate.pipeline.splits import assign_splits

from conftest import copy_subset as _subset

COLUMNS = ["id", "split", "mask", "diff", "spoof_logmag", "offset", "spoof_audio", "real_audio", "rawboost", "rawboost_seed"]


def _rows(ds):
    t = read_table(ds, columns=COLUMNS).sort_by("id")
    return t


def test_rawboost_rows_replay_bit_for_bit(demo_corpus, tmp_path):
    corpus = tmp_path / "LibriSeVoc"
    _subset(demo_corpus, corpus, 2)
    cfg = BuildConfig(source="librisevoc", root=str(corpus), rawboost_prob=1.0, rawboost_algo=5, augment_copies=1, seed=7)
    out = tmp_path / "ds"
    build(cfg, out, progress=False)
    rows = {r["id"]: r for r in iter_rows(out, columns=["id", "rawboost", "rawboost_seed", "spoof_audio", "real_audio", "augment_copy"])}
    assert len(rows) == 12 and all(r["rawboost"] == 5 for r in rows.values())
    assert sum(r["augment_copy"] == 1 for r in rows.values()) == 6
    pairs = {p.id: p for p in assign_splits(read_source("librisevoc", corpus)[0])}
    pid = sorted(pairs)[0]
    replayed = {r["id"]: r for r in annotate_pair(pairs[pid], cfg)}
    for rid, r in replayed.items():
        assert r["spoof_audio"]["bytes"] == rows[rid]["spoof_audio"]["bytes"]
        assert r["real_audio"]["bytes"] == rows[rid]["real_audio"]["bytes"]
        assert r["rawboost_seed"] == rows[rid]["rawboost_seed"]
    # the augmented copy is a different draw than the original row
    assert rows[pid]["rawboost_seed"] != rows[f"{pid}__aug1"]["rawboost_seed"]
    assert rows[pid]["spoof_audio"]["bytes"] != rows[f"{pid}__aug1"]["spoof_audio"]["bytes"]


def test_killed_build_resumes_to_exactly_the_uninterrupted_rows(demo_corpus, tmp_path):
    corpus = tmp_path / "LibriSeVoc"
    _subset(demo_corpus, corpus, 8)
    args = [sys.executable, "-m", "annotate.cli", "build", "--source", "librisevoc", "--root", str(corpus),
            "--shard-size", "2", "--no-progress", "--workers", "1"]
    ref = tmp_path / "ref"
    subprocess.run(args + ["--out", str(ref)], check=True, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    total = len(shard_paths(ref))
    while time.time() < deadline and proc.poll() is None:
        done = len(list((out / "data").glob("*.parquet"))) if (out / "data").exists() else 0
        if 2 <= done < total:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the build and its workers, mid-shard
    proc.wait()
    partial = len(list((out / "data").glob("*.parquet")))
    assert 0 < partial < total
    r = subprocess.run(args + ["--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in shard_paths(out)] == [p.name for p in shard_paths(ref)]
    assert not list(out.rglob("*.tmp"))
    a, b = _rows(ref), _rows(out)
    assert a.num_rows == b.num_rows == 24
    assert a.column("id").to_pylist() == b.column("id").to_pylist()  # none lost, none twice
    for col in COLUMNS:
        assert a.column(col).equals(b.column(col)), col


def test_dask_local_cluster_build_equals_loky(demo_corpus, tmp_path):
    pytest.importorskip("distributed")
    corpus = tmp_path / "LibriSeVoc"
    _subset(demo_corpus, corpus, 3)
    cfg = BuildConfig(source="librisevoc", root=str(corpus), shard_size=3)
    build(cfg, tmp_path / "loky", workers=2, progress=False)
    build(cfg, tmp_path / "dask", workers=2, backend="dask", progress=False)
    a, b = _rows(tmp_path / "loky"), _rows(tmp_path / "dask")
    assert a.num_rows == 9
    for col in COLUMNS:
        assert a.column(col).equals(b.column(col)), col


def test_build_writes_to_an_fsspec_url(demo_corpus, tmp_path):
    """Workers write shards straight to the output URL: file:// through fsspec, and memory://
    (in-process threads, since memory:// is per process), each equal to a plain local build."""
    import fsspec

    corpus = tmp_path / "LibriSeVoc"
    _subset(demo_corpus, corpus, 2)
    cfg = BuildConfig(source="librisevoc", root=str(corpus), shard_size=2)
    build(cfg, tmp_path / "local", progress=False)
    build(cfg, f"file://{tmp_path / 'viaurl'}", workers=2, progress=False)
    a, b = _rows(tmp_path / "local"), _rows(tmp_path / "viaurl")
    for col in COLUMNS:
        assert a.column(col).equals(b.column(col)), col
    s = build(cfg, "memory://vocmask-test/ds", workers=2, backend="threading", progress=False)
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls("/vocmask-test/ds/data", detail=False))
    assert names == [p.name for p in shard_paths(tmp_path / "local")]
    assert s["rows_out"] == a.num_rows
    import io

    remote = pq.read_table(io.BytesIO(fs.cat(f"/vocmask-test/ds/data/{names[0]}")))
    local = pq.read_table(shard_paths(tmp_path / "local")[0])
    assert remote.column("mask").equals(local.column("mask"))
    # resuming against the URL skips finished shards: the same rows come back
    assert build(cfg, "memory://vocmask-test/ds", workers=1, backend="threading", progress=False)["rows_out"] == a.num_rows


def test_resume_redoes_shards_whose_pairs_changed(demo_corpus, tmp_path, capsys):
    """A corpus that gains a pair between runs: the shard whose pair list changed is redone (same shard
    names), never skipped, so no id is written twice or lost; the change is said in one line."""
    import shutil

    corpus = tmp_path / "LibriSeVoc"
    utts = _subset(demo_corpus, corpus, 4)
    cfg = BuildConfig(source="librisevoc", root=str(corpus), split_policy="utterance", shard_size=64)
    out = tmp_path / "ds"
    build(cfg, out, progress=False)
    first = {p.name for p in shard_paths(out)}
    extra = sorted(p.stem for p in (demo_corpus / "gt").glob("*.wav"))[len(utts)]
    for d in [p for p in demo_corpus.iterdir() if p.is_dir()]:
        for f in d.glob(f"{extra}*.wav"):
            shutil.copy(f, corpus / d.name / f.name)
    capsys.readouterr()
    s = build(cfg, out, progress=False)
    assert "corpus changed" in capsys.readouterr().out
    ref = tmp_path / "ref"
    build(cfg, ref, progress=False)
    a, b = _rows(ref), _rows(out)
    ids = b.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == s["rows_out"] == a.num_rows  # none twice, none lost
    assert ids == a.column("id").to_pylist() and any(extra in i for i in ids)
    assert {p.name for p in shard_paths(out)} == first  # same shard count: the names alone could not tell
    for col in COLUMNS:
        assert a.column(col).equals(b.column(col)), col
