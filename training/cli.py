"""``train`` console script: one :class:`~annotate.core.commands.Command` per subcommand, defined in each
trainer's light ``commands`` module (torch is imported only when a command runs)."""
from __future__ import annotations

import argparse
import sys

from annotate.core.commands import Command, command_parser, run_cli
from annotate.core.console import quiet_broken_pipe

__all__ = ["Command", "build_parser", "commands", "main"]


def commands() -> dict[str, Command]:
    """The subcommands, in help order."""
    from .detector.commands import DETECTOR, EVALUATE
    from .segdiff.commands import SEGDIFF
    from .unet.commands import UNET

    return {"detector": DETECTOR, "evaluate": EVALUATE, "segdiff": SEGDIFF, "unet": UNET}


def build_parser() -> argparse.ArgumentParser:
    return command_parser("train", "vocmask training: detector and diffusion explainers", commands())


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    return run_cli("train", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
