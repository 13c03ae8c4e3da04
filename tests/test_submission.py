"""Submission writing/reading and every validation message (exit code 2, ids named, no traceback)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmark.cli import main
from benchmark.score import iter_split
from benchmark.submission import SubmissionWriter, read_metadata, write_submission
from benchmark.synthetic import write_dataset

FRAMES = 20


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("sub") / "ds", n_per_vocoder=3, with_audio=False, frames=FRAMES, seed=1)


@pytest.fixture(scope="module")
def rows(ds):
    return list(iter_split(ds, "test", ["id", "mask"], arrays=("mask",)))


def heatmaps(rows, seed=0):
    rng = np.random.default_rng(seed)
    return {r["id"]: rng.random(r["mask"].shape, dtype=np.float32) for r in rows}


def run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return rc, out.out, out.err


def score(ds, path, capsys):
    return run(["score", str(path), "--dataset", str(ds), "--bootstrap", "100"], capsys)


def test_valid_submission_roundtrip_and_metadata(ds, rows, tmp_path, capsys):
    maps = heatmaps(rows)
    path = write_submission(tmp_path / "s.parquet", list(maps), list(maps.values()), {"method": "random", "k": 3})
    assert read_metadata(path) == {"method": "random", "k": 3}
    assert pq.read_schema(path).metadata[b"vocmask"]
    rc, out, err = score(ds, path, capsys)
    assert rc == 0 and "random" in out and "melgan" in out and "hifigan" in out
    rc, out, _ = run(["validate", str(path), "--dataset", str(ds)], capsys)
    assert rc == 0 and "valid" in out


def test_missing_extra_duplicate_ids(ds, rows, tmp_path, capsys):
    maps = heatmaps(rows)
    ids = list(maps)
    write_submission(tmp_path / "m.parquet", ids[2:], [maps[i] for i in ids[2:]])
    rc, _, err = score(ds, tmp_path / "m.parquet", capsys)
    assert rc == 2 and "2 dataset id(s) have no heatmap (missing ids)" in err and ids[0] in err and ids[1] in err

    extra = np.zeros((FRAMES, 257), np.float32)
    write_submission(tmp_path / "e.parquet", ids + ["nope_1"], list(maps.values()) + [extra])
    rc, _, err = score(ds, tmp_path / "e.parquet", capsys)
    assert rc == 2 and "extra ids" in err and "nope_1" in err

    write_submission(tmp_path / "d.parquet", ids + [ids[3]], list(maps.values()) + [maps[ids[3]]])
    rc, _, err = score(ds, tmp_path / "d.parquet", capsys)
    assert rc == 2 and "duplicate ids" in err and f"{ids[3]} (2 times)" in err


def test_wrong_shape_names_ids_and_shapes(ds, rows, tmp_path, capsys):
    maps = heatmaps(rows)
    ids = list(maps)
    maps[ids[0]] = maps[ids[0]][:-1]
    maps[ids[1]] = maps[ids[1]].T.copy()
    write_submission(tmp_path / "s.parquet", ids, list(maps.values()))
    rc, _, err = score(ds, tmp_path / "s.parquet", capsys)
    assert rc == 2 and "2 heatmap(s) have the wrong shape" in err
    assert f"{ids[0]} (expected ({FRAMES}, 257), got ({FRAMES - 1}, 257))" in err
    assert f"{ids[1]} (expected ({FRAMES}, 257), got (257, {FRAMES}))" in err


def test_nan_inf_and_many_ids_are_counted(ds, rows, tmp_path, capsys):
    maps = heatmaps(rows)
    ids = list(maps)
    for k, i in enumerate(ids):
        maps[i][0, k] = np.nan if k % 2 else np.inf
    write_submission(tmp_path / "s.parquet", ids, list(maps.values()))
    rc, _, err = score(ds, tmp_path / "s.parquet", capsys)
    assert rc == 2 and "6 heatmap(s) contain NaN or inf" in err and "and 1 more" in err and ids[0] in err


def test_wrong_dtype_and_missing_column(ds, rows, tmp_path, capsys):
    maps = heatmaps(rows)
    ints = pa.array([(m * 10).astype(np.int64).tolist() for m in maps.values()])
    pq.write_table(pa.table({"id": list(maps), "heatmap": ints}), tmp_path / "i.parquet")
    rc, _, err = score(ds, tmp_path / "i.parquet", capsys)
    assert rc == 2 and "int64 values (wrong dtype)" in err and "i.parquet" in err

    pq.write_table(pa.table({"id": list(maps)}), tmp_path / "c.parquet")
    rc, _, err = score(ds, tmp_path / "c.parquet", capsys)
    assert rc == 2 and "missing column(s) heatmap" in err

    (tmp_path / "junk.parquet").write_bytes(b"\x80\x04not parquet")
    rc, _, err = score(ds, tmp_path / "junk.parquet", capsys)
    assert rc == 2 and "not a readable Parquet file" in err


def test_constant_heatmap_is_a_warning_and_scores_zero(ds, rows, tmp_path, capsys):
    maps = heatmaps(rows)
    ids = list(maps)
    maps[ids[2]] = np.zeros((FRAMES, 257), np.float32)
    write_submission(tmp_path / "s.parquet", ids, list(maps.values()))
    out = tmp_path / "r.json"
    rc, _, err = run(["score", str(tmp_path / "s.parquet"), "--dataset", str(ds), "-o", str(out), "--bootstrap", "100"], capsys)
    assert rc == 0 and "warning" in err and "1 heatmap(s) are constant" in err and ids[2] in err
    assert "constant" in out.read_text()


def test_folder_submission_and_array2d_column(ds, rows, tmp_path, capsys):
    from datasets import Array2D, Features, Value

    maps = heatmaps(rows)
    ids = list(maps)
    folder = tmp_path / "sub"
    write_submission(folder / "a.parquet", ids[:3], [maps[i] for i in ids[:3]], {"method": "split"})
    feats = Features({"id": Value("string"), "heatmap": Array2D(shape=(None, 257), dtype="float32")})
    from datasets import Dataset

    Dataset.from_dict({"id": ids[3:], "heatmap": [maps[i] for i in ids[3:]]}, features=feats).to_parquet(folder / "b.parquet")
    rc, out, err = score(ds, folder, capsys)
    assert rc == 0, err
    assert "split" in out


def test_streaming_writer_discards_on_error(tmp_path):
    with pytest.raises(RuntimeError):
        with SubmissionWriter(tmp_path / "x.parquet") as w:
            w.write("a", np.zeros((3, 257)))
            raise RuntimeError("explainer crashed")
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "x.parquet.tmp").exists()


def test_console_exit_code_without_traceback(ds, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "score", str(tmp_path / "absent.parquet"), "--dataset", str(ds)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2 and "absent.parquet: no such file" in proc.stderr and "Traceback" not in proc.stderr
