"""The one pattern of the four console scripts (annotate, train, explain, benchmark): subcommands are
:class:`Command` records in light modules (arguments added when the parser is built, heavy libraries imported
inside ``run``), and :func:`run_cli` is the one error handler: a user error is one line on stderr and exit
status 2; ``VOCMASK_DEBUG=1`` lets the traceback through instead."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Callable, Mapping

# errors that mean bad input (options, paths, data), not a bug: reported as one line
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError, ImportError)


@dataclass(frozen=True)
class Command:
    """One subcommand: help text, a function adding its arguments, a function running it (returns the exit code)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


def command_parser(prog: str, description: str, commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """A parser with one subparser per entry of ``commands`` (name -> Command), in that order."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, cmd in commands.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.description or cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def debug() -> bool:
    """Whether ``VOCMASK_DEBUG`` asks for tracebacks instead of one-line errors."""
    return os.environ.get("VOCMASK_DEBUG", "") not in ("", "0")


def error_lines(e: BaseException) -> list[str]:
    """The lines that report ``e``: its message (a KeyError's key without quotes), one line per problem."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    return str(msg).splitlines() or [type(e).__name__]


def run_cli(prog: str, parser: argparse.ArgumentParser, argv: list[str] | None = None,
            errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parse ``argv`` and run the chosen command (the parser's ``_run`` default); an error of
    :data:`USER_ERRORS` or ``errors`` prints ``PROG [CMD]: error: MESSAGE`` and returns 2."""
    a = parser.parse_args(argv)
    label = f"{prog} {a.cmd}" if getattr(a, "cmd", None) else prog
    try:
        return int(a._run(a) or 0)
    except USER_ERRORS + errors as e:
        if debug():
            raise
        for line in error_lines(e):
            print(f"{label}: error: {line}", file=sys.stderr)
        return 2
