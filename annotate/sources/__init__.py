"""Corpus readers, one module per corpus (in the spirit of Lhotse's recipes).

Each module exposes ``read(root, *, real_root=None) -> (list[Pair], list[Reject])`` that lists the
pairs of the corpus exactly as users download it, without decoding audio. A corpus without real twins
but with its own segment labels (PartialSpoof) yields :class:`LabelledSpoof` items instead.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from .base import LabelledSpoof, Pair, Reject, SourceError, pair_id

SOURCES = ("librisevoc", "vocv4", "wavefake", "codecfake", "partialspoof", "manifest", "demo")


def read_source(name: str, root: str | Path | None, *, real_root: str | Path | None = None) -> tuple[list[Pair], list[Reject]]:
    """Dispatch to ``annotate.sources.<name>.read``; unknown names raise a one-line :class:`SourceError`."""
    if name not in SOURCES:
        raise SourceError(f"unknown source {name!r}: choose one of {', '.join(SOURCES)}")
    module = importlib.import_module(f"annotate.sources.{name}")
    return module.read(root, real_root=real_root)


__all__ = ["LabelledSpoof", "Pair", "Reject", "SourceError", "SOURCES", "pair_id", "read_source"]
