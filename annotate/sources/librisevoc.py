"""LibriSeVoc reader.

Layout as downloaded (24 kHz WAV)::

    LibriSeVoc/gt/{ID}.wav                     real LibriTTS utterances, e.g. 27_123349_000006_000000
    LibriSeVoc/{vocoder}/{ID}_gen.wav          one folder per vocoder (diffwave, melgan, ...)
    LibriSeVoc/{train,dev,test}.txt            official split lists naming gt files (optional)

Every sibling folder of ``gt/`` is a vocoder. ``root`` may be the LibriSeVoc folder or its parent.
Speaker = first field of the id. Speakers overlap across the official splits; use
``--split-policy speaker`` for a speaker-disjoint split.
"""
from __future__ import annotations

import os
from pathlib import Path

from .base import SPLITS, Pair, Reject, SourceError, dedupe, is_dir_loop, pair_id, require_dir, scan_files

AUDIO_EXTS = (".wav", ".flac")
SPOOF_SUFFIX = "_gen"


def find_root(root: str | Path | None) -> Path:
    """The folder that holds ``gt/``: ``root`` itself or ``root/LibriSeVoc``."""
    if root is None:
        raise SourceError("--root is required for --source librisevoc (the folder holding gt/ and the vocoder folders)")
    base = require_dir(root, "LibriSeVoc root")
    for cand in (base, base / "LibriSeVoc"):
        if (cand / "gt").is_dir():
            return cand
    raise SourceError(f"no gt/ folder under {base}: expected LibriSeVoc/gt/{{ID}}.wav and LibriSeVoc/{{vocoder}}/{{ID}}_gen.wav")


def _audio_files(folder: Path, rejects: list[Reject], id_of=None) -> list[os.DirEntry]:
    """Audio files of ``folder``; entries the file system cannot follow (link loops, dangling links) go to ``rejects``."""
    files, bad = scan_files(folder, AUDIO_EXTS, id_of)
    rejects += bad
    return files


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def read_split_lists(folder: Path, known: set[str]) -> dict[str, str]:
    """utt_id -> split from ``{train,dev,test}.txt`` (any token whose file stem is a known id counts)."""
    out: dict[str, str] = {}
    for split in SPLITS:
        f = folder / f"{split}.txt"
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            for tok in line.replace(",", " ").split():
                stem = _stem(os.path.basename(tok.strip()))
                if stem.endswith(SPOOF_SUFFIX):
                    stem = stem[: -len(SPOOF_SUFFIX)]
                if stem in known:
                    out.setdefault(stem, split)
    return out


def read(root: str | Path | None, *, real_root: str | Path | None = None, source: str = "librisevoc") -> tuple[list[Pair], list[Reject]]:
    """List every (real, spoof) pair of a LibriSeVoc download."""
    base = find_root(root)
    rejects: list[Reject] = []
    reals = {_stem(e.name): e.path for e in _audio_files(base / "gt", rejects, lambda n: f"gt/{_stem(n)}")}
    splits = read_split_lists(base, set(reals))
    folders = sorted(d for d in base.iterdir() if d.is_dir() and d.name != "gt" and not d.name.startswith("."))
    rejects += [Reject(d.name, str(d), f"directory loop: links back to {d.resolve()}") for d in folders if is_dir_loop(d)]
    vocoders = [d.name for d in folders if not is_dir_loop(d)]
    pairs: list[Pair] = []
    for voc in vocoders:
        def spoof_id(name: str, voc: str = voc) -> str:
            stem = _stem(name)
            return pair_id(voc, stem[: -len(SPOOF_SUFFIX)] if stem.endswith(SPOOF_SUFFIX) else stem)

        for e in _audio_files(base / voc, rejects, spoof_id):
            stem = _stem(e.name)
            utt = stem[: -len(SPOOF_SUFFIX)] if stem.endswith(SPOOF_SUFFIX) else stem
            pid = pair_id(voc, utt)
            if utt not in reals:
                rejects.append(Reject(pid, e.path, f"no real twin: expected {base / 'gt' / (utt + '.wav')}"))
                continue
            pairs.append(Pair(pid, utt, reals[utt], e.path, voc, utt.split("_")[0], source, splits.get(utt)))
    pairs, dups = dedupe(pairs)
    return sorted(pairs, key=lambda p: p.id), rejects + dups
