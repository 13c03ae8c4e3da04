"""The embedded demo corpus: generated on first use (offline, deterministic) in the LibriSeVoc layout,
then read with the LibriSeVoc reader. ``--root`` picks where it lives (default: the vocmask cache)."""
from __future__ import annotations

from pathlib import Path

from ..base import Pair, Reject
from .. import librisevoc


def resolved_root(root: str | Path | None = None) -> Path:
    """Where the demo corpus lives: ``root`` if given, else :func:`annotate.sources.demo.corpus.default_root`."""
    from .corpus import default_root

    return Path(root) if root is not None else default_root()


def read(root: str | Path | None = None, *, real_root: str | Path | None = None) -> tuple[list[Pair], list[Reject]]:
    """Generate the demo corpus if needed, then list its pairs (source = "demo")."""
    import json

    from .corpus import MARKER, REVISION, ensure

    base = resolved_root(root)
    marker = base / MARKER
    try:  # a finished corpus of the current generator revision is used as it is, whatever its size
        current = json.loads(marker.read_text()).get("revision") == REVISION
    except (OSError, ValueError):
        current = False
    if not current:
        import sys

        print(f"annotate: generating the demo corpus in {base} (first run only: ~40 CPU-seconds)", file=sys.stderr, flush=True)
        ensure(base)
    return librisevoc.read(base, source="demo")
