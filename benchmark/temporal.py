"""The temporal track: 1-D (per-frame) heatmaps scored against a dataset's ``frame_labels``.

A submission's ``heatmap`` is either 1-D ``(frames,)`` (``list<float>``) or a T-F map ``(frames, F)``,
reduced to time by the mean over frequency. Truth: frame f is spoofed when ``frame_labels[f] > 0`` (any
spoofed sample in its cell). Per utterance (percent; undefined, i.e. skipped and counted, on bona fide
rows and wherever a class is missing):

- ``AUC``, ``EER``: frame-level ROC-AUC and equal error rate of the raw map (scikit-learn ``roc_curve``);
- ``IoU@t``, ``F1@t`` for t in 0.3/0.5/0.7: the map min-max normalised per utterance, frames > t;
- each of the above again as ``... inner``, with the frames of the first/last 100 ms left out.

Pooled over every frame/segment of the split (bona fide rows included; raw map values, so they also
measure whether a map is comparable across utterances), with the CI from a bootstrap over utterances:

- ``pooled AUC``, ``pooled EER``: frame level;
- ``segEER 20ms`` ... ``segEER 640ms``: PartialSpoof's segment-level EER at its six resolutions; segment j
  holds the frames centred in ``[j*r, (j+1)*r)``, it is spoofed if any of its frames is, its score is the
  mean frame score in it (a maximum would favour longer segments: an utterance's shorter last segment
  would rank low whatever the map).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from annotate.core.dataset import build_config, dataset_name, open_dataset, read_table, shard_paths

from .score import ScoreError
from .stats import BootstrapConfig, summarise
from .submission import (
    FLOAT_TYPES,
    ProblemLog,
    SubmissionError,
    _is_list,
    _open,
    _storage,
    check_heatmap,
    checked_files,
    checked_ids,
    decode_2d,
    read_ids,
    read_metadata,
    validate_maps,
)

TRACK = "temporal"
RANKING_METRIC = "AUC"
THRESHOLDS = (0.3, 0.5, 0.7)
EDGE_SECONDS = 0.1
SEGMENT_MS = (20, 40, 80, 160, 320, 640)
POOLED_RESAMPLES = 200  # bootstrap draws of the pooled metrics (each re-ranks every frame of the split)
_BASE = ["AUC", "EER"] + [f"{m}@{t}" for t in THRESHOLDS for m in ("IoU", "F1")]
UTTERANCE_METRICS = _BASE + [f"{m} inner" for m in _BASE]
POOLED_METRICS = ["pooled AUC", "pooled EER"] + [f"segEER {r}ms" for r in SEGMENT_MS]
TEMPORAL_METRICS = UTTERANCE_METRICS + POOLED_METRICS
LOWER_IS_BETTER = {"EER", "EER inner", "pooled EER", *(f"segEER {r}ms" for r in SEGMENT_MS)}
POLICIES = {
    "truth": "frame f is spoofed when frame_labels[f] > 0 (any spoofed sample in its hop-wide cell)",
    "reduction": "a T-F heatmap (frames, F) is reduced to time by the mean over frequency",
    "per_utterance": "AUC/EER on the raw map; IoU/F1 after min-max normalisation per utterance (a constant map -> all 0), frames > t",
    "undefined": "per-utterance metrics are undefined (skipped, counted in n_undefined) on rows without spoofed frames; "
                 "AUC/EER also on rows without bona fide frames",
    "inner": "'inner' metrics leave out the frames centred in the first or last 100 ms",
    "pooled": "pooled metrics rank the raw values of every frame (or segment) of the split; 95% CI from a bootstrap over "
              f"utterances ({POOLED_RESAMPLES} draws at most)",
    "segments": "PartialSpoof resolutions 20-640 ms; a segment is spoofed if any of its frames is; its score is its mean frame score",
    "zero_division": "IoU and F1 are 0 when their denominator is 0",
}


@dataclass
class TemporalTruth:
    """Per-row frame truth of a split (dataset order)."""

    ids: list[str]
    vocoder: dict[str, str]
    labels: dict[str, np.ndarray]  # bool per frame
    num_samples: dict[str, int]
    hop: int
    sample_rate: int
    source: str = "dataset frame_labels"


class TemporalError(ScoreError):
    """A dataset that cannot be scored on the temporal track (one line for the user)."""


def has_frame_labels(ds: str | Path, split: str) -> bool:
    d = open_dataset(ds)
    return bool(d.files(split)) and "frame_labels" in d.schema(split).names


def load_temporal_truth(ds: str | Path, split: str = "test") -> TemporalTruth:
    """``frame_labels`` of ``split`` (raises :class:`TemporalError` for a dataset without them)."""
    if not shard_paths(ds, split):
        raise TemporalError(f"no shards for split {split!r} in {Path(ds) / 'data'} (check --dataset/--split)")
    if not has_frame_labels(ds, split):
        raise TemporalError(f"{ds} has no frame_labels column: the temporal track needs a partially spoofed dataset "
                            "(make one with `annotate partial DS --out DS2`)")
    table = read_table(ds, split, ["id", "vocoder", "frame_labels", "num_samples"])
    ids = table.column("id").to_pylist()
    vocoder = dict(zip(ids, table.column("vocoder").to_pylist()))
    labels = {}
    for i, fl in zip(ids, _decode_1d(table.column("frame_labels"))):
        labels[i] = np.asarray(fl) > 0
    try:
        stft = build_config(ds).get("stft") or {}
    except FileNotFoundError:
        stft = {}
    num_samples = dict(zip(ids, table.column("num_samples").to_pylist()))
    return TemporalTruth(ids, vocoder, labels, num_samples, int(stft.get("hop_length", 128)), int(stft.get("sample_rate", 16000)))


def _decode_1d(col) -> list[np.ndarray | None]:
    """Rows of a ``list<number>`` column as numpy arrays (``None`` for nulls)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    flat = arr.values.to_numpy(zero_copy_only=False)
    return [None if nulls[k] else flat[offsets[k] : offsets[k + 1]] for k in range(len(arr))]


