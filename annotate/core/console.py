"""What the four console scripts (annotate, train, explain, benchmark) share: numeric option checks made
before any work, file-system errors as one line saying what to do, and quiet exits on a closed pipe."""
from __future__ import annotations

import errno
import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SIGPIPE_EXIT = 128 + 13  # what a shell reports for a tool killed by SIGPIPE (`... | head`)


class OptionError(ValueError):
    """A command-line option outside its valid range: one line for the user, exit code 2."""


@dataclass(frozen=True)
class Rule:
    """A valid range for one option: ``ok(value)`` must hold; ``text`` says what is allowed."""

    ok: Callable[[object], bool]
    text: str


def at_least(n: float) -> Rule:
    return Rule(lambda v: v >= n, f"must be >= {n}")


def between(lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False) -> Rule:
    """``lo <= v <= hi``, with either end open on request."""
    def ok(v) -> bool:
        return (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)

    return Rule(ok, f"must be in {'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}")


POSITIVE = at_least(1)
NON_NEGATIVE = at_least(0)
PROBABILITY = between(0.0, 1.0)
POSITIVE_FLOAT = Rule(lambda v: v > 0, "must be > 0")
FINITE = Rule(lambda v: v == v and abs(v) != float("inf"), "must be a finite number")


def check_options(args, rules: dict[str, Rule]) -> None:
    """Raise :class:`OptionError` for the first option of ``rules`` (by ``dest``) whose value breaks its rule;
    options left unset (None) are skipped. The message names the flag as typed (``--shard-size``)."""
    for dest, rule in rules.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if isinstance(value, float) and value != value:
            ok = False
        else:
            ok = rule.ok(value)
        if not ok:
            flag = "--" + dest.replace("_", "-")
            raise OptionError(f"{flag} {value}: {rule.text}")


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable(out: str | Path, flag: str = "--out") -> None:
    """Raise :class:`OptionError` when the local folder ``out`` (or the folder that would hold it) cannot be
    written, before any work starts; URLs (``s3://``) are checked by their own client when written."""
    if "://" in str(out):
        return
    p = _nearest_existing(Path(out).expanduser())
    if p.exists() and not p.is_dir():
        raise OptionError(f"{flag} {out}: {p} is a file, not a folder; choose another {flag}")
    if not os.access(p, os.W_OK | os.X_OK):
        raise OptionError(f"{flag} {out}: {p} is not writable; choose a writable {flag} or fix its permissions")


NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def fs_error_line(e: OSError, where: str | Path, *, resumable: bool = False) -> str | None:
    """One line for a file-system error met while writing to ``where``, saying what to do; None for an
    OSError that is not about the disk (then the caller's own handling applies)."""
    rerun = "rerun the same command to resume (finished parts are kept)" if resumable else "rerun the command"
    name = f" ({e.filename})" if getattr(e, "filename", None) else ""
    if e.errno in NO_SPACE:
        return f"no space left on the device holding {where}{name}: free space and {rerun}"
    if e.errno in NOT_WRITABLE:
        what = "read-only file system" if e.errno == errno.EROFS else "permission denied"
        return f"cannot write to {where}{name}: {what}; choose a writable location or fix its permissions, then {rerun}"
    if e.errno in (errno.EIO, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE):
        return f"file-system error writing to {where}{name}: {e.strerror}; fix it and {rerun}"
    return None


def quiet_broken_pipe(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a console script's ``main``: when the reader of stdout goes away (``... | head``), exit quietly
    with the shell's SIGPIPE status instead of a BrokenPipeError traceback, as Unix tools do."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            rc = main(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows up here for output still buffered
            return rc
        except BrokenPipeError:
            try:  # later flushes (at interpreter exit) must not raise again
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return SIGPIPE_EXIT

    return wrapper
