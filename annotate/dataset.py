"""The dataset format: Hugging Face ``datasets`` features, shard writing, and fast numpy reading.

Layout of a built dataset folder ``DS``::

    DS/data/{split}-{i:05d}-of-{n:05d}.parquet   one row per spoof utterance (features embedded)
    DS/build.json                                 the build config (STFT, mask, alignment, RawBoost, version)
    DS/summary.json                               pairs in, rows out, rejects by reason, hours, seconds
    DS/rejects.jsonl                              one line per rejected pair or file: id, path, reason

Every Array2D column is time-first, ``(frames, n_freq)``: only the first dimension may vary.
Readers here use pyarrow only (no ``datasets``, no torch), so every package can load rows cheaply.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .spectral import DEFAULT_STFT

SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.parquet$")
ARRAY_COLUMNS = {"spoof_logmag": "float32", "mask": "uint8", "diff": "float16"}
META_KEY = b"vocmask"


def features(n_freq: int = DEFAULT_STFT.n_freq, sample_rate: int = DEFAULT_STFT.sample_rate):
    """The ``datasets.Features`` of a row (see the module docstring for the layout)."""
    from datasets import Array2D, Audio, Features, Value

    return Features(
        {
            "id": Value("string"),
            "utt_id": Value("string"),
            "speaker": Value("string"),
            "vocoder": Value("string"),
            "source": Value("string"),
            "split": Value("string"),
            "spoof_audio": Audio(sampling_rate=sample_rate, decode=False),
            "real_audio": Audio(sampling_rate=sample_rate, decode=False),
            "spoof_logmag": Array2D(shape=(None, n_freq), dtype="float32"),
            "mask": Array2D(shape=(None, n_freq), dtype="uint8"),
            "diff": Array2D(shape=(None, n_freq), dtype="float16"),
            "num_samples": Value("int64"),
            "offset": Value("int64"),
            "align_score": Value("float32"),
            "rawboost": Value("int8"),
            "rawboost_seed": Value("int64"),
            "augment_copy": Value("int16"),
        }
    )


PARTIAL_COLUMNS = ("frame_labels", "spans")


def partial_features(n_freq: int = DEFAULT_STFT.n_freq, sample_rate: int = DEFAULT_STFT.sample_rate):
    """Row features of a partially spoofed dataset (``annotate partial``): :func:`features` plus

    - ``frame_labels``: float32 per STFT frame of the row's grid, the spoofed fraction of the frame's cell
      ``[f*hop - hop/2, f*hop + hop/2)`` (the cells partition the samples; the last cell runs to the end);
    - ``spans``: the spoofed ``[start, end)`` sample ranges, crossfades included (empty for bona fide rows).

    Datasets built by ``annotate build`` keep :func:`features`; readers tell the two apart by these columns.
    A corpus that ships its own segment labels and no real twins (``--source partialspoof``) is built with these
    features too, its ``real_audio``, ``mask`` and ``diff`` null (:mod:`annotate.labelled`)."""
    from datasets import Sequence, Value

    feats = features(n_freq, sample_rate)
    feats["frame_labels"] = Sequence(Value("float32"))
    feats["spans"] = Sequence(Sequence(Value("int64")))
    return feats


def frame_cells(n_samples: int, hop: int, n_frames: int) -> np.ndarray:
    """Sample edges ``(n_frames + 1,)`` of each frame's cell: frame f owns ``[edges[f], edges[f+1])``."""
    edges = np.arange(n_frames + 1, dtype=np.int64) * hop - hop // 2
    edges[0], edges[-1] = 0, n_samples
    return np.clip(edges, 0, n_samples)


