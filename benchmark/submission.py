"""Submissions: reading (pyarrow only, never pickle) and the checks that run before scoring.

A submission is a Parquet file, or a folder of them, with columns ``id`` (string) and ``heatmap``
(floats, ``(frames, 257)`` time-first on the row's mask grid) stored as ``list<list<float>>`` or
a ``datasets`` ``Array2D`` column. Method metadata (name, parameters, ...) is JSON in the Parquet
schema metadata under the key ``b"vocmask"``. The format and the writer (``write_submission``,
``SubmissionWriter``) live in :mod:`annotate.core.submission` and are re-exported here.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from annotate.core.submission import (  # noqa: F401  (re-exported: the format and writer)
    META_KEY,
    SubmissionWriter,
    _offsets,
    decode_2d,
    heatmap_type,
    heatmaps_to_arrow,
    iter_file_heatmaps,
    submission_schema,
    write_submission,
)

_heatmap_type = heatmap_type  # old private name
SHOW = 5  # ids named per message
FLOAT_TYPES = (pa.float16(), pa.float32(), pa.float64())


class SubmissionError(Exception):
    """An invalid submission; ``problems`` holds one clear line per kind of problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# ----------------------------------------------------------------------------------------------- reading


def submission_files(path: str | Path) -> list[Path]:
    """The Parquet files of a submission: the file itself, or every ``*.parquet`` under a folder."""
    p = Path(path)
    if p.is_dir():
        files = sorted(q for q in p.rglob("*.parquet") if q.is_file())
        if not files:
            raise SubmissionError([f"{p}: folder holds no *.parquet file — a submission is a Parquet file or a folder of them"])
        return files
    if not p.exists():
        raise SubmissionError([f"{p}: no such file or folder — pass the submission's Parquet file"])
    return [p]


