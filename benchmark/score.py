"""Scoring: validate a submission against a split's truth masks, compute every metric per utterance,
then means with bootstrap CIs overall and per vocoder (docs/formulas.md, metrics).

Memory: the truth masks of the split stay in memory (1 byte per pixel, as Arrow holds them);
the submission is streamed one record batch at a time. Results are produced only when the whole
submission is valid — there is no averaging over partial results.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq

from annotate.core.dataset import build_config, dataset_name, read_table
from annotate.core.spectral import DEFAULT_STFT

from .localisation import LOCALISATION_METRICS, localisation_scores
from .metrics import SEGMENTATION_METRICS, binarise, segmentation_scores_binary
from .stats import BootstrapConfig, summarise
from .submission import (
    ProblemLog,
    SubmissionError,
    check_heatmap,
    checked_files,
    checked_ids,
    decode_2d,
    iter_heatmaps,
    read_ids,
    read_metadata,
    validate_maps,
)

RESULT_FORMAT = "vocmask-benchmark-result/1"
RANKING_METRIC = "IoU"
FAITHFULNESS = ("AI", "AD", "AG", "FidIn")
ALL_METRICS = SEGMENTATION_METRICS + LOCALISATION_METRICS + FAITHFULNESS
POLICIES = {
    "binarisation": "heatmap > quantile(heatmap, 0.95) per utterance (ties fall outside; a constant heatmap gives an empty map)",
    "zero_division": "F1, IoU and FBound are 0 when their denominator is 0",
    "gdice_weights": "1/volume^2 of the truth class; an empty truth class takes the largest finite weight",
    "ssim": "skimage-equivalent SSIM (Gaussian sigma 1.5, population covariance, data range 1) on the binary maps; NaN below 11x11",
    "auc": "ROC-AUC undefined (skipped, counted in n_undefined) when the truth mask is empty or full; ties count 1/2",
    "pointing_game": "tied maxima score the share of them inside the mask",
    "rma": "positive heatmap mass only; 0 when there is none",
    "faithfulness": "masked-out bins replaced by the real twin (magnitude and phase); logit ties resolve to spoof; AG = 0 when p_c = 1",
    "means": "per utterance, then the mean over utterances; 95% percentile bootstrap CIs over utterances",
}


class ScoreError(Exception):
    """A scoring input (dataset, key, detector) that cannot be used; the message says what to do."""


@dataclass
class Truth:
    """The split's ids (dataset order), their vocoders and truth masks (uint8 views into Arrow buffers)."""

    ids: list[str]
    vocoder: dict[str, str]
    masks: dict[str, np.ndarray]
    source: str = "dataset masks"

    def select(self, keep: list[str]) -> "Truth":
        """The same truth restricted to the ids ``keep`` (kept in dataset order)."""
        wanted = set(keep)
        ids = [i for i in self.ids if i in wanted]
        return Truth(ids, {i: self.vocoder[i] for i in ids}, {i: self.masks[i] for i in ids}, self.source)


def subset_truth(truth: Truth, split: str, *, limit: int | None = None, ids_file: str | Path | None = None) -> tuple[Truth, dict | None]:
    """``truth`` cut to the split's first ``limit`` rows (as `explain --limit` explains) or to the ids listed in
    ``ids_file`` (one a line); returns it with the subset record a result carries (None: the whole split)."""
    if limit is None and ids_file is None:
        return truth, None
    if limit is not None and ids_file is not None:
        raise ScoreError("give --limit or --ids, not both")
    if limit is not None:
        keep, how = truth.ids[:limit], f"limit {limit}"
    else:
        try:
            keep = [line.strip() for line in Path(ids_file).read_text().splitlines() if line.strip()]
        except OSError as e:
            raise ScoreError(f"--ids {ids_file}: cannot read it ({e.strerror or e})") from None
        unknown = sorted(set(keep) - set(truth.ids))
        if unknown:
            raise ScoreError(f"--ids {ids_file}: {len(unknown)} id(s) not in split {split!r} (first: {', '.join(unknown[:3])}); "
                             "list the split's ids with `annotate ids DS --split SPLIT`")
        if not keep:
            raise ScoreError(f"--ids {ids_file} lists no ids")
        how = f"ids {Path(ids_file).name}"
    sub = truth.select(keep)
    record = {"n": len(sub.ids), "of": len(truth.ids), "how": how, "ids_digest": ids_digest(sub.ids)}
    return sub, record


