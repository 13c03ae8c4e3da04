"""``train segdiff`` as a :class:`annotate.core.commands.Command` (listed in training/cli.py)."""
from __future__ import annotations

from annotate.core.commands import Command

from .cli import HELP, add_arguments, run

SEGDIFF = Command(help=HELP, add_arguments=add_arguments, run=run)
