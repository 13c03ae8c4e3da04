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
    features too, its ``real_audio``, ``mask`` and ``diff`` null (:mod:`annotate.pipeline.labelled`)."""
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
    (no concatenated copy: the Parquet writer takes the chunks in turn)."""
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
    """Per-column Parquet encoding, each the best trade of write cost and size (figures: docs/performance.md):

    - ``spoof_logmag``: byte-stream split + LZ4; ``diff`` (float16): uncompressed (codecs barely shrink it);
    - ``mask``: zstd (0/1 values); audio bytes: uncompressed (FLAC already is);
    - small string/scalar columns: zstd, dictionaries for strings.
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
#
# The one reader of a dataset's Parquet shards: every package opens datasets through :class:`Dataset` (or the
# module functions below, thin wrappers of it). A dataset is a local folder, any fsspec URL (``s3://``,
# ``gs://``, ``memory://``, ``file://``) or a Hub dataset ``hf://datasets/ORG/NAME`` (huggingface_hub's file
# system), in one of two layouts:
#   built: ``data/{split}-{i:05d}-of-{n:05d}.parquet`` + ``build.json`` + ``summary.json`` (``annotate build``);
#   Hub:   ``README.md`` whose YAML ``configs`` map splits to ``data_files`` globs (``annotate publish``), the
#          build config then read from the shards' own metadata.
# Row groups are read lazily: listing, row counts and schemas come from the Parquet footers.


class Dataset:
    """A built or published dataset at ``location``. ``config``: one config of the card; None = the default config's
    splits, plus each split only another config has (a published test split without masks is config ``benchmark``)."""

    def __init__(self, location: str | Path, config: str | None = None):
        self.location = str(location)
        if "://" in self.location:
            import fsspec

            self.fs, root = fsspec.core.url_to_fs(self.location)  # hf:// is registered by huggingface_hub
            self.root = root.rstrip("/")
            self.local = False
        else:
            self.fs, self.root, self.local = None, str(Path(self.location).expanduser()), True
        self.config = config
        self._files: dict[str, list[str]] | None = None
        self._open: dict[str, pq.ParquetFile] = {}

    # -- files
    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def exists(self, rel: str) -> bool:
        return os.path.exists(self._path(rel)) if self.local else self.fs.exists(self._path(rel))

    def read_text(self, rel: str) -> str:
        if self.local:
            return Path(self._path(rel)).read_text()
        with self.fs.open(self._path(rel), "r") as f:
            return f.read()

    def _glob(self, pattern: str) -> list[str]:
        if self.local:
            import glob

            return sorted(glob.glob(self._path(pattern)))
        return sorted(self.fs.glob(self._path(pattern)))

    def card_configs(self) -> list[dict]:
        """The ``configs`` of the dataset card (``README.md`` YAML header); empty without a card."""
        if not self.exists("README.md"):
            return []
        from huggingface_hub import DatasetCard

        return list(DatasetCard(self.read_text("README.md")).data.to_dict().get("configs") or [])

    def _list(self) -> dict[str, list[str]]:
        """Shard files by split: the chosen card config's ``data_files``, else the built layout's ``data/``."""
        if self._files is not None:
            return self._files
        configs = self.card_configs() if (self.config or not self.exists("build.json")) else []
        if self.config and not configs:
            raise FileNotFoundError(f"{self.location}: no dataset card with configs (README.md), so no config {self.config!r}")
        files: dict[str, list[str]] = {}
        if configs:
            names = [c.get("config_name", "default") for c in configs]
            if self.config is not None and self.config not in names:
                raise ValueError(f"{self.location}: no config {self.config!r}; it has {', '.join(names)}")
            if self.config is not None:
                chosen = [configs[names.index(self.config)]]
            else:  # the default config, then each other config for the splits it alone has (e.g. a withheld test)
                chosen = sorted(configs, key=lambda c: not c.get("default"))
            for c in chosen:
                data_files = c.get("data_files") or []
                if isinstance(data_files, (str, dict)):
                    data_files = [data_files]
                own: dict[str, list[str]] = {}
                for entry in data_files:
                    split, pats = ("train", entry) if isinstance(entry, str) else (entry.get("split", "train"), entry["path"])
                    for pat in [pats] if isinstance(pats, str) else pats:
                        own.setdefault(split, []).extend(self._glob(pat))
                for split, paths in own.items():
                    files.setdefault(split, paths)
        else:
            for p in self._glob("data/*.parquet"):
                m = SHARD_RE.match(p.rsplit("/", 1)[-1])
                if m:
                    files.setdefault(m["split"], []).append(p)
        self._files = {k: sorted(set(v)) for k, v in files.items()}
        return self._files

    def splits(self) -> list[str]:
        """Split names present (sorted)."""
        return sorted(self._list())

    def files(self, split: str | None = None) -> list[str]:
        """Shard files (paths on the dataset's file system) of one split, or of all in split-name order."""
        listing = self._list()
        if split is not None:
            return list(listing.get(split, []))
        return [p for s in sorted(listing) for p in listing[s]]

    def require(self, split: str) -> list[str]:
        """The split's shard files; a one-line FileNotFoundError when it has none."""
        files = self.files(split)
        if not files:
            have = ", ".join(self.splits()) or "none"
            raise FileNotFoundError(f"no shards for split {split!r} in {self.location} (its splits: {have}): check "
                                    "--dataset/--split, or build the dataset with `annotate build`")
        return files

    def parquet(self, path: str) -> pq.ParquetFile:
        """One shard, opened once (its footer read; row groups only when asked for)."""
        if path not in self._open:
            self._open[path] = pq.ParquetFile(path if self.local else self.fs.open(path, "rb"))
        return self._open[path]

    # -- metadata
    def num_rows(self, split: str | None = None) -> int:
        """Rows of one split (or all) from the footers."""
        return sum(self.parquet(p).metadata.num_rows for p in self.files(split))

    def schema(self, split: str | None = None) -> pa.Schema:
        """The arrow schema of the split's first shard."""
        return self.parquet(self.require(split)[0] if split else self.files()[0]).schema_arrow

    def build_config(self) -> dict:
        """``build.json``; for a Hub layout, the build config stored in the shards' metadata."""
        if self.exists("build.json"):
            return json.loads(self.read_text("build.json"))
        files = self.files()
        meta = (self.parquet(files[0]).schema_arrow.metadata or {}) if files else {}
        if META_KEY in meta and "build" in json.loads(meta[META_KEY]):
            return json.loads(meta[META_KEY])["build"]
        raise FileNotFoundError(f"{self.location}: no build.json and no build config in its shards: not a vocmask dataset "
                                "(run `annotate build`)")

    def summary(self) -> dict | None:
        """``summary.json`` (pairs in, rows out, rejects, empty splits), or None (a Hub layout has none)."""
        return json.loads(self.read_text("summary.json")) if self.exists("summary.json") else None

    # -- rows
    def iter_batches(self, split: str | None = None, columns: Sequence[str] | None = None, start: int = 0,
                     stop: int | None = None) -> Iterator[pa.Table]:
        """Rows ``start .. stop-1`` (shard order) as one table per row group; row groups outside are never read."""
        pos = 0
        for path in self.files(split):
            f = self.parquet(path)
            for g in range(f.num_row_groups):
                if stop is not None and pos >= stop:
                    return
                n = f.metadata.row_group(g).num_rows
                lo, hi = max(start - pos, 0), n if stop is None else min(stop - pos, n)
                if lo < hi:
                    t = f.read_row_group(g, columns=list(columns) if columns else None)
                    yield t if (lo, hi) == (0, n) else t.slice(lo, hi - lo)
                pos += n

    def iter_rows(self, split: str | None = None, columns: Sequence[str] | None = None, start: int = 0,
                  stop: int | None = None) -> Iterator[dict]:
        """Rows as dicts, Array2D columns as numpy arrays (see :meth:`iter_batches`)."""
        for table in self.iter_batches(split, columns, start, stop):
            yield from table_rows(table)

    def read_table(self, split: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows of one split (or all) as one table with only ``columns``."""
        files = self.require(split) if split is not None else self.files()
        if not files:
            raise FileNotFoundError(f"no shards in {self.location} (run `annotate build` first)")
        cols = list(columns) if columns else None
        return pa.concat_tables([self.parquet(p).read(columns=cols) for p in files])

    def read_rows(self, ids: Sequence[str], split: str | None = None, columns: Sequence[str] | None = None) -> dict[str, dict]:
        """The rows with these ids (dicts as :meth:`iter_rows`), reading the ``id`` column and then only the row
        groups that hold a wanted id; a one-line KeyError names an id the dataset lacks."""
        wanted, out = set(ids), {}
        for path in self.files(split):
            f = self.parquet(path)
            for g in range(f.num_row_groups):
                got = f.read_row_group(g, columns=["id"]).column("id").to_pylist()
                hits = [i for i, rid in enumerate(got) if rid in wanted]
                if hits:
                    rows = list(table_rows(f.read_row_group(g, columns=list(columns) if columns else None).take(hits)))
                    for i, row in zip(hits, rows):
                        out[got[i]] = row
        missing = [i for i in ids if i not in out]
        if missing:
            raise KeyError(f"id {missing[0]!r} not in {self.location}{f' split {split!r}' if split else ''} "
                           f"({len(missing)} missing; list ids with `annotate ids`)")
        return out


def dataset_name(ds: "str | Path | Dataset") -> str:
    """How results name a dataset: the resolved folder, or the URL as given."""
    loc = ds.location if isinstance(ds, Dataset) else str(ds)
    return loc if "://" in loc else str(Path(loc).expanduser().resolve())


def open_dataset(ds: "str | Path | Dataset", config: str | None = None) -> Dataset:
    """``ds`` as a :class:`Dataset` (an open one is returned as is)."""
    return ds if isinstance(ds, Dataset) else Dataset(ds, config)


def table_rows(table: pa.Table) -> Iterator[dict]:
    """The rows of a table as dicts, Array2D columns as numpy arrays."""
    names = table.column_names
    cols = {n: table.column(n) for n in names}
    for i in range(table.num_rows):
        yield {n: array2d(cols[n][i]) if n in ARRAY_COLUMNS else cols[n][i].as_py() for n in names}


def shard_paths(ds: "str | Path | Dataset", split: str | None = None) -> list[Path] | list[str]:
    """Shard files of ``ds`` (optionally one split): Paths for a local folder, file-system paths otherwise."""
    d = open_dataset(ds)
    files = d.files(split)
    return [Path(p) for p in files] if d.local else files


def row_count(ds: "str | Path | Dataset", split: str) -> int:
    """Rows of a split from the Parquet footers (no data read)."""
    d = open_dataset(ds)
    d.require(split)
    return d.num_rows(split)


def splits(ds: "str | Path | Dataset") -> list[str]:
    """Split names present in ``ds``."""
    return open_dataset(ds).splits()


def read_table(ds: "str | Path | Dataset", split: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
    """All rows of ``ds`` (or one split) as one pyarrow table with only ``columns``."""
    return open_dataset(ds).read_table(split, columns)


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


def iter_rows(ds: "str | Path | Dataset", split: str | None = None, columns: Sequence[str] | None = None, start: int = 0,
              stop: int | None = None) -> Iterator[dict]:
    """Rows ``start .. stop-1`` (in shard order) as dicts, Array2D columns as numpy arrays; reads one row group at a
    time and skips the row groups outside from the footers alone."""
    return open_dataset(ds).iter_rows(split, columns, start, stop)


def open_shard(path: str | Path) -> pq.ParquetFile:
    """One shard file of a dataset, by local path or fsspec URL (footer read; row groups when asked for)."""
    loc = str(path)
    if "://" in loc:
        import fsspec

        fs, p = fsspec.core.url_to_fs(loc)
        return pq.ParquetFile(fs.open(p, "rb"))
    return pq.ParquetFile(loc)


def iter_shard_rows(path: str | Path, columns: Sequence[str] | None = None) -> Iterator[dict]:
    """The rows of one shard file, as :func:`iter_rows` yields them."""
    f = open_shard(path)
    for g in range(f.num_row_groups):
        yield from table_rows(f.read_row_group(g, columns=list(columns) if columns else None))


def build_config(ds: "str | Path | Dataset") -> dict:
    """The build config stored with the dataset (``build.json``, or the shards' metadata for a Hub layout)."""
    return open_dataset(ds).build_config()
