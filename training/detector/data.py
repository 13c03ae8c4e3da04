"""Dataset rows -> detector items (bona fide = a row's aligned ``real_audio``, spoof = its ``spoof_audio``;
in a partially spoofed dataset, one item per row: its ``spoof_audio``, label 1 when any frame is spoofed),
random-access audio reading, fixed-length crops, and the neural-collapse manifest format."""
from __future__ import annotations

import csv
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from annotate.core.audio import decode_bytes
from annotate.core.dataset import Dataset, open_dataset, shard_paths

AUDIO_COLUMN = {0: "real_audio", 1: "spoof_audio"}
REAL_VOCODER = "bonafide"


@dataclass(frozen=True)
class Item:
    """One training/evaluation input: ``label`` 0 = bona fide (the row's real_audio), 1 = spoof."""

    id: str  # dataset row id (the real of row X has id X too; (id, label) is the key)
    label: int
    vocoder: str  # the row's vocoder for spoofs, "bonafide" for reals
    utt_id: str
    shard: int
    group: int
    row: int
    audio: str = ""  # audio column to read; "" = AUDIO_COLUMN[label]
    dataset: str = ""  # dataset folder the row lives in; "" = the one the caller reads (single-dataset use)

    @property
    def key(self) -> tuple[str, int]:
        return (self.id, self.label)


def index_split(ds: str | Path, split: str, *, dedupe_real: bool = True) -> list[Item]:
    """Items of one split. With ``dedupe_real`` each real utterance (utt_id, augment copy) appears once
    (its first row's aligned real), so bona fide : spoof = 1 : V for V vocoders."""
    d = open_dataset(ds)
    paths = d.files(split)
    if not paths:
        raise FileNotFoundError(f"no {split!r} shards in {ds}: is {ds} a dataset built by `annotate build`?")
    if "frame_labels" in d.schema(split).names:
        return _index_partial(d, paths)
    items, seen = [], set()
    for si, path in enumerate(paths):
        f = d.parquet(path)
        for g in range(f.num_row_groups):
            t = f.read_row_group(g, columns=["id", "utt_id", "vocoder", "augment_copy"]).to_pydict()
            for r, (rid, utt, voc, copy) in enumerate(zip(t["id"], t["utt_id"], t["vocoder"], t["augment_copy"])):
                key = (utt, copy)
                if not dedupe_real or key not in seen:
                    seen.add(key)
                    items.append(Item(rid, 0, REAL_VOCODER, utt, si, g, r))
                items.append(Item(rid, 1, voc, utt, si, g, r))
    return items


def _index_partial(d: Dataset, paths: Sequence[str]) -> list[Item]:
    """Items of a partially spoofed dataset (``annotate partial``): each row's ``spoof_audio`` once, labelled
    spoof when any of its frames is (bona fide rows: the real alone, label 0)."""
    items = []
    for si, path in enumerate(paths):
        f = d.parquet(path)
        for g in range(f.num_row_groups):
            t = f.read_row_group(g, columns=["id", "utt_id", "vocoder", "frame_labels"]).to_pydict()
            for r, (rid, utt, voc, fl) in enumerate(zip(t["id"], t["utt_id"], t["vocoder"], t["frame_labels"])):
                label = int(any(v > 0 for v in fl or ()))
                items.append(Item(rid, label, voc if label else REAL_VOCODER, utt, si, g, r, audio="spoof_audio"))
    return items


class AudioStore:
    """Reads one audio cell on demand (one row group's column at a time, LRU-cached)."""

    def __init__(self, ds: str | Path, split: str, cache_groups: int = 64):
        self.dataset = open_dataset(ds)
        self.paths = self.dataset.files(split)
        self._cache: OrderedDict = OrderedDict()
        self.cache_groups = cache_groups

    def _group(self, shard: int, group: int, column: str) -> list:
        key = (shard, group, column)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        cells = self.dataset.parquet(self.paths[shard]).read_row_group(group, columns=[column]).column(column).to_pylist()
        self._cache[key] = cells
        if len(self._cache) > self.cache_groups:
            self._cache.popitem(last=False)
        return cells

    def wave(self, item: Item) -> np.ndarray:
        """The item's waveform, float32 mono."""
        column = item.audio or AUDIO_COLUMN[item.label]
        cell = self._group(item.shard, item.group, column)[item.row]
        if not cell or not cell.get("bytes"):
            raise ValueError(f"row {item.id}: empty {column} cell; rebuild the dataset")
        return decode_bytes(cell["bytes"])[0]