def ids_digest(ids: list[str]) -> str:
    """A short hash of an id list: results scored on different rows have different digests."""
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def rows_scored(result: dict) -> str:
    """Which rows a result scored: ``"all"`` or the digest of its subset's ids."""
    sub = result.get("subset")
    return sub["ids_digest"] if sub else "all"


def check_comparable(results: list[dict]) -> None:
    """Raise :class:`ScoreError` when results were scored on different rows (a subset against the full split,
    or two different subsets): their means are not comparable, so they are never ranked together."""
    groups: dict[str, list[str]] = {}
    for r in results:
        groups.setdefault(rows_scored(r), []).append(r.get("name", "?"))
    if len(groups) > 1:
        parts = [f"{'the whole split' if k == 'all' else 'subset ' + k}: {', '.join(v[:3])}" for k, v in groups.items()]
        raise ScoreError("cannot rank results scored on different rows (" + "; ".join(parts) + "): "
                         "score every method on the same rows (same --limit/--ids, or none)")


def load_truth(ds: str | Path, split: str = "test", key: str | Path | None = None) -> Truth:
    """Read ids, vocoders and masks of ``split``; with ``key``, masks come from that Parquet (``id``, ``mask``)."""
    try:
        schema_names = _split_columns(ds, split)
    except FileNotFoundError as e:
        raise ScoreError(str(e)) from None
    if key is None and "mask" not in schema_names:
        raise ScoreError(f"split {split!r} of {ds} withholds its masks: pass the private key file with --key")
    table = read_table(ds, split, ["id", "vocoder"] + ([] if key else ["mask"]))
    ids = table.column("id").to_pylist()
    if not ids:
        raise ScoreError(f"split {split!r} of {ds} has no rows (see its summary.json, empty_splits): nothing to score; "
                         "choose another --split")
    vocoder = dict(zip(ids, table.column("vocoder").to_pylist()))
    if key is None and table.column("mask").null_count == len(ids):
        raise ScoreError(f"split {split!r} of {ds} has no T-F masks (a corpus without real twins, e.g. PartialSpoof, "
                         "has frame labels only): score it with --track temporal or a 1-D submission")
    if key is None:
        masks_src, src_ids, source = table.column("mask"), ids, "dataset masks"
    else:
        kp = Path(key)
        try:
            kt = pq.read_table(kp, columns=["id", "mask"])
        except Exception as e:
            raise ScoreError(f"{kp}: cannot read the key file's 'id' and 'mask' columns ({str(e).splitlines()[0][:160]})") from None
        masks_src, src_ids, source = kt.column("mask"), kt.column("id").to_pylist(), f"key file {kp.name}"
    masks = {}
    for i, (m, problem) in zip(src_ids, decode_2d(masks_src)):
        if problem is None:
            masks[i] = m.astype(bool, copy=False) if m.dtype != np.uint8 else m.view(bool)
    lacking = [i for i in ids if i not in masks]
    if lacking:
        raise ScoreError(
            f"{len(lacking)} id(s) of split {split!r} have no usable truth mask in {source} "
            f"(first: {', '.join(lacking[:5])}) — check the dataset or key file"
        )
    return Truth(ids, vocoder, masks, source)


def _split_columns(ds: str | Path, split: str) -> list[str]:
    """Column names of the split's shards (from the first footer)."""
    from annotate.core.dataset import open_dataset

    return open_dataset(ds).schema(split).names


