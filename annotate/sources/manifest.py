"""Manifest reader: the escape hatch for any parallel corpus, one CSV/TSV row per (real, spoof) pair.

``ROOT`` is the manifest file, or a folder holding ``manifest.csv`` / ``manifest.tsv``. The delimiter
(comma, tab or semicolon) is sniffed from the header, which must name at least::

    real_path, spoof_path, vocoder, speaker            required (any order, case-insensitive)
    split                                               optional: train/dev/test (val, valid, eval accepted), empty = unassigned
    id, utt_id                                          optional: default utt_id = real file stem, id = {vocoder}__{utt_id}

Relative paths are relative to the manifest's folder (relative ``real_path`` values to ``--real-root``
when one is given). A row whose spoof or real file is missing, or with an empty vocoder or an
unknown split, becomes a reject; an empty speaker reads ``unknown``.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .base import SPLITS, Pair, Reject, SourceError, dedupe, pair_id, require_dir

SOURCE = "manifest"
REQUIRED = ("real_path", "spoof_path", "vocoder", "speaker")
SPLIT_ALIASES = {"val": "dev", "valid": "dev", "validation": "dev", "eval": "test", "evaluation": "test"}
UNKNOWN_SPEAKER = "unknown"


def find_manifest(root: str | Path | None) -> Path:
    """The manifest file: ``root`` itself or ``root/manifest.csv`` / ``root/manifest.tsv``."""
    if root is None:
        raise SourceError("--root is required for --source manifest (a CSV/TSV file with real_path, spoof_path, vocoder, speaker)")
    p = Path(root).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise SourceError(f"manifest not found: {p} (pass a CSV/TSV file, or a folder holding manifest.csv)")
    folder = p
    for name in ("manifest.csv", "manifest.tsv"):
        if (folder / name).is_file():
            return folder / name
    raise SourceError(f"no manifest.csv or manifest.tsv in {folder}: pass the manifest file itself as --root")


def sniff_delimiter(header: str) -> str:
    """The delimiter of a header line: whichever of tab, comma, semicolon it uses most (comma if none)."""
    counts = {d: header.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _resolve(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def read(root: str | Path | None, *, real_root: str | Path | None = None, source: str = SOURCE) -> tuple[list[Pair], list[Reject]]:
    """List the pairs of a manifest; rows that cannot become a pair are rejects, never a crash."""
    path = find_manifest(root)
    base = path.parent
    real_base = require_dir(real_root, "real root (--real-root)") if real_root is not None else base
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise SourceError(f"empty manifest {path}: expected a header {', '.join(REQUIRED)}[, split]")
    reader = csv.DictReader(io.StringIO(text), delimiter=sniff_delimiter(lines[0]))
    cols = {(c or "").strip().lower(): c for c in (reader.fieldnames or [])}
    missing = [c for c in REQUIRED if c not in cols]
    if missing:
        raise SourceError(f"manifest {path} lacks column(s) {', '.join(missing)} "
                          f"(header has: {', '.join(c for c in cols if c) or 'nothing'})")

    pairs: list[Pair] = []
    rejects: list[Reject] = []
    for row in reader:
        get = {k: (row.get(orig) or "").strip() for k, orig in cols.items()}
        if not any(get.values()):
            continue  # blank line
        real_s, spoof_s, vocoder = get["real_path"], get["spoof_path"], get["vocoder"]
        where = f"{path.name} line {reader.line_num}"
        if not spoof_s or not real_s:
            rejects.append(Reject(get.get("id") or where, spoof_s or where, f"{where}: empty real_path or spoof_path"))
            continue
        spoof = _resolve(spoof_s, base)
        real = _resolve(real_s, real_base)
        utt = get.get("utt_id") or real.stem
        pid = get.get("id") or pair_id(vocoder, utt)
        if not vocoder:
            rejects.append(Reject(pid, str(spoof), f"{where}: empty vocoder"))
            continue
        split_s = get.get("split", "").lower()
        split = SPLIT_ALIASES.get(split_s, split_s) or None
        if split is not None and split not in SPLITS:
            rejects.append(Reject(pid, str(spoof), f"{where}: unknown split {split_s!r} (use train, dev, test or leave empty)"))
            continue
        if not spoof.is_file():
            rejects.append(Reject(pid, str(spoof), f"spoof file missing: {spoof} ({where})"))
            continue
        if not real.is_file():
            rejects.append(Reject(pid, str(spoof), f"no real twin: expected {real} ({where})"))
            continue
        pairs.append(Pair(pid, utt, str(real), str(spoof), vocoder, get["speaker"] or UNKNOWN_SPEAKER, source, split))
    pairs, dups = dedupe(pairs)  # manifest order decides which duplicate is kept
    return sorted(pairs, key=lambda p: p.id), rejects + dups
