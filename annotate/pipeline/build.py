"""`annotate build`: corpus -> aligned, (optionally) RawBoost-augmented, annotated Parquet shards.

Data flow per pair: decode + resample both files -> STFT both -> DTW + sample refinement on those
spectrograms -> trim to the common span -> matched RawBoost (optional) -> STFT of the aligned pair ->
Eq. 2 mask and D -> FLAC -> one row. Pairs are grouped per split into fixed shards before any work
starts, so shard names (``{split}-{i:05d}-of-{n:05d}``) and contents do not depend on the worker count;
each task writes its shard atomically and a small ``.parts/{shard}.json`` summary, which is what makes a
killed build resumable (finished shards are skipped).
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from .. import FORMAT_VERSION
from .align import AlignConfig, AlignmentError, align, logmel_features
from ..core.audio import AudioError, encode_flac, load
from ..core.dataset import ShardWriter, features, partial_features
from .jobs import JobError, Task, pinned_parameters, run_tasks, stale_tasks
from ..core.rawboost import RawBoostConfig
from ..sources import LabelledSpoof, Pair, Reject, read_source
from ..sources.base import SPLITS
from ..core.storage import Store
from ..core.spectral import MaskConfig, STFTConfig, artifact_mask, log_magnitude, stft, stft_of_prefix
from .splits import assign_splits

FLOAT16_MAX = 65504.0


class BuildError(JobError):
    """A problem with the build as a whole (one line for the user, exit code 2)."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines the dataset's content; stored as ``build.json`` with the shards."""

    source: str = "demo"
    root: str | None = None
    real_root: str | None = None
    split_policy: str = "official"
    seed: int = 0
    shard_size: int = 64
    min_sample_rate: int = 8000
    resample_quality: str = "HQ"
    rawboost_prob: float = 0.0
    rawboost_algo: int = 5
    augment_copies: int = 0
    stft: STFTConfig = field(default_factory=STFTConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    rawboost: RawBoostConfig = field(default_factory=RawBoostConfig)
    version: str = FORMAT_VERSION  # the dataset format (annotate.FORMAT_VERSION), not the package version

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BuildConfig":
        d = dict(d)
        d["stft"] = STFTConfig(**d.get("stft", {}))
        d["mask"] = MaskConfig(**d.get("mask", {}))
        d["align"] = AlignConfig(**d.get("align", {}))
        d["rawboost"] = RawBoostConfig(**d.get("rawboost", {}))
        return cls(**d)


@dataclass(frozen=True)
class ShardTask(Task):
    """One shard: its final name, its split and the pairs it holds (``items``: their ids)."""

    split: str = ""
    pairs: tuple[Pair, ...] = ()


# ------------------------------------------------------------------------------------------- per pair


LOCAL_KEYS = ("root", "real_root")  # build parameters that are local paths: published as folder names only


def public_config(cfg: BuildConfig | dict) -> dict:
    """The build config as published (shard metadata, data card): local corpus paths reduced to their folder names."""
    d = cfg.to_dict() if isinstance(cfg, BuildConfig) else dict(cfg)
    for key in LOCAL_KEYS:
        if d.get(key):
            d[key] = Path(d[key]).name
    return d


def rawboost_plan(pair_id: str, cfg: BuildConfig) -> list[tuple[int, int, int]]:
    """``(copy, algo, seed)`` for each row a pair yields: copy 0 is augmented with ``rawboost_prob``,
    copies 1..K always; seeds come from (global seed, pair id, copy), so any row can be replayed."""
    from ..core.rawboost import pair_seed, should_augment

    plan = []
    for copy in range(cfg.augment_copies + 1):
        seed = pair_seed(cfg.seed, pair_id if copy == 0 else f"{pair_id}#aug{copy}")
        if copy == 0:
            use = should_augment(seed, cfg.rawboost_prob)
        else:
            use = True
        plan.append((copy, cfg.rawboost_algo if use else 0, seed if use else 0))
    return plan


@dataclass(frozen=True)
class RealSide:
    """A real utterance decoded, resampled and analysed once: shared by every spoof of it in a shard
    (shards group pairs by real utterance), so further spoofs of it skip that work."""

    signal: np.ndarray
    spec: np.ndarray  # complex STFT, time-first
    mag: np.ndarray  # |spec|
    features: np.ndarray  # alignment log-mel frames
    flac: dict = field(default_factory=dict, compare=False)  # (start, length) -> FLAC bytes of that aligned slice

    def encode_slice(self, start: int, length: int, sr: int) -> bytes:
        """FLAC bytes of ``signal[start:start+length]``, encoded once per slice: spoofs that keep the real's
        timing share it (vocoders that pad to their hop often align at offset 0 with the same length)."""
        key = (start, length)
        if key not in self.flac:
            self.flac[key] = encode_flac(self.signal[start : start + length], sr)
        return self.flac[key]


def real_side(pair: Pair, cfg: BuildConfig, reuse: dict | None = None) -> RealSide:
    """The pair's :class:`RealSide`, from ``reuse`` (one entry: the last real seen) or computed."""
    if reuse is not None and pair.real_path in reuse:
        return reuse[pair.real_path]
    try:
        x, _ = load(pair.real_path, cfg.stft.sample_rate, resample_quality=cfg.resample_quality,
                    min_sr=cfg.min_sample_rate)
    except AudioError as e:
        raise AudioError(f"real {e}") from None
    spec = stft(x, cfg.stft)
    mag = np.abs(spec)
    side = RealSide(x, spec, mag, logmel_features(mag, cfg.stft, cfg.align.n_mels))
    if reuse is not None:
        reuse.clear()
        reuse[pair.real_path] = side
    return side


def annotate_pair(pair: Pair, cfg: BuildConfig, reuse: dict | None = None) -> list[dict]:
    """All rows of one pair (one per augmentation copy). Raises AudioError/AlignmentError to reject it.

    ``reuse``: a dict the caller keeps across the pairs of a shard, holding the last real's analysis.
    A :class:`LabelledSpoof` (no real twin) gets frame labels and no mask instead (:mod:`annotate.pipeline.labelled`)."""
    if isinstance(pair, LabelledSpoof):
        from .labelled import labelled_rows

        return labelled_rows(pair, cfg, rawboost_plan(pair.id, cfg))
    sr = cfg.stft.sample_rate
    rs = real_side(pair, cfg, reuse)
    real, spec_r = rs.signal, rs.spec
    spoof, _ = load(pair.spoof_path, sr, resample_quality=cfg.resample_quality, min_sr=cfg.min_sample_rate)
    if min(len(real), len(spoof)) < 4 * cfg.stft.n_fft:
        raise AudioError(f"too short: {min(len(real), len(spoof))} samples at {sr} Hz")
    spec_s = stft(spoof, cfg.stft)
    al = align(real, spoof, rs.mag, np.abs(spec_s), cfg.stft, cfg.align, real_features=rs.features)
    real_a, spoof_a = al.apply(real, spoof)
    rows = []
    for copy, algo, seed in rawboost_plan(pair.id, cfg):
        r, s = real_a, spoof_a
        if algo:
            from ..core.rawboost import augment_pair

            r, s = augment_pair(real_a, spoof_a, algo, seed, sr, cfg.rawboost)
            spec_ra, spec_sa = stft(r, cfg.stft), stft(s, cfg.stft)
        else:  # one side of an aligned pair starts at 0: its spectrogram is a prefix of the one computed above
            spec_ra = stft_of_prefix(spec_r, real, al.length, cfg.stft) if al.real_start == 0 else stft(r, cfg.stft)
            spec_sa = stft_of_prefix(spec_s, spoof, al.length, cfg.stft) if al.spoof_start == 0 else stft(s, cfg.stft)
        mag_sa = np.abs(spec_sa)
        mask, d = artifact_mask(mag_sa, np.abs(spec_ra), cfg.mask)
        rows.append(
            {
                "id": pair.id if copy == 0 else f"{pair.id}__aug{copy}",
                "utt_id": pair.utt_id,
                "speaker": pair.speaker,
                "vocoder": pair.vocoder,
                "source": pair.source,
                "split": pair.split,
                "spoof_audio": {"bytes": encode_flac(s, sr), "path": os.path.basename(pair.spoof_path)},
                "real_audio": {"bytes": rs.encode_slice(al.real_start, al.length, sr) if not algo else encode_flac(r, sr),
                               "path": os.path.basename(pair.real_path)},
                "spoof_logmag": log_magnitude(mag_sa),
                "mask": mask,
                "diff": float16_saturated(d),
                "num_samples": int(al.length),
                "offset": int(al.offset),
                "align_score": float(al.score),
                "rawboost": int(algo),
                "rawboost_seed": int(seed),
                "augment_copy": int(copy),
            }
        )
    return rows


def float16_saturated(d: np.ndarray) -> np.ndarray:
    """D as float16, saturating at the largest finite half (torch converts faster than numpy: docs/performance.md)."""
    import torch

    return torch.from_numpy(d).clamp(max=FLOAT16_MAX).half().numpy()


def run_shard(task: ShardTask, out: str, *, cfg: BuildConfig, schema=None) -> dict:
    """Annotate one shard's pairs and write the shard atomically; returns its summary (``.parts`` record)."""
    import torch
    from threadpoolctl import threadpool_limits

    from .align import warm_up as load_dtw

    torch.set_num_threads(1)  # one core per worker: parallelism comes from the workers
    load_dtw()  # dtaidistance's C library loads with the worker, not inside its first pair
    with threadpool_limits(1):
        return _run_shard(task, cfg, out, schema)


def _run_shard(task: ShardTask, cfg: BuildConfig, out: str, schema=None) -> dict:
    t0, c0, started = time.perf_counter(), time.process_time(), time.time()
    store = Store(out)
    if schema is None:
        schema = features(cfg.stft.n_freq, cfg.stft.sample_rate).arrow_schema
    rejects: list[dict] = []
    offsets: list[int] = []
    shard = f"data/{task.name}.parquet"
    try:
        with store.writing(shard) as local_tmp:
            rows, seconds = _write_shard(task, cfg, local_tmp, schema, rejects, offsets)
            if rows == 0:
                raise _NoRows  # every pair rejected: no 0-row shard (`load_dataset` refuses those)
    except _NoRows:
        store.remove(shard)  # a shard of an earlier run under this name
    part = {"shard": task.name, "split": task.split, "pairs": len(task.pairs), "rows": rows,
            "outputs": [shard] if rows else [],
            "rejects": rejects, "seconds_audio": seconds, "offsets": offsets,
            "seconds_taken": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "started": started, "finished": time.time(), "worker_pid": os.getpid(),
            "peak_rss_mb": _peak_rss_mb()}
    return part


class _NoRows(Exception):
    """Raised inside a shard's atomic write to drop it: the shard has no rows."""


def _write_shard(task: ShardTask, cfg: BuildConfig, local_tmp: str, schema, rejects: list[dict],
                 offsets: list[int]) -> tuple[int, float]:
    """Annotate ``task``'s pairs into the Parquet file ``local_tmp``; rejects and offsets are appended to the
    lists given. Returns (rows written, seconds of audio written)."""
    seconds = 0.0
    writer = ShardWriter(local_tmp, schema, metadata={"build": public_config(cfg)}, atomic=False)
    try:
        reuse: dict = {}
        for pair in task.pairs:
            try:
                rows = annotate_pair(pair, cfg, reuse)
            except (AudioError, AlignmentError) as e:
                rejects.append(Reject(pair.id, pair.spoof_path, str(e), stage="annotate").to_dict())
                continue
            except Exception as e:  # never lose the build to one odd pair
                rejects.append(Reject(pair.id, pair.spoof_path, f"unexpected error: {type(e).__name__}: {e}",
                                      stage="annotate").to_dict())
                continue
            for row in rows:
                writer.write(row)
                seconds += row["num_samples"] / cfg.stft.sample_rate
            if not isinstance(pair, LabelledSpoof):  # nothing was aligned
                offsets.append(rows[0]["offset"])
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.rows, seconds


def _peak_rss_mb() -> float:
    """Peak resident memory of this (worker) process so far, MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------- driver


def plan_shards(pairs: list[Pair], shard_size: int) -> list[ShardTask]:
    """Group pairs per split into fixed-size shards with their final names. Within a split pairs are
    ordered by real utterance (then id), so the spoofs of one real are neighbours and share its analysis."""
    tasks = []
    for split in sorted({p.split for p in pairs}):
        ps = sorted((p for p in pairs if p.split == split), key=lambda p: (p.utt_id, p.real_path, p.id))
        n = max(1, math.ceil(len(ps) / shard_size))
        for i in range(n):
            chunk = tuple(ps[i * shard_size : (i + 1) * shard_size])
            tasks.append(ShardTask(f"{split}-{i:05d}-of-{n:05d}", tuple(p.id for p in chunk), split=split, pairs=chunk))
    return tasks


def row_features(pairs: list[Pair], cfg: BuildConfig):
    """The rows' features: :func:`annotate.core.dataset.features`, or :func:`~annotate.core.dataset.partial_features`
    (``frame_labels``, ``spans``) for a corpus of labelled spoofs without real twins."""
    make = partial_features if any(isinstance(p, LabelledSpoof) for p in pairs) else features
    return make(cfg.stft.n_freq, cfg.stft.sample_rate)


def reject_kind(reason: str) -> str:
    """The category of a reject reason: the text before its first ':' with numbers blanked."""
    head = re.split(r"[:(]", reason, maxsplit=1)[0]
    return re.sub(r"\d+(\.\d+)?", "N", head).strip()


def _prepare_out(store: Store, cfg: BuildConfig, overwrite: bool) -> None:
    """Refuse a folder built with other parameters (unless ``overwrite``), clean leftovers, pin build.json."""
    new = json.loads(json.dumps(cfg.to_dict()))
    if pinned_parameters(store, "build.json", new, overwrite=overwrite, what="a build", error=BuildError) is not None:
        for sub in ("data", ".parts"):
            store.rmtree(sub)
    elif not store.exists("build.json") and store.listdir("data") and not overwrite:
        raise BuildError(f"{store.out} has data/ but no build.json; pass --overwrite to replace it")
    for sub in ("data", ".parts"):
        store.makedirs(sub)
        store.remove_temporaries(sub)
    store.write_text("build.json", json.dumps(new, indent=2, sort_keys=True))


def build(cfg: BuildConfig, out: str | Path, *, workers: int = 1, overwrite: bool = False,
          backend: str | None = None, scheduler: str | None = None, progress: bool = True) -> dict:
    """Run a (resumable) build into ``out``; returns the summary that is also saved as summary.json."""
    t0 = time.perf_counter()
    store = Store(out)
    pairs, read_rejects = read_source(cfg.source, cfg.root, real_root=cfg.real_root)
    if cfg.source == "demo" and cfg.root is None:
        from ..sources.demo import resolved_root

        cfg = replace(cfg, root=str(resolved_root()))
    pairs = assign_splits(pairs, cfg.split_policy, cfg.seed)
    if not pairs:
        raise BuildError(f"no pairs found for source {cfg.source!r} under {cfg.root} ({len(read_rejects)} files rejected)")
    _prepare_out(store, cfg, overwrite)
    tasks = plan_shards(pairs, cfg.shard_size)
    changed = stale_tasks(store, tasks)
    if changed:
        print(f"annotate build: the corpus changed since the interrupted run: redoing {len(changed)} shard(s) "
              f"whose pairs differ ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})")
    # a shard left from an older plan (different pair list) would be loaded alongside: remove it
    names = {f"{t.name}.parquet" for t in tasks}
    for name in store.listdir("data"):
        if name.endswith(".parquet") and name not in names:
            store.remove(f"data/{name}")
    schema = row_features(pairs, cfg).arrow_schema
    run_tasks(tasks, partial(run_shard, cfg=cfg, schema=schema), store, workers=workers, backend=backend,
              scheduler=scheduler, progress=progress, desc=f"annotate {cfg.source}", unit="pair")
    summary = finalize(store, tasks, read_rejects, pairs_in=len(pairs) + len(read_rejects),
                       seconds_taken=time.perf_counter() - t0, workers=workers, sample_rate=cfg.stft.sample_rate)
    return summary


def finalize(store: Store, tasks: list[ShardTask], read_rejects: list[Reject], *, pairs_in: int,
             seconds_taken: float, workers: int, sample_rate: int) -> dict:
    """Merge shard summaries into ``rejects.jsonl`` and ``summary.json``."""
    parts = [json.loads(store.read_text(f".parts/{t.name}.json")) for t in tasks]
    rejects = [r.to_dict() for r in read_rejects] + [r for p in parts for r in p["rejects"]]
    store.write_text("rejects.jsonl", "".join(json.dumps(r) + "\n" for r in rejects))
    rows_per_split = Counter()
    for p in parts:
        rows_per_split[p["split"]] += p["rows"]
    planned = set(rows_per_split) | set(SPLITS)
    order = {s: i for i, s in enumerate(SPLITS)}
    empty = sorted((s for s in planned if not rows_per_split.get(s)), key=lambda s: (order.get(s, len(order)), s))
    offsets = np.array([o for p in parts for o in p["offsets"]], dtype=np.int64)
    seconds_audio = sum(p["seconds_audio"] for p in parts)
    summary = {
        "pairs_in": pairs_in,
        "rows_out": int(sum(rows_per_split.values())),
        "rows_per_split": dict(sorted(rows_per_split.items())),
        "empty_splits": empty,  # splits without a single row (all their pairs rejected, or none in the corpus)
        "rejects": len(rejects),
        "rejects_by_reason": dict(Counter(reject_kind(r["reason"]) for r in rejects).most_common()),
        "hours_audio": seconds_audio / 3600,
        "seconds_taken": seconds_taken,
        "realtime_factor": seconds_audio / seconds_taken if seconds_taken > 0 else None,
        "workers": workers,
        "shards": len(parts),
        "peak_worker_rss_mb": max((p.get("peak_rss_mb", 0.0) for p in parts), default=0.0),
        "abs_offset_ms_median": float(np.median(np.abs(offsets)) * 1000.0 / sample_rate) if offsets.size else None,
    }
    store.write_text("summary.json", json.dumps(summary, indent=2))
    return summary
