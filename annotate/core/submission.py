"""The submission FORMAT and its writer/reader (pyarrow only, never pickle), shared by every explainer.

A submission is a Parquet file, or a folder of them, with columns ``id`` (string) and ``heatmap``
(floats, ``(frames, 257)`` time-first on the row's mask grid) stored as ``list<list<float>>`` or
a ``datasets`` ``Array2D`` column. Method metadata (name, parameters, ...) is JSON in the Parquet
schema metadata under the key ``b"vocmask"``. It lives in ``annotate`` so that explainers
(training, baselines) write submissions without importing ``benchmark``; the checks that run
before scoring stay in :mod:`benchmark.submission`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"vocmask"
SHARD_KEYS = ("shard", "rows", "total_rows")  # metadata of one part of a sharded explain (`benchmark merge` joins them)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N) with 0 <= I < N; None stays None (the whole split)."""
    if text is None:
        return None
    i, sep, n = str(text).partition("/")
    if not (sep and i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
        raise ValueError(f"--shard {text!r}: write I/N with 0 <= I < N (e.g. 0/4 for the first of four parts)")
    return int(i), int(n)


def shard_rows(n_rows: int, shard: tuple[int, int] | None) -> tuple[int, int]:
    """Row range [lo, hi) of part I of N of a split's ``n_rows`` rows (contiguous, sizes differing by at most one)."""
    if shard is None:
        return 0, n_rows
    i, n = shard
    return i * n_rows // n, (i + 1) * n_rows // n


def shard_metadata(shard: tuple[int, int] | None, n_rows: int) -> dict:
    """The submission metadata recording which part of the split a sharded explain wrote (nothing when unsharded)."""
    if shard is None:
        return {}
    return {"shard": list(shard), "rows": list(shard_rows(n_rows, shard)), "total_rows": n_rows}

# ----------------------------------------------------------------------------------------------- writing


def heatmap_type(dtype: str = "float32", ndim: int = 2) -> pa.DataType:
    """Arrow type of the ``heatmap`` column: ``list<list<dtype>>`` (``ndim=1``: ``list<dtype>``, temporal maps)."""
    t = pa.list_(pa.from_numpy_dtype(np.dtype(dtype)))
    return t if ndim == 1 else pa.list_(t)


def submission_schema(metadata: dict | None = None, dtype: str = "float32", ndim: int = 2) -> pa.Schema:
    """Schema ``(id string, heatmap list<list<dtype>>)`` with ``metadata`` as JSON under ``b"vocmask"``
    (``ndim=1``: ``heatmap list<dtype>``, one value per frame, for the temporal track)."""
    meta = {META_KEY: json.dumps(metadata or {}, sort_keys=True, default=str).encode()}
    return pa.schema([("id", pa.string()), ("heatmap", heatmap_type(dtype, ndim))], metadata=meta)


def heatmaps_1d_to_arrow(heatmaps: Sequence[np.ndarray], dtype: str = "float32") -> pa.Array:
    """``list<dtype>`` array of 1-D (per-frame) heatmaps."""
    arrays = [np.asarray(h, dtype=dtype) for h in heatmaps]
    for a in arrays:
        if a.ndim != 1:
            raise ValueError(f"a temporal heatmap must be 1-D (frames,), got shape {a.shape}")
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat))


def heatmaps_to_arrow(heatmaps: Sequence[np.ndarray], dtype: str = "float32") -> pa.Array:
    """``list<list<dtype>>`` array of time-first 2-D heatmaps, built from one flat buffer."""
    arrays = [np.asarray(h, dtype=dtype) for h in heatmaps]
    for a in arrays:
        if a.ndim != 2:
            raise ValueError(f"a heatmap must be 2-D (frames, n_freq), got shape {a.shape}")
    flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, dtype=dtype)
    widths = np.repeat([a.shape[1] for a in arrays], [a.shape[0] for a in arrays]).astype(np.int64)
    inner_off = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
    inner = pa.ListArray.from_arrays(pa.array(inner_off, pa.int32()), pa.array(flat))
    frames = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    outer_off = np.concatenate([[0], np.cumsum(frames)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(outer_off, pa.int32()), inner)


class SubmissionWriter:
    """Streams ``(id, heatmap)`` rows into one Parquet file; written to ``path.tmp`` and renamed on ``close()``."""

    def __init__(self, path: str | Path, metadata: dict | None = None, rows_per_group: int = 64, dtype: str = "float32",
                 ndim: int = 2):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.dtype = dtype
        self.ndim = ndim
        self.schema = submission_schema(metadata, dtype, ndim)
        self.rows_per_group = rows_per_group
        self._ids: list[str] = []
        self._maps: list[np.ndarray] = []
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")

    def write(self, id: str, heatmap: np.ndarray) -> None:
        self._ids.append(str(id))
        self._maps.append(np.asarray(heatmap))
        if len(self._ids) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._ids:
            table = pa.Table.from_arrays(
                [pa.array(self._ids, pa.string()),
                 (heatmaps_1d_to_arrow if self.ndim == 1 else heatmaps_to_arrow)(self._maps, self.dtype)], schema=self.schema
            )
            self._writer.write_table(table)
            self.rows += len(self._ids)
            self._ids, self._maps = [], []

    def close(self) -> Path:
        self._flush()
        self._writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def __enter__(self) -> "SubmissionWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._writer.close()
            self.tmp.unlink(missing_ok=True)


def write_submission(path: str | Path, ids: Iterable[str], heatmaps: Iterable[np.ndarray], metadata: dict | None = None) -> Path:
    """Write a submission file: one row per ``(id, heatmap)``, ``metadata`` as JSON under ``b"vocmask"``."""
    with SubmissionWriter(path, metadata) as w:
        for i, h in zip(ids, heatmaps, strict=True):
            w.write(i, h)
    return Path(path)


# ----------------------------------------------------------------------------------------------- reading


def _offsets(arr: pa.Array) -> np.ndarray:
    """Absolute offsets (n + 1) of a list-like array into its ``.values``."""
    if pa.types.is_fixed_size_list(arr.type):
        size = arr.type.list_size
        return (arr.offset + np.arange(len(arr) + 1, dtype=np.int64)) * size
    return np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)


