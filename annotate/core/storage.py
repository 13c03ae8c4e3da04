"""Where a build writes: a local folder or any fsspec URL (``s3://bucket/ds``, ``gs://...``, ``memory://``).

Workers write their shards straight to the output location, so a cluster build needs no shared disk
and the driver only gathers small summaries. Every write is atomic: local files go through a
temporary name and ``os.replace``; remote files are uploaded whole (a single PUT on object stores)
from a local temporary file, so a killed worker never leaves a half shard under a final name.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def is_url(out: str | Path) -> bool:
    """True for fsspec URLs other than plain local paths (``file://`` counts as a URL)."""
    return "://" in str(out)


class Store:
    """A dataset folder addressed by relative paths (``data/x.parquet``, ``.parts/x.json``)."""

    def __init__(self, out: str | Path):
        self.out = str(out)
        if is_url(out):
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(self.out)
            self.root = self.root.rstrip("/")
        else:
            self.fs, self.root = None, str(Path(out).expanduser())

    @property
    def local(self) -> bool:
        return self.fs is None

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def exists(self, rel: str = "") -> bool:
        return os.path.exists(self.path(rel)) if self.local else self.fs.exists(self.path(rel))

    def makedirs(self, rel: str = "") -> None:
        if self.local:
            os.makedirs(self.path(rel), exist_ok=True)
        else:
            self.fs.makedirs(self.path(rel), exist_ok=True)

    def listdir(self, rel: str) -> list[str]:
        """File names (not paths) directly inside ``rel``; empty if it does not exist."""
        if not self.exists(rel):
            return []
        if self.local:
            return sorted(os.listdir(self.path(rel)))
        return sorted(os.path.basename(p.rstrip("/")) for p in self.fs.ls(self.path(rel), detail=False))

    def read_text(self, rel: str) -> str:
        if self.local:
            return Path(self.path(rel)).read_text()
        with self.fs.open(self.path(rel), "r") as f:
            return f.read()

    def write_text(self, rel: str, text: str) -> None:
        """Atomic text write."""
        if self.local:
            p = Path(self.path(rel))
            tmp = p.with_name(p.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, p)
        else:
            self.fs.pipe_file(self.path(rel), text.encode())

    def remove(self, rel: str) -> None:
        if self.local:
            Path(self.path(rel)).unlink(missing_ok=True)
        elif self.fs.exists(self.path(rel)):
            self.fs.rm(self.path(rel))

    def rmtree(self, rel: str) -> None:
        if self.local:
            shutil.rmtree(self.path(rel), ignore_errors=True)
        elif self.fs.exists(self.path(rel)):
            self.fs.rm(self.path(rel), recursive=True)

    def remove_temporaries(self, rel: str) -> None:
        """Delete ``*.tmp`` leftovers of a killed run (local stores only; remote writes are whole)."""
        if self.local:
            for name in self.listdir(rel):
                if name.endswith(".tmp"):
                    self.remove(f"{rel}/{name}")

    @contextmanager
    def writing(self, rel: str) -> Iterator[str]:
        """Yield a local temporary path to write; on success it becomes ``rel`` atomically."""
        if self.local:
            final = Path(self.path(rel))
            tmp = final.with_name(final.name + ".tmp")
            try:
                yield str(tmp)
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            fd, tmp = tempfile.mkstemp(suffix=".tmp", prefix="vocmask-")
            os.close(fd)
            try:
                yield tmp
                self.fs.put_file(tmp, self.path(rel))
            finally:
                os.unlink(tmp)