# ----------------------------------------------------------------------------------------------- submissions


def heatmap_ndim(files: list[Path]) -> int:
    """1 when the submission's ``heatmap`` column is ``list<float>``, 2 for ``list<list<float>>``/Array2D."""
    t = _storage(_open(files[0]).schema_arrow.field("heatmap").type) if "heatmap" in _open(files[0]).schema_arrow.names else None
    return 1 if t is not None and _is_list(t) and not _is_list(t.value_type) else 2


def check_schema_temporal(files: list[Path]) -> list[str]:
    """``id`` string and ``heatmap`` 1-D ``list<float>`` or 2-D ``list<list<float>>`` in every file."""
    problems = []
    for f in files:
        schema = _open(f).schema_arrow
        missing = [c for c in ("id", "heatmap") if c not in schema.names]
        if missing:
            problems.append(f"{f}: missing column(s) {', '.join(missing)} — a temporal submission needs 'id' (string) "
                            "and 'heatmap' ((frames,) or (frames, F) floats)")
            continue
        id_t = _storage(schema.field("id").type)
        if not (pa.types.is_string(id_t) or pa.types.is_large_string(id_t)):
            problems.append(f"{f}: column 'id' has type {id_t}; expected string")
        t = _storage(schema.field("heatmap").type)
        leaf = t
        while _is_list(leaf):
            leaf = leaf.value_type
        depth = 1 + (_is_list(t) and _is_list(t.value_type))
        if not _is_list(t) or (depth == 2 and _is_list(t.value_type.value_type)):
            problems.append(f"{f}: column 'heatmap' has type {t}; expected list<float> (frames,) or list<list<float>> (frames, F)")
        elif leaf not in FLOAT_TYPES:
            problems.append(f"{f}: column 'heatmap' holds {leaf} values; expected float16/float32/float64 — cast before writing")
    return problems