class MultiStore:
    """Reads items of several datasets: each item's ``dataset`` picks an :class:`AudioStore` opened on first
    use (``""`` = ``default``)."""

    def __init__(self, default: str | Path, split: str):
        self.default, self.split = str(default), split
        self._stores: dict[str, AudioStore] = {}

    def wave(self, item: Item) -> np.ndarray:
        """The item's waveform, float32 mono, from its own dataset."""
        ds = item.dataset or self.default
        if ds not in self._stores:
            if not shard_paths(ds, self.split):
                raise FileNotFoundError(f"item {item.id}: no {self.split!r} shards in {ds}")
            self._stores[ds] = AudioStore(ds, self.split)
        return self._stores[ds].wave(item)


def open_store(ds: str | Path, split: str, items: Sequence[Item] = ()) -> AudioStore | MultiStore:
    """The reader for ``items``: a plain :class:`AudioStore` of ``ds`` unless some item names another dataset."""
    if any(it.dataset and it.dataset != str(ds) for it in items):
        return MultiStore(ds, split)
    return AudioStore(ds, split)


def crop(x: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """``n`` samples from ``start``; signals shorter than ``n`` are tiled (repeated) as in the paper."""
    if x.size == 0:
        raise ValueError("cannot crop an empty signal")
    if x.size < n:
        x = np.tile(x, int(np.ceil(n / x.size)))
        return x[:n].astype(np.float32, copy=False)
    return x[start : start + n].astype(np.float32, copy=False)


def random_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A crop at a uniformly drawn start (training)."""
    start = int(rng.integers(0, x.size - n + 1)) if x.size > n else 0
    return crop(x, n, start)


def windows(x: np.ndarray, n: int, max_windows: int = 8) -> np.ndarray:
    """Evaluation crops ``(W, n)``: evenly spaced windows covering the signal (one tiled crop if shorter)."""
    if x.size <= n:
        return crop(x, n)[None]
    w = min(max_windows, int(np.ceil(x.size / n)))
    starts = np.linspace(0, x.size - n, w).round().astype(int)
    return np.stack([x[s : s + n] for s in starts]).astype(np.float32, copy=False)


def write_manifest(path: str | Path, rows: Iterable[dict]) -> Path:
    """A CSV manifest: ``id,label`` first (label 0 = bona fide, 1 = spoof), then any extra columns."""
    rows = list(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["id", "label"] + [k for k in rows[0] if k not in ("id", "label")] if rows else ["id", "label"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def read_manifest(path: str | Path) -> list[tuple[str, int]]:
    """The (id, label) keys of a manifest CSV."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"id", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: a manifest needs the columns id,label (got {reader.fieldnames})")
        out = []
        for i, r in enumerate(reader):
            if r["label"] not in ("0", "1"):
                raise ValueError(f"{path} line {i + 2}: label must be 0 (bona fide) or 1 (spoof), got {r['label']!r}")
            out.append((r["id"], int(r["label"])))
    return out


def select_items(items: Sequence[Item], keys: Sequence[tuple[str, int]], source: str = "manifest") -> list[Item]:
    """The items named by ``keys`` (in ``keys`` order); unknown keys are an error."""
    by_key = {it.key: it for it in items}
    missing = [k for k in keys if k not in by_key]
    if missing:
        raise ValueError(f"{source}: {len(missing)} (id, label) pairs not in the split, e.g. {missing[:3]}")
    return [by_key[k] for k in keys]
