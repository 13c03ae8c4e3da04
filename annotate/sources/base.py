"""What every corpus reader yields: :class:`Pair` (one spoof with its real twin) and :class:`Reject`."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

SPLITS = ("train", "dev", "test")


class SourceError(Exception):
    """A problem with the corpus as a whole (missing root, unknown layout): one line for the user, exit 2."""


@dataclass(frozen=True)
class Pair:
    """One spoof utterance and the real utterance it re-synthesises.

    ``id`` is unique per row (``{vocoder}__{utt_id}``); ``utt_id`` names the real utterance and groups
    every spoof of it (they always share a split). ``split`` is ``None`` when the corpus has no
    official split; :func:`annotate.pipeline.splits.assign_splits` fills it.
    """

    id: str
    utt_id: str
    real_path: str
    spoof_path: str
    vocoder: str
    speaker: str
    source: str
    split: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LabelledSpoof(Pair):
    """A spoof without a real twin, labelled per fixed-length segment (e.g. PartialSpoof's utterances).

    ``real_path`` is empty; ``labels`` has one character per ``segment_seconds`` from the start, ``'1'`` =
    spoofed (vocmask's polarity, whatever the corpus uses). The build writes it with ``frame_labels`` and no
    T-F mask (:mod:`annotate.pipeline.labelled`)."""

    labels: str = ""
    segment_seconds: float = 0.0


@dataclass(frozen=True)
class Reject:
    """A pair or file that was left out, and why (one line in ``rejects.jsonl``)."""

    id: str
    path: str
    reason: str
    stage: str = "read"

    def to_dict(self) -> dict:
        return asdict(self)


def pair_id(vocoder: str, utt_id: str) -> str:
    """The row id of a spoof: vocoder and real utterance id, filesystem safe."""
    return f"{vocoder}__{utt_id}"


def require_dir(path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path or raise a one-line :class:`SourceError` naming what was expected."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise SourceError(f"{what} not found: {p} (pass the folder that holds the corpus as you downloaded it)")
    return p


def dedupe(pairs: Iterable[Pair]) -> tuple[list[Pair], list[Reject]]:
    """Keep the first pair of each id; later duplicates become rejects (the build never writes an id twice)."""
    seen: dict[str, Pair] = {}
    rejects: list[Reject] = []
    for p in pairs:
        if p.id in seen:
            rejects.append(Reject(p.id, p.spoof_path, f"duplicated id (first seen at {seen[p.id].spoof_path})"))
        else:
            seen[p.id] = p
    return list(seen.values()), rejects


def is_dir_loop(path: str | Path) -> bool:
    """True for a symlink to a folder that contains it (or to itself): walking into it never ends."""
    p = Path(path)
    if not p.is_symlink():
        return False
    try:
        target, parent = os.path.realpath(p, strict=True), os.path.realpath(p.parent, strict=True)
    except OSError:  # a loop of links, or dangling
        return False
    return os.path.isdir(target) and (parent == target or parent.startswith(target.rstrip(os.sep) + os.sep))


def scan_files(folder: str | Path, exts: tuple[str, ...], id_of: Callable[[str], str] | None = None,
               skip_hidden: bool = False) -> tuple[list[os.DirEntry], list[Reject]]:
    """Files directly in ``folder`` whose names end with ``exts`` (case-insensitive), sorted by name, and a reject
    for each entry the file system cannot follow: a symlink loop or a dangling link with an audio name, and a
    directory loop (a link to an enclosing folder). ``id_of(name)``: the reject id (default: the name)."""
    id_of = id_of or (lambda name: name)
    files: list[os.DirEntry] = []
    rejects: list[Reject] = []
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if skip_hidden and e.name.startswith("."):
            continue
        audio = e.name.lower().endswith(exts)
        try:
            if e.is_file():
                if audio:
                    files.append(e)
                continue
            if e.is_dir():
                if is_dir_loop(e.path):
                    rejects.append(Reject(id_of(e.name), e.path, f"directory loop: links back to {os.path.realpath(e.path)}"))
                continue
        except OSError as err:  # ELOOP: a link that points (through others) to itself
            if audio:
                rejects.append(Reject(id_of(e.name), e.path, f"unreadable file: {err.strerror or err} (a symlink loop)"))
            continue
        if audio and e.is_symlink():
            rejects.append(Reject(id_of(e.name), e.path, f"dangling symlink: points to missing {os.readlink(e.path)}"))
    return files, rejects
