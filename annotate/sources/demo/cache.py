"""Where the demo corpus lives (the vocmask cache) and generating it there once: :func:`ensure` builds it in a
sibling temporary folder and renames it into place, so concurrent processes and killed runs leave no half corpus."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from .config import MARKER, VERSION, DemoConfig
from .corpus import check_target, generate


def default_root() -> Path:
    """Where the demo corpus lives by default: ``$VOCMASK_CACHE/demo-v1`` or ``~/.cache/vocmask/demo-v1``."""
    cache = os.environ.get("VOCMASK_CACHE")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache" / "vocmask"
    return base / VERSION


def is_complete(root: str | Path, **kw) -> bool:
    """True when ``root`` holds a finished demo corpus made with these parameters."""
    marker = Path(root).expanduser() / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == DemoConfig(**{k: (tuple(v) if k == "vocoders" else v) for k, v in kw.items()}).to_dict()
    except (json.JSONDecodeError, OSError):
        return False



def ensure(root: str | Path | None = None, **kw) -> Path:
    """Return ``root`` (default :func:`default_root`) holding the demo corpus, generating it if it is missing or
    was made with other parameters. Built in a sibling temporary folder, then renamed into place."""
    root = Path(root).expanduser() if root is not None else default_root()
    if "vocoders" in kw:
        kw["vocoders"] = tuple(kw["vocoders"])
    cfg = DemoConfig(**kw)
    if is_complete(root, **kw):
        return root
    check_target(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        generate(tmp, n_speakers=cfg.n_speakers, utts_per_speaker=cfg.utts_per_speaker, seed=cfg.seed,
                 sample_rate=cfg.sample_rate, vocoders=cfg.vocoders)
        if is_complete(root, **kw):  # another process finished the same corpus meanwhile
            return root
        trash = None
        if root.exists():
            trash = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(root, trash)
        try:
            os.replace(tmp, root)
        except OSError:  # another process installed one meanwhile
            if not is_complete(root, **kw):
                raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