def iter_temporal_heatmaps(files: list[Path], batch_rows: int = 256) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """``(id, 1-D map or None, problem)`` per row; T-F maps are reduced to time by the mean over frequency."""
    for f in files:
        for batch in _open(f).iter_batches(batch_size=batch_rows, columns=["id", "heatmap"]):
            ids = batch.column(0).to_pylist()
            col = batch.column(1)
            t = _storage(col.type)
            if _is_list(t.value_type):
                for i, (h, problem) in zip(ids, decode_2d(col)):
                    yield i, (None if h is None else reduce_to_time(h)), problem
            else:
                if isinstance(col.type, pa.ExtensionType):
                    col = col.storage
                for i, h in zip(ids, _decode_1d(col)):
                    yield i, h, None if h is not None else "null"


def reduce_to_time(h: np.ndarray) -> np.ndarray:
    """A 1-D map as float64: 1-D as is, ``(frames, F)`` by the mean over frequency."""
    h = np.asarray(h, dtype=np.float64)
    return h if h.ndim == 1 else h.mean(axis=1) if h.size else np.zeros(h.shape[0])


def check_map(i: str, h: np.ndarray | None, problem: str | None, n_frames: int, log: ProblemLog) -> bool:
    """Length, finiteness and constancy of one temporal map; True when it can be scored."""
    return check_heatmap(i, h, problem, (n_frames,), log, shape_text=f"{n_frames} frames", constant="constant_temporal")


# ----------------------------------------------------------------------------------------------- metrics


def minmax(h: np.ndarray) -> np.ndarray:
    """``(h - min) / (max - min)``; a constant map becomes all zeros."""
    lo, hi = float(h.min()), float(h.max())
    return (h - lo) / (hi - lo) if hi > lo else np.zeros_like(h, dtype=np.float64)


def eer_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Equal error rate (fraction) where the miss rate 1 - tpr crosses fpr, linearly interpolated."""
    fnr = 1.0 - tpr
    k = int(np.argmax(fpr >= fnr))
    if k == 0:
        return float((fpr[0] + fnr[0]) / 2)
    a0, a1, b0, b1 = fpr[k - 1], fpr[k], fnr[k - 1], fnr[k]
    den = (a1 - a0) - (b1 - b0)
    t = (b0 - a0) / den if den else 0.0
    return float(a0 + t * (a1 - a0))


def auc_eer(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> tuple[float, float]:
    """``(AUC, EER)`` in percent; NaN when a class is missing (or has no weight)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.asarray(labels, dtype=bool)
    w = np.ones(labels.size) if weights is None else weights
    if not (w[labels].sum() > 0 and w[~labels].sum() > 0):
        return float("nan"), float("nan")
    fpr, tpr, _ = roc_curve(labels, scores, sample_weight=weights, drop_intermediate=False)
    return 100.0 * float(roc_auc_score(labels, scores, sample_weight=weights)), 100.0 * eer_from_roc(fpr, tpr)


def iou_f1(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """IoU and F1 (percent) of two boolean vectors; 0 when the denominator is 0."""
    tp = int(np.count_nonzero(pred & truth))
    union = int(np.count_nonzero(pred | truth))
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))
    return (100.0 * tp / union if union else 0.0), (100.0 * 2 * tp / total if total else 0.0)


def edge_frames(n_frames: int, n_samples: int, hop: int, sr: int, seconds: float = EDGE_SECONDS) -> np.ndarray:
    """True for frames centred in the first or last ``seconds`` of the utterance."""
    centres = np.arange(n_frames) * hop
    e = seconds * sr
    return (centres < e) | (centres >= n_samples - e)


def utterance_scores(h: np.ndarray, truth: np.ndarray, inner: np.ndarray) -> dict[str, float]:
    """Every per-utterance metric of one 1-D map (module docstring); NaN where undefined."""
    out = {m: float("nan") for m in UTTERANCE_METRICS}
    norm = minmax(h)
    for suffix, keep in (("", np.ones_like(truth)), (" inner", inner)):
        t, s, n = truth[keep], h[keep], norm[keep]
        if not t.any():
            continue
        out[f"AUC{suffix}"], out[f"EER{suffix}"] = auc_eer(s, t)
        for thr in THRESHOLDS:
            out[f"IoU@{thr}{suffix}"], out[f"F1@{thr}{suffix}"] = iou_f1(n > thr, t)
    return out


