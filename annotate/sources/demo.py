"""The embedded demo corpus: generated on first use (offline, deterministic) in the LibriSeVoc layout,
then read with the LibriSeVoc reader. ``--root`` picks where it lives (default: the vocmask cache)."""
from __future__ import annotations

from pathlib import Path

from .base import Pair, Reject
from . import librisevoc


def resolved_root(root: str | Path | None = None) -> Path:
    """Where the demo corpus lives: ``root`` if given, else :func:`annotate.demo.default_root`."""
    from ..demo import default_root

    return Path(root) if root is not None else default_root()


def read(root: str | Path | None = None, *, real_root: str | Path | None = None) -> tuple[list[Pair], list[Reject]]:
    """Generate the demo corpus if needed, then list its pairs (source = "demo")."""
    from ..demo import ensure

    base = resolved_root(root)
    if not (base / ".complete").exists():  # a finished corpus (whatever its size) is used as it is
        ensure(base)
    return librisevoc.read(base, source="demo")