def _storage(t: pa.DataType) -> pa.DataType:
    return t.storage_type if isinstance(t, pa.ExtensionType) else t


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _open(f: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(f)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for non-Parquet bytes
        raise SubmissionError([f"{f}: not a readable Parquet file ({type(e).__name__}: {str(e).splitlines()[0][:160]})"]) from None


def check_schema(files: Sequence[Path]) -> list[str]:
    """Column presence and types of every file: ``id`` string, ``heatmap`` 2-D nested list of floats."""
    problems = []
    for f in files:
        schema = _open(f).schema_arrow
        names = schema.names
        missing = [c for c in ("id", "heatmap") if c not in names]
        if missing:
            problems.append(
                f"{f}: missing column(s) {', '.join(missing)} (has: {', '.join(names) or 'none'}) — "
                "a submission needs 'id' (string) and 'heatmap' (frames x 257 floats)"
            )
            continue
        id_t = _storage(schema.field("id").type)
        if not (pa.types.is_string(id_t) or pa.types.is_large_string(id_t)):
            problems.append(f"{f}: column 'id' has type {id_t}; expected string — write the dataset's ids as strings")
        t = _storage(schema.field("heatmap").type)
        if not (_is_list(t) and _is_list(t.value_type)):
            problems.append(
                f"{f}: column 'heatmap' has type {t}; expected a 2-D list<list<float>> or Array2D (frames x 257, time first)"
            )
        elif t.value_type.value_type not in FLOAT_TYPES:
            problems.append(
                f"{f}: column 'heatmap' holds {t.value_type.value_type} values (wrong dtype) for all its rows; "
                "expected float16/float32/float64 — cast the heatmaps to float32 before writing"
            )
    return problems


def read_metadata(path: str | Path) -> dict:
    """Method metadata (JSON under ``b"vocmask"``) of the submission's first file that has it; ``{}`` if none."""
    for f in submission_files(path):
        meta = _open(f).schema_arrow.metadata or {}
        if META_KEY in meta:
            try:
                value = json.loads(meta[META_KEY])
            except json.JSONDecodeError:
                raise SubmissionError([f"{f}: schema metadata b'vocmask' is not valid JSON — write it with write_submission"]) from None
            return value if isinstance(value, dict) else {"metadata": value}
    return {}


def read_ids(files: Sequence[Path]) -> list[str | None]:
    """Every ``id`` of the submission, in file order (only that column is read)."""
    out: list[str | None] = []
    for f in files:
        out.extend(pq.read_table(f, columns=["id"]).column("id").to_pylist())
    return out


def iter_heatmaps(files: Sequence[Path], batch_rows: int = 256) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """``(id, heatmap, problem)`` for every row, one record batch at a time (bounded memory); unreadable files
    raise :class:`SubmissionError`."""
    for f in files:
        yield from iter_file_heatmaps(_open(f), batch_rows)


# ----------------------------------------------------------------------------------------------- checks


@dataclass
class ProblemLog:
    """Collects offending ids per kind of problem and renders one message per kind."""

    errors: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    warnings: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def error(self, kind: str, id: str, detail: str = "") -> None:
        self.errors.setdefault(kind, []).append((str(id), detail))

    def warn(self, kind: str, id: str, detail: str = "") -> None:
        self.warnings.setdefault(kind, []).append((str(id), detail))

    @property
    def ok(self) -> bool:
        return not self.errors

    @staticmethod
    def _render(kind: str, items: list[tuple[str, str]]) -> str:
        head, hint = MESSAGES[kind]
        named = ", ".join(f"{i} ({d})" if d else i for i, d in items[:SHOW])
        more = f", ... and {len(items) - SHOW} more" if len(items) > SHOW else ""
        return f"{len(items)} {head}: {named}{more} — {hint}"

    def error_messages(self) -> list[str]:
        return [self._render(k, v) for k, v in self.errors.items()]

    def warning_messages(self) -> list[str]:
        return [self._render(k, v) for k, v in self.warnings.items()]


MESSAGES = {
    "missing": ("dataset id(s) have no heatmap (missing ids)", "write a heatmap for every id of the split"),
    "extra": ("submitted id(s) are not in the split (extra ids)", "remove them, or check --dataset/--split"),
    "duplicate": ("id(s) appear more than once (duplicate ids)", "write each id exactly once"),
    "null_id": ("row(s) have a null id", "every row needs the dataset row's id"),
    "null": ("heatmap(s) are null", "write a (frames x 257) float array for every id"),
    "ragged": ("heatmap(s) are ragged (rows of different lengths)", "write a rectangular (frames x 257) array"),
    "shape": (
        "heatmap(s) have the wrong shape",
        "a heatmap must be on its row's mask grid (frames x 257, time first; transpose a (257, frames) map)",
    ),
    "nonfinite": ("heatmap(s) contain NaN or inf values", "replace non-finite values before writing"),
    "constant": (
        "heatmap(s) are constant",
        "a constant heatmap binarises to an empty map: its F1, IoU and FBound are 0",
    ),
    "constant_temporal": (
        "temporal map(s) are constant",
        "a constant map ranks every frame alike (AUC 50) and normalises to all zeros (IoU and F1 are 0)",
    ),
}


def check_ids(sub_ids: Sequence[str | None], expected: Sequence[str], log: ProblemLog) -> None:
    """Missing, extra, duplicate and null ids against the split's ids (in the split's order)."""
    counts = Counter(sub_ids)
    if counts.pop(None, 0):
        for j, s in enumerate(sub_ids):
            if s is None:
                log.error("null_id", f"row #{j}")
    expected_set = set(expected)
    for i in expected:
        if i not in counts:
            log.error("missing", i)
    for i, n in counts.items():
        if i not in expected_set:
            log.error("extra", i)
        if n > 1:
            log.error("duplicate", i, f"{n} times")


def checked_files(sub: str | Path, check: Callable[[Sequence[Path]], list[str]] = check_schema) -> list[Path]:
    """The submission's Parquet files; :class:`SubmissionError` listing what ``check`` (the track's schema check) finds."""
    files = submission_files(sub)
    problems = check(files)
    if problems:
        raise SubmissionError(problems)
    return files


def checked_ids(sub_ids: Sequence[str | None], expected: Sequence[str]) -> ProblemLog:
    """A log holding the id checks' warnings; :class:`SubmissionError` when an id is missing, extra, null or twice."""
    log = ProblemLog()
    check_ids(sub_ids, expected, log)
    if not log.ok:
        raise SubmissionError(log.error_messages())
    return log


def validate_maps(files: Sequence[Path], expected: Sequence[str], maps: Iterable[tuple[str, object, str | None]],
                  check_one: Callable[[str, object, str | None, ProblemLog], object]) -> list[str]:
    """The validation loop of both tracks: the ids, then ``check_one`` on each map of an expected id;
    returns the warnings, raises :class:`SubmissionError` on errors (schema checks come before)."""
    log = checked_ids(read_ids(files), expected)
    index = set(expected)
    for i, h, problem in maps:
        if i in index:
            check_one(i, h, problem, log)
    if not log.ok:
        raise SubmissionError(log.error_messages())
    return log.warning_messages()


def check_heatmap(id: str, heatmap: np.ndarray | None, problem: str | None, expected_shape: tuple, log: ProblemLog,
                  *, shape_text: str | None = None, constant: str = "constant") -> bool:
    """Shape, finiteness and constancy of one heatmap; returns True when it can be scored.

    ``shape_text``: how the expected shape is said in the error (default: the tuple); ``constant``: the warning
    kind of a constant heatmap."""
    if problem is not None:
        if problem == "null":
            log.error("null", id)
        else:
            log.error("ragged", id, problem.removeprefix("ragged: "))
        return False
    if tuple(heatmap.shape) != tuple(expected_shape):
        log.error("shape", id, f"expected {shape_text or tuple(expected_shape)}, got {tuple(heatmap.shape)}")
        return False
    finite = np.isfinite(heatmap)
    if not finite.all():
        log.error("nonfinite", id, f"{int(finite.size - np.count_nonzero(finite))} values")
        return False
    if heatmap.size and heatmap.min() == heatmap.max():
        log.warn(constant, id)
    return True