def frame_labels_from_samples(labels: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """Per-frame spoofed fraction (float32) of a 0/1 per-sample label vector (see :func:`partial_features`)."""
    edges = frame_cells(len(labels), hop, n_frames)
    csum = np.concatenate([[0], np.cumsum(np.asarray(labels, dtype=np.int64))])
    width = np.diff(edges)
    return ((csum[edges[1:]] - csum[edges[:-1]]) / np.maximum(width, 1)).astype(np.float32)


def _array2d_storage(arrays: Sequence[np.ndarray], dtype: str, n_freq: int) -> pa.ChunkedArray:
    """list<list<dtype>> arrow storage for time-first 2-D arrays, one chunk per array wrapping its buffer
    (no concatenated copy: the Parquet writer takes the chunks in turn, ~0.1 ms/row faster per column)."""
    chunks = []
    list_type = pa.list_(pa.list_(pa.from_numpy_dtype(np.dtype(dtype))))
    for a in arrays:
        if a is None:  # a null cell (rows without a T-F mask: corpora with no real twin)
            chunks.append(pa.array([None], type=list_type))
            continue
        a = np.ascontiguousarray(a, dtype=dtype)
        if a.ndim != 2 or a.shape[1] != n_freq:
            raise ValueError(f"expected a (frames, {n_freq}) array, got {a.shape}")
        inner = pa.ListArray.from_arrays(pa.array(np.arange(a.shape[0] + 1, dtype=np.int32) * n_freq),
                                         pa.array(a.reshape(-1)))
        chunks.append(pa.ListArray.from_arrays(pa.array(np.array([0, a.shape[0]], dtype=np.int32)), inner))
    return pa.chunked_array(chunks, type=list_type)


def arrow_schema(feats) -> pa.Schema:
    """The arrow schema (with the ``huggingface`` features metadata) of ``feats``, or ``feats`` if already one."""
    return feats if isinstance(feats, pa.Schema) else feats.arrow_schema


def _n_freq(schema: pa.Schema) -> int:
    info = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    return int(info["mask"]["shape"][1])


def rows_to_table(rows: list[dict], feats) -> pa.Table:
    """Turn row dicts (numpy arrays for the Array2D columns) into a table with ``feats``' schema.

    ``feats`` is a ``datasets.Features`` or its arrow schema (workers get the schema, so they never
    import ``datasets``)."""
    schema = arrow_schema(feats)
    n_freq = _n_freq(schema)
    columns = []
    for field in schema:
        name = field.name
        if name in ARRAY_COLUMNS:
            storage = _array2d_storage([r[name] for r in rows], ARRAY_COLUMNS[name], n_freq)
            if isinstance(field.type, pa.ExtensionType):
                storage = storage.cast(field.type.storage_type)
                columns.append(pa.chunked_array([pa.ExtensionArray.from_storage(field.type, c) for c in storage.chunks],
                                                type=field.type))
            else:
                columns.append(storage.cast(field.type))
        else:
            columns.append(pa.array([r[name] for r in rows], type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _leaf(name: str) -> str:
    """Parquet column path of an Array2D column's values."""
    return f"{name}.list.element.list.element"


def parquet_options(schema: pa.Schema) -> dict:
    """Per-column Parquet encoding, chosen by measurement (write cost and size per 3 s row):

    - ``spoof_logmag``: byte-stream split + LZ4 — smaller than zstd on plain floats, at a third of its cost;
    - ``diff`` (float16): uncompressed — LZ4 saved <1% of its bytes for 0.12 ms/row, zstd 15% for 0.26 ms;
    - ``mask``: zstd — 0/1 values stored as INT32 shrink ~60x;
    - audio bytes: uncompressed (FLAC already is); small string/scalar columns: zstd, dictionaries for strings.
    """
    names = set(schema.names)
    strings = [f.name for f in schema if f.type == pa.string()]
    compression = {}
    for f in schema:
        if pa.types.is_struct(f.type):  # the Audio columns: {bytes, path}
            for sub in f.type:
                compression[f"{f.name}.{sub.name}"] = "none" if sub.name == "bytes" else "zstd"
        elif f.name not in ARRAY_COLUMNS:
            compression[f.name] = "zstd"
    codecs = {"spoof_logmag": "lz4", "diff": "none", "mask": "zstd"}
    compression.update({_leaf(n): c for n, c in codecs.items() if n in names})
    split = [_leaf("spoof_logmag")] if "spoof_logmag" in names else False
    return dict(compression=compression, use_dictionary=strings, write_statistics=strings,
                use_byte_stream_split=split)


class ShardWriter:
    """Writes one shard atomically: rows go to ``{path}.tmp`` in row groups, ``close()`` renames it
    (``atomic=False`` writes ``path`` directly, for callers that handle atomicity, e.g. a Store).

    Memory stays bounded by ``rows_per_group`` rows whatever the shard size.
    """

    def __init__(self, path: str | Path, feats, metadata: dict | None = None, rows_per_group: int = 16,
                 atomic: bool = True):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp") if atomic else self.path
        schema = arrow_schema(feats)
        self.feats = schema
        if metadata is not None:
            schema = schema.with_metadata({**(schema.metadata or {}), META_KEY: json.dumps(metadata, sort_keys=True).encode()})
        self.schema = schema
        self.rows_per_group = rows_per_group
        self._buffer: list[dict] = []
        self.rows = 0
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")
        self._writer = pq.ParquetWriter(self._file, schema, **parquet_options(schema))

    def write(self, row: dict) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            table = rows_to_table(self._buffer, self.feats).replace_schema_metadata(self.schema.metadata)
            self._writer.write_table(table)
            self.rows += len(self._buffer)
            self._buffer = []

    def close(self) -> Path:
        self._flush()
        self._writer.close()
        self._file.close()
        if self.tmp != self.path:
            os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._writer.close()
        self._file.close()
        self.tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- reading


def shard_paths(ds: str | Path, split: str | None = None) -> list[Path]:
    """Completed shards of ``ds`` (optionally one split), in name order."""
    data = Path(ds) / "data"
    out = sorted(p for p in data.glob("*.parquet") if SHARD_RE.match(p.name))
    if split is not None:
        out = [p for p in out if SHARD_RE.match(p.name)["split"] == split]
    return out


def splits(ds: str | Path) -> list[str]:
    """Split names present in ``ds``."""
    return sorted({SHARD_RE.match(p.name)["split"] for p in shard_paths(ds)})


def read_table(ds: str | Path, split: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
    """All rows of ``ds`` (or one split) as one pyarrow table with only ``columns``."""
    paths = shard_paths(ds, split)
    if not paths:
        raise FileNotFoundError(f"no shards for split {split!r} in {Path(ds) / 'data'} (run `annotate build` first)")
    tables = [pq.read_table(p, columns=list(columns) if columns else None) for p in paths]
    return pa.concat_tables(tables)


def array2d(cell, dtype=None) -> np.ndarray | None:
    """One Array2D cell (a pyarrow list<list> scalar or nested Python lists) as a 2-D numpy array; ``None`` for
    a null cell (the ``mask``/``diff`` of rows without a real twin)."""
    if cell is None or (isinstance(cell, pa.Scalar) and not cell.is_valid):
        return None
    if isinstance(cell, pa.Scalar):
        storage = cell.value if isinstance(cell, pa.ExtensionScalar) else cell
        inner = storage.values
        n = len(inner)
        flat = inner.flatten().to_numpy(zero_copy_only=False) if n else np.zeros(0)
        width = len(flat) // n if n else 0
        arr = flat.reshape(n, width)
    else:
        arr = np.asarray(cell)
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def iter_rows(ds: str | Path, split: str | None = None, columns: Sequence[str] | None = None) -> Iterator[dict]:
    """Rows as dicts, Array2D columns as numpy arrays; reads one row group at a time."""
    for path in shard_paths(ds, split):
        yield from iter_shard_rows(path, columns)


def iter_shard_rows(path: str | Path, columns: Sequence[str] | None = None) -> Iterator[dict]:
    """The rows of one shard file, as :func:`iter_rows` yields them."""
    f = pq.ParquetFile(path)
    for g in range(f.num_row_groups):
        table = f.read_row_group(g, columns=list(columns) if columns else None)
        names = table.column_names
        cols = {n: table.column(n) for n in names}
        for i in range(table.num_rows):
            row = {}
            for n in names:
                cell = cols[n][i]
                row[n] = array2d(cell) if n in ARRAY_COLUMNS else cell.as_py()
            yield row


def build_config(ds: str | Path) -> dict:
    """The build config stored with the dataset (``build.json``)."""
    p = Path(ds) / "build.json"
    if not p.exists():
        raise FileNotFoundError(f"{p} missing: {ds} is not a vocmask dataset (run `annotate build`)")
    return json.loads(p.read_text())
