"""``train segdiff`` as a :class:`training.cli.Command` (register: ``"segdiff": "training.segdiff.commands:SEGDIFF"``)."""
from __future__ import annotations

from training.cli import Command

from .cli import HELP, add_arguments, run

SEGDIFF = Command(help=HELP, add_arguments=add_arguments, run=run)
