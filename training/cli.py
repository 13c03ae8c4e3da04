"""``train`` console script. Subcommands are a table of (name, "module:attribute") pointing at a
:class:`Command`; another package adds one with a single line in ``SUBCOMMANDS`` (or :func:`register`).
Modules are imported lazily, only for building the parser, so ``train --help`` stays fast."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Callable

from annotate.core.console import quiet_broken_pipe

SUBCOMMANDS: dict[str, str] = {
    "detector": "training.detector.commands:DETECTOR",
    "evaluate": "training.detector.commands:EVALUATE",
    "segdiff": "training.segdiff.commands:SEGDIFF",
    "unet": "training.unet.commands:UNET",
}


@dataclass(frozen=True)
class Command:
    """One subcommand: help text, a function adding its arguments, a function running it (returns the exit code)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def register(name: str, target: str) -> None:
    """Add or replace a subcommand at run time (``target`` = "package.module:ATTRIBUTE" of a Command)."""
    SUBCOMMANDS[name] = target


def _resolve(target: str) -> Command:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train", description="vocmask training: detector and diffusion explainers")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, target in SUBCOMMANDS.items():
        cmd = _resolve(target)
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (FileNotFoundError, ValueError, ImportError) as e:
        if os.environ.get("VOCMASK_DEBUG"):
            raise
        print(f"train {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