def segments(h: np.ndarray, truth: np.ndarray, hop: int, sr: int, ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Segment scores (mean) and labels (any) at a resolution of ``ms`` milliseconds."""
    seg = (np.arange(h.size) * hop) // (ms * sr // 1000)
    n = int(seg[-1]) + 1 if h.size else 0
    score = np.bincount(seg, weights=h, minlength=n) / np.maximum(np.bincount(seg, minlength=n), 1)
    lab = np.zeros(n, bool)
    np.logical_or.at(lab, seg, truth)
    return score, lab


def pooled_scores(maps: list[np.ndarray], truths: list[np.ndarray], hop: int, sr: int, boot: BootstrapConfig) -> dict[str, dict]:
    """Pooled frame AUC/EER and segment EERs with a bootstrap over utterances (``mean_ci``-shaped dicts)."""
    n = len(maps)
    levels = [("frame", None)] + [(f"{r}ms", r) for r in SEGMENT_MS]
    out: dict[str, dict] = {}
    draws = min(boot.resamples, POOLED_RESAMPLES)
    rng = np.random.default_rng(boot.seed)
    counts = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(draws)] if n > 1 else []
    for name, ms in levels:
        if ms is None:
            parts = list(zip(maps, truths))
        else:
            parts = [segments(h, t, hop, sr, ms) for h, t in zip(maps, truths)]
        owner = np.repeat(np.arange(n), [len(s) for s, _ in parts])
        s = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
        y = np.concatenate([p[1] for p in parts]).astype(bool) if parts else np.zeros(0, bool)
        auc, eer = auc_eer(s, y)
        boots = [auc_eer(s, y, c[owner].astype(np.float64)) for c in counts]
        keys = ("pooled AUC", "pooled EER") if ms is None else (None, f"segEER {name}")
        for j, key in enumerate(keys):
            if key is None:
                continue
            value = (auc, eer)[j]
            vals = np.array([b[j] for b in boots])
            vals = vals[np.isfinite(vals)]
            alpha = (1.0 - boot.level) / 2.0
            ci = [float(v) for v in np.quantile(vals, [alpha, 1 - alpha])] if vals.size else [value, value]
            out[key] = {"mean": None if not np.isfinite(value) else value, "ci": ci if np.isfinite(value) else [None, None],
                        "n": int(len(s)), "n_undefined": 0 if np.isfinite(value) else int(len(s))}
    return out


# ----------------------------------------------------------------------------------------------- scoring


def score_maps(rows: Iterable[tuple[str, np.ndarray | None, str | None]], truth: TemporalTruth, log: ProblemLog
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Check every row and compute the per-utterance metrics (truth order); returns ``(values, maps)``."""
    index = {i: k for k, i in enumerate(truth.ids)}
    values = {m: np.full(len(truth.ids), np.nan) for m in UTTERANCE_METRICS}
    maps: dict[str, np.ndarray] = {}
    for i, h, problem in rows:
        if i is None or i not in index:
            continue
        lab = truth.labels[i]
        if not check_map(i, h, problem, lab.size, log) or not log.ok:
            continue
        inner = ~edge_frames(lab.size, int(truth.num_samples[i]), truth.hop, truth.sample_rate)
        for m, v in utterance_scores(h, lab, inner).items():
            values[m][index[i]] = v
        maps[i] = np.asarray(h, dtype=np.float64)
    return values, maps


def temporal_result(name: str, kind: str, values: dict[str, np.ndarray], maps: dict[str, np.ndarray], truth: TemporalTruth,
                    ds: str | Path, split: str, boot: BootstrapConfig, metadata: dict | None = None,
                    warnings: list[str] | None = None, extra: dict | None = None) -> dict:
    """The JSON-ready result of the temporal track (same layout as the T-F track's, ``track: temporal``)."""
    from .score import RESULT_FORMAT, _dataset_version

    vocoders = np.array([truth.vocoder[i] for i in truth.ids])
    overall, per_vocoder = summarise(values, vocoders, boot)
    overall.update(pooled_scores([maps[i] for i in truth.ids], [truth.labels[i] for i in truth.ids], truth.hop,
                                 truth.sample_rate, boot))
    return {
        "format": RESULT_FORMAT, "track": TRACK, "name": name, "kind": kind, "method": metadata or {},
        "dataset": dataset_name(ds), "dataset_version": _dataset_version(ds), "split": split, "truth": truth.source,
        "n_utterances": len(truth.ids), "metrics": TEMPORAL_METRICS, "units": "percent", "ranking_metric": RANKING_METRIC,
        "lower_is_better": sorted(LOWER_IS_BETTER), "overall": overall, "per_vocoder": per_vocoder,
        "bootstrap": {**boot.to_dict(), "pooled_resamples": min(boot.resamples, POOLED_RESAMPLES)}, "policies": POLICIES,
        "warnings": warnings or [], **(extra or {}),
    }


def _validated(sub: str | Path, truth: TemporalTruth) -> tuple[list[Path], ProblemLog]:
    files = checked_files(sub, check_schema_temporal)
    return files, checked_ids(read_ids(files), truth.ids)


def validate_temporal(sub: str | Path, ds: str | Path, split: str = "test") -> list[str]:
    """Every temporal check without scoring; returns the warnings, raises :class:`SubmissionError` on errors."""
    truth = load_temporal_truth(ds, split)
    files = checked_files(sub, check_schema_temporal)
    return validate_maps(files, truth.ids, iter_temporal_heatmaps(files),
                         lambda i, h, problem, log: check_map(i, h, problem, truth.labels[i].size, log))


def score_temporal(sub: str | Path, ds: str | Path, split: str = "test", name: str | None = None,
                   boot: BootstrapConfig = BootstrapConfig(), truth: TemporalTruth | None = None) -> dict:
    """Validate then score ``sub`` on the temporal track; raises :class:`SubmissionError` if invalid."""
    truth = truth or load_temporal_truth(ds, split)
    files, log = _validated(sub, truth)
    values, maps = score_maps(iter_temporal_heatmaps(files), truth, log)
    if not log.ok:
        raise SubmissionError(log.error_messages())
    metadata = read_metadata(sub)
    label = name or metadata.get("method") or metadata.get("name") or Path(sub).stem
    return temporal_result(str(label), "submission", values, maps, truth, ds, split, boot, metadata,
                           log.warning_messages(), {"submission": str(Path(sub).resolve())})


# ----------------------------------------------------------------------------------------------- chance rows


def chance_map(method: str, i: str, n_frames: int, seed: int = 0, spoof_logmag: np.ndarray | None = None) -> np.ndarray:
    """A chance 1-D map: the T-F chance heatmap of :mod:`benchmark.chance` reduced to time."""
    from .chance import chance_heatmap

    if method == "uniform random":  # one value per frame (a mean of 257 uniforms would be nearly constant)
        return np.random.default_rng([seed, zlib.crc32(i.encode())]).random(n_frames)
    return reduce_to_time(chance_heatmap(method, i, (n_frames, 257), seed, spoof_logmag))


def temporal_chance_result(method: str, ds: str | Path, split: str = "test", seed: int = 0,
                           boot: BootstrapConfig = BootstrapConfig(), truth: TemporalTruth | None = None) -> dict:
    """One chance baseline scored on the temporal track (kind ``chance``)."""
    from .chance import chance_name
    from .score import iter_split

    truth = truth or load_temporal_truth(ds, split)
    if method == "spoof energy":
        rows = ((r["id"], chance_map(method, r["id"], truth.labels[r["id"]].size, seed, r["spoof_logmag"]), None)
                for r in iter_split(ds, split, ["id", "spoof_logmag"], arrays=("spoof_logmag",)))
    else:
        rows = ((i, chance_map(method, i, truth.labels[i].size, seed), None) for i in truth.ids)
    log = ProblemLog()
    values, maps = score_maps(rows, truth, log)
    if not log.ok:
        raise SubmissionError([f"chance baseline {method!r}: " + m for m in log.error_messages()])
    return temporal_result(chance_name(method), "chance", values, maps, truth, ds, split, boot,
                           {"method": method, "seed": seed}, log.warning_messages())