def iter_split(ds: str | Path, split: str, columns: list[str], arrays: tuple[str, ...] = ()) -> Iterator[dict]:
    """Rows of a split as dicts, ``arrays`` columns decoded to 2-D numpy arrays (batch-wise, bounded memory)."""
    from annotate.core.dataset import open_dataset

    for table in open_dataset(ds).iter_batches(split, columns):  # one row group at a time
        for batch in table.to_batches(max_chunksize=64):
            cols = {}
            for name in columns:
                col = batch.column(name)
                cols[name] = [a for a, _ in decode_2d(col)] if name in arrays else col.to_pylist()
            for k in range(batch.num_rows):
                yield {name: cols[name][k] for name in columns}


def utterance_scores(heatmap: np.ndarray, truth: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Segmentation + localisation metrics (percent) of one heatmap, and its binarised map."""
    pred = binarise(heatmap)
    return {**segmentation_scores_binary(pred, truth), **localisation_scores(heatmap, truth)}, pred


@dataclass
class Scored:
    """Per-utterance values in truth order plus what validation found."""

    values: dict[str, np.ndarray]
    log: ProblemLog
    binary: dict[str, tuple[np.ndarray, tuple]] = field(default_factory=dict)  # id -> (packbits, shape)


def _score_chunk(items: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[dict[str, float], np.ndarray]]:
    """Metrics and packed binarised map of each ``(heatmap, mask)``, vectorised over the chunk
    (:func:`batch.score_batch`, equal to :func:`utterance_scores` one by one); runs in worker processes too."""
    from .batch import score_batch

    values, preds = score_batch(items)
    names = list(values)
    return [({m: float(values[m][k]) for m in names}, np.packbits(preds[k])) for k in range(len(items))]


def score_stream(
    rows: Iterable[tuple[str, np.ndarray | None, str | None]],
    truth: Truth,
    log: ProblemLog,
    keep_binary: bool = False,
    workers: int = 1,
    chunk: int = 64,
) -> Scored:
    """Check and score every ``(id, heatmap, problem)``; after the first error only checking continues.

    ``workers > 1`` scores chunks of utterances in a process pool (at most ``2 * workers`` chunks
    in flight, so memory stays bounded); the results are identical to ``workers=1``.
    """
    index = {i: k for k, i in enumerate(truth.ids)}
    names = SEGMENTATION_METRICS + LOCALISATION_METRICS
    values = {m: np.full(len(truth.ids), np.nan) for m in names}
    binary: dict[str, tuple[np.ndarray, tuple]] = {}

    def collect(ids: list[str], results: list[tuple[dict, np.ndarray]]) -> None:
        for i, (scores, packed) in zip(ids, results):
            k = index[i]
            for m in names:
                values[m][k] = scores[m]
            if keep_binary:
                binary[i] = (packed, truth.masks[i].shape)

    pool = None
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    pending: list = []
    ids: list[str] = []
    items: list[tuple[np.ndarray, np.ndarray]] = []

    def dispatch() -> None:
        nonlocal ids, items
        if not items:
            return
        if pool is None:
            collect(ids, _score_chunk(items))
        else:
            pending.append((ids, pool.submit(_score_chunk, items)))
            while len(pending) > 2 * workers:
                done_ids, fut = pending.pop(0)
                collect(done_ids, fut.result())
        ids, items = [], []

    try:
        for i, h, problem in rows:
            if i is None or i not in index:
                continue  # reported by check_ids
            mask = truth.masks[i]
            if not check_heatmap(i, h, problem, mask.shape, log) or not log.ok:
                continue
            ids.append(i)
            items.append((h, mask))
            if len(items) >= chunk:
                dispatch()
        dispatch()
        for done_ids, fut in pending:
            collect(done_ids, fut.result())
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return Scored(values, log, binary)


def faithfulness_values(
    detector: Callable, ds: str | Path, split: str, truth: Truth, binary: dict[str, tuple[np.ndarray, tuple]],
    spoof_probs: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """AI, AD, AG, Fid-In per utterance (truth order) with the binarised heatmaps as keep-masks.

    ``spoof_probs``: the detector's probabilities on each spoof input by id, filled and reused (they do not depend
    on the heatmap: ``benchmark run`` shares one dict among its methods, one detector forward a row saved each)."""
    from annotate.core.audio import decode_bytes

    from .faithfulness import detector_probs, masked_in, scores_from_probs

    if "real_audio" not in _split_columns(ds, split):
        raise ScoreError(f"split {split!r} of {ds} withholds its real audio, which the faithfulness metrics need: "
                         "score with --detector against the full (private) dataset instead")
    index = {i: k for k, i in enumerate(truth.ids)}
    out = {m: np.full(len(truth.ids), np.nan) for m in FAITHFULNESS}
    for row in iter_split(ds, split, ["id", "spoof_audio", "real_audio"]):
        i = row["id"]
        if i not in binary:
            continue
        packed, shape = binary[i]
        keep = np.unpackbits(packed, count=int(np.prod(shape))).reshape(shape)
        spoof, _ = decode_bytes(row["spoof_audio"]["bytes"])
        real, _ = decode_bytes(row["real_audio"]["bytes"])
        if spoof.size != real.size:
            raise ScoreError(f"row {i}: spoof ({spoof.size}) and real ({real.size}) audio differ in length — rebuild the dataset")
        try:
            x_in = masked_in(spoof, real, keep, DEFAULT_STFT)
        except ValueError as e:
            raise ScoreError(f"row {i}: {e}") from None
        if spoof_probs is not None and i in spoof_probs:
            probs = np.concatenate([spoof_probs[i], detector_probs(detector, x_in[None])])
        else:
            probs = detector_probs(detector, np.stack([spoof, x_in]))
            if spoof_probs is not None:
                spoof_probs[i] = probs[:1]
        for m, v in scores_from_probs(probs[:1], probs[1:]).items():
            out[m][index[i]] = v[0]
    return out


def load_detector_checkpoint(path: str | Path):
    """``training.detector.load_detector(path)``, with a clear message when the training package is missing."""
    try:
        from training.detector import load_detector
    except ImportError as e:
        raise ScoreError(f"--detector needs training.detector.load_detector, which cannot be imported ({e}); install vocmask with its training package") from None
    try:
        return load_detector(path)
    except FileNotFoundError as e:
        raise ScoreError(str(e)) from None


def _dataset_version(ds: str | Path) -> str | None:
    try:
        return build_config(ds).get("version")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def build_result(
    name: str,
    kind: str,
    values: dict[str, np.ndarray],
    truth: Truth,
    ds: str | Path,
    split: str,
    boot: BootstrapConfig,
    metadata: dict | None = None,
    warnings: list[str] | None = None,
    extra: dict | None = None,
) -> dict:
    """The JSON-ready result: overall and per-vocoder means with CIs, plus provenance."""
    vocoders = np.array([truth.vocoder[i] for i in truth.ids])
    overall, per_vocoder = summarise(values, vocoders, boot)
    return {
        "format": RESULT_FORMAT,
        "name": name,
        "kind": kind,
        "method": metadata or {},
        "dataset": dataset_name(ds),
        "dataset_version": _dataset_version(ds),
        "split": split,
        "truth": truth.source,
        "n_utterances": len(truth.ids),
        "metrics": [m for m in ALL_METRICS if m in values],
        "units": "percent",
        "ranking_metric": RANKING_METRIC,
        "overall": overall,
        "per_vocoder": per_vocoder,
        "bootstrap": boot.to_dict(),
        "policies": POLICIES,
        "warnings": warnings or [],
        **(extra or {}),
    }


def validate_submission(sub: str | Path, ds: str | Path, split: str = "test", key: str | Path | None = None) -> list[str]:
    """Run every check without scoring; returns the warnings, raises :class:`SubmissionError` on errors."""
    files = checked_files(sub)
    truth = load_truth(ds, split, key)
    return validate_maps(files, truth.ids, iter_heatmaps(files),
                         lambda i, h, problem, log: check_heatmap(i, h, problem, truth.masks[i].shape, log))


def score_submission(
    sub: str | Path,
    ds: str | Path,
    split: str = "test",
    detector: Callable | str | Path | None = None,
    key: str | Path | None = None,
    name: str | None = None,
    boot: BootstrapConfig = BootstrapConfig(),
    truth: Truth | None = None,
    workers: int = 1,
    limit: int | None = None,
    ids_file: str | Path | None = None,
    spoof_probs: dict[str, np.ndarray] | None = None,
) -> dict:
    """Validate then score ``sub`` on ``split`` of ``ds``; raises :class:`SubmissionError` if invalid.

    ``spoof_probs``: see :func:`faithfulness_values` (a cache of the detector's output on the spoof inputs).

    ``limit`` / ``ids_file``: score only the split's first N rows / the listed ids (the submission's other
    rows are ignored); the result records the subset, and the leaderboard never ranks it against full results."""
    files = checked_files(sub)
    metadata = read_metadata(sub)
    truth, subset = subset_truth(truth or load_truth(ds, split, key), split, limit=limit, ids_file=ids_file)
    sub_ids = read_ids(files)
    if subset is not None:  # rows outside the subset are neither required nor scored
        keep = set(truth.ids)
        sub_ids = [i for i in sub_ids if i is None or i in keep]
    log = checked_ids(sub_ids, truth.ids)
    det = load_detector_checkpoint(detector) if isinstance(detector, (str, Path)) else detector
    scored = score_stream(iter_heatmaps(files), truth, log, keep_binary=det is not None, workers=workers)
    if not log.ok:
        raise SubmissionError(log.error_messages())
    values = scored.values
    if det is not None:
        values = {**values, **faithfulness_values(det, ds, split, truth, scored.binary, spoof_probs)}
    label = name or metadata.get("method") or metadata.get("name") or Path(sub).stem
    extra = {"submission": str(Path(sub).resolve()), "detector": str(detector) if isinstance(detector, (str, Path)) else None,
             "subset": subset}
    return build_result(str(label), "submission", values, truth, ds, split, boot, metadata, log.warning_messages(), extra)


# ----------------------------------------------------------------------------------------------- output


def fmt_cell(stat: dict | None, digits: int = 1) -> str:
    """``mean [lo, hi]`` of one ``mean_ci`` entry; ``-`` when undefined."""
    if not stat or stat.get("mean") is None:
        return "-"
    lo, hi = stat["ci"]
    if lo is None or hi is None:  # --bootstrap 0: no interval
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def format_table(result: dict) -> str:
    """A plain-text table: one line overall and one per vocoder, every metric with its 95% CI."""
    metrics = result["metrics"]
    rows = [("all", result["n_utterances"], result["overall"])]
    rows += [(v, s[metrics[0]]["n"] + s[metrics[0]]["n_undefined"], s) for v, s in result["per_vocoder"].items()]
    header = ["vocoder", "n"] + metrics
    body = [[str(g), str(n)] + [fmt_cell(s.get(m)) for m in metrics] for g, n, s in rows]
    widths = [max(len(r[c]) for r in [header] + body) for c in range(len(header))]
    line = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    ci = ", 95% bootstrap CI" if (result.get("bootstrap") or {}).get("resamples", 1) > 0 else ", no CI (--bootstrap 0)"
    sub = result.get("subset")
    part = f", subset: {sub['n']} of {sub['of']} rows ({sub['how']})" if sub else ""
    title = f"{result['name']} on {Path(result['dataset']).name}/{result['split']} ({result['truth']}){part}, percent{ci}"
    return "\n".join([title, line(header), line(["-" * w for w in widths])] + [line(r) for r in body])


def _clean(obj):
    """NaN/inf -> None so the JSON is strict."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_result(result: dict, path: str | Path) -> Path:
    """Write the result JSON (strict: no NaN)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(_clean(result), indent=2, sort_keys=False) + "\n")
    return p


def iter_arrays(items: Iterable[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray, None]]:
    """Adapt ``(id, heatmap)`` pairs (e.g. chance baselines) to :func:`score_stream`'s rows."""
    for i, h in items:
        yield i, h, None