def _plain(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """One plain Arrow array (chunks combined, extension storage unwrapped) and its null flags."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr.type, pa.ExtensionType):
        arr = arr.storage
    return arr, arr.is_null().to_numpy(zero_copy_only=False)


def decode_2d(arr: pa.Array) -> list[tuple[np.ndarray | None, str | None]]:
    """Rows of a 2-D nested list (or Array2D) array as ``(array, None)``, or ``(None, problem)`` for null/ragged rows.

    Rectangular rows are zero-copy views into the Arrow buffer."""
    arr, nulls = _plain(arr)
    outer = _offsets(arr)
    inner_arr = arr.values
    inner = _offsets(inner_arr)
    flat = inner_arr.values.to_numpy(zero_copy_only=False)
    widths = np.diff(inner)
    out: list[tuple[np.ndarray | None, str | None]] = []
    for i in range(len(arr)):
        if nulls[i]:
            out.append((None, "null"))
            continue
        a, b = outer[i], outer[i + 1]
        if a == b:
            out.append((flat[:0].reshape(0, 0), None))
            continue
        w = widths[a:b]
        if w.min() != w.max():
            out.append((None, f"ragged: rows of {w.min()} to {w.max()} values"))
            continue
        out.append((flat[inner[a] : inner[b]].reshape(b - a, int(w[0])), None))
    return out


def decode_1d(arr: pa.Array) -> list[tuple[np.ndarray | None, str | None]]:
    """Rows of a ``list<number>`` array (1-D temporal maps) as ``(array, None)``, or ``(None, "null")``."""
    arr, nulls = _plain(arr)
    offsets = _offsets(arr)
    flat = arr.values.to_numpy(zero_copy_only=False)
    return [(None, "null") if nulls[k] else (flat[offsets[k] : offsets[k + 1]], None) for k in range(len(arr))]


def _is_1d(t: pa.DataType) -> bool:
    t = t.storage_type if isinstance(t, pa.ExtensionType) else t
    nested = pa.types.is_list(t.value_type) or pa.types.is_large_list(t.value_type) or pa.types.is_fixed_size_list(t.value_type)
    return not nested


def iter_file_heatmaps(pf: pq.ParquetFile, batch_rows: int = 256) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """``(id, heatmap, problem)`` for every row of one open Parquet file, one record batch at a time
    (2-D heatmaps, or 1-D temporal maps when the column is ``list<float>``)."""
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["id", "heatmap"]):
        ids = batch.column(0).to_pylist()
        col = batch.column(1)
        for i, (h, problem) in zip(ids, (decode_1d if _is_1d(col.type) else decode_2d)(col)):
            yield i, h, problem


def iter_heatmaps(files: Sequence[str | Path], batch_rows: int = 256) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """``(id, heatmap, problem)`` for every row of the files, in order (bounded memory, no validation)."""
    for f in files:
        yield from iter_file_heatmaps(pq.ParquetFile(f), batch_rows)


def file_metadata(path: str | Path) -> dict | None:
    """The JSON method metadata of one submission file, or ``None`` when it has none (raises on invalid JSON)."""
    meta = pq.ParquetFile(path).schema_arrow.metadata or {}
    if META_KEY not in meta:
        return None
    value = json.loads(meta[META_KEY])
    return value if isinstance(value, dict) else {"metadata": value}
