"""``benchmark merge``: join the parts written by ``explain --shard I/N`` into one submission.

Every check runs before anything is written: each part records its shard ``[I, N]``, its rows ``[lo, hi)`` and
the split's ``total_rows``; the parts must be shards 0..N-1 of one N, each exactly once, with the same method and
dataset metadata; each holds ``hi - lo`` rows; no id appears twice. The joined file lists the parts' rows in shard
order, so it equals what one unsharded ``explain`` writes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa

from annotate.core.submission import SHARD_KEYS, SubmissionWriter, iter_heatmaps

from .submission import SubmissionError, _open, read_ids, read_metadata, submission_files

MEAN_KEYS = ("seconds_per_utterance", "deeplift_convergence_gap_mean")  # per-utterance means of a part: row-weighted
UNION_KEYS = ("attnlrp_plain_gradient_ops",)  # lists a part found: joined
RUN_KEYS = MEAN_KEYS + UNION_KEYS  # per-part measurements, not settings: combined, not compared


def _part_meta(f: Path) -> dict:
    meta = read_metadata(f)
    if not isinstance(meta.get("shard"), list) or "total_rows" not in meta or not isinstance(meta.get("rows"), list):
        raise SubmissionError([f"{f}: not a part of a sharded explain (no shard/rows/total_rows metadata) — "
                               "write parts with `explain ... --shard I/N`"])
    return meta


def check_parts(parts: Sequence[str | Path]) -> list[tuple[Path, dict]]:
    """The part files ordered by shard, after every check (``SubmissionError`` listing the problems otherwise)."""
    files = [f for p in parts for f in submission_files(p)]
    metas = [(f, _part_meta(f)) for f in files]
    problems: list[str] = []
    f0, m0 = metas[0]
    n = int(m0["shard"][1])
    common = {k: v for k, v in m0.items() if k not in SHARD_KEYS + RUN_KEYS}
    by_index: dict[int, Path] = {}
    for f, m in metas:
        i, ni = (int(v) for v in m["shard"])
        if ni != n or m["total_rows"] != m0["total_rows"]:
            problems.append(f"{f}: shard {i}/{ni} of {m['total_rows']} rows, but {f0} is a shard of {n} parts of "
                            f"{m0['total_rows']} rows — merge the parts of one sharded run")
            continue
        if i in by_index:
            problems.append(f"{f}: shard {i}/{n} given twice (also {by_index[i]}) — pass each part once")
            continue
        by_index[i] = f
        other = {k: v for k, v in m.items() if k not in SHARD_KEYS + RUN_KEYS}
        diff = sorted(k for k in set(common) | set(other) if common.get(k) != other.get(k))
        if diff:
            problems.append(f"{f}: metadata {', '.join(diff)} differ(s) from {f0} ({diff[0]}: {other.get(diff[0])!r} vs "
                            f"{common.get(diff[0])!r}) — merge parts of the same method, settings and dataset")
    missing = sorted(set(range(n)) - set(by_index))
    if missing:
        problems.append(f"shard(s) {', '.join(f'{i}/{n}' for i in missing)} missing — run `explain ... --shard I/{n}` for them")
    if problems:
        raise SubmissionError(problems)
    ordered = [(by_index[i], dict(metas[files.index(by_index[i])][1])) for i in range(n)]
    seen: dict[str, Path] = {}
    for f, m in ordered:
        ids = read_ids([f])
        lo, hi = m["rows"]
        if len(ids) != hi - lo:
            problems.append(f"{f}: {len(ids)} rows, but shard {m['shard'][0]}/{n} covers rows {lo}..{hi - 1} ({hi - lo}) "
                            "— the part is incomplete; run its explain again")
        for rid in ids:
            if rid in seen:
                problems.append(f"{f}: id {rid!r} also in {seen[rid]} — every id must be in exactly one part")
            seen[rid] = f
    if problems:
        raise SubmissionError(problems[:20])
    return ordered


def merge(parts: Sequence[str | Path], out: str | Path) -> Path:
    """Check the parts and write them, in shard order, as one submission ``out``; returns ``out``."""
    ordered = check_parts(parts)
    meta = {k: v for k, v in ordered[0][1].items() if k not in SHARD_KEYS + RUN_KEYS}
    rows = [m["rows"][1] - m["rows"][0] for _, m in ordered]
    for key in MEAN_KEYS:
        given = [(m[key], r) for (_, m), r in zip(ordered, rows) if key in m]
        if given and sum(r for _, r in given):
            meta[key] = sum(v * r for v, r in given) / sum(r for _, r in given)
    for key in UNION_KEYS:
        found = [m[key] for _, m in ordered if key in m]
        if found:
            meta[key] = sorted(set().union(*found))
    t = _open(ordered[0][0]).schema_arrow.field("heatmap").type
    t = t.storage_type if isinstance(t, pa.ExtensionType) else t
    ndim = 2 if pa.types.is_list(t.value_type) or pa.types.is_large_list(t.value_type) else 1
    with SubmissionWriter(out, meta, ndim=ndim) as w:
        for rid, heat, problem in iter_heatmaps([f for f, _ in ordered]):
            if problem is not None:
                raise SubmissionError([f"row {rid}: heatmap is {problem} — run that part's explain again"])
            w.write(rid, heat)
    return Path(out)
