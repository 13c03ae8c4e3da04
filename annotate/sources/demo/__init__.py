"""The embedded demo corpus: generated on first use (offline, deterministic) in the LibriSeVoc layout,
then read with the LibriSeVoc reader. ``--root`` picks where it lives (default: the vocmask cache).

Modules: ``config`` (version, revision, :class:`DemoConfig`), ``synth`` (the speech synthesiser), ``vocoders``
(Griffin-Lim and the framing effects; WORLD, LPC and codecs come from :mod:`annotate.pipeline.vocoders`),
``corpus`` (writing a corpus: ids, splits, truth.json), ``cache`` (where it lives, generating it once)."""
from __future__ import annotations

from pathlib import Path

from ...pipeline.vocoders import logmag_offset  # the offset search tests check truth.json with
from .. import librisevoc
from ..base import Pair, Reject
from .cache import default_root, ensure, is_complete
from .config import HOP, MARKER, REVISION, VERSION, VOCODERS, DemoConfig, DemoError
from .corpus import assign_splits, generate, load_truth, utterance_ids
from .synth import make_speakers, synth_utterance
from .vocoders import frame_effects

__all__ = ["HOP", "MARKER", "REVISION", "VERSION", "VOCODERS", "DemoConfig", "DemoError", "assign_splits",
           "default_root", "ensure", "frame_effects", "generate", "is_complete", "load_truth", "logmag_offset",
           "make_speakers", "read", "resolved_root", "synth_utterance", "utterance_ids"]


def resolved_root(root: str | Path | None = None) -> Path:
    """Where the demo corpus lives: ``root`` if given, else :func:`default_root`."""
    return Path(root) if root is not None else default_root()


def read(root: str | Path | None = None, *, real_root: str | Path | None = None) -> tuple[list[Pair], list[Reject]]:
    """Generate the demo corpus if needed, then list its pairs (source = "demo")."""
    import json

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
