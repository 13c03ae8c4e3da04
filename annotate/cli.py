"""The ``annotate`` command: build, resynth, show, stats, ids, partial, card, publish."""
from __future__ import annotations

import argparse
import json
import sys

from .core.commands import Command, command_parser, run_cli
from .core.console import quiet_broken_pipe
from .hub.commands import CARD, PUBLISH
from .pipeline.commands import BUILD, PARTIAL, RESYNTH

EXAMPLE_ID = "griffinlim__4706_68436_000011_000000"  # a test row of the default demo (tests check it exists)


def _show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset")
    p.add_argument("--id", required=True, help=f"row id (e.g. {EXAMPLE_ID} in the demo; list them with `annotate ids DS`)")
    p.add_argument("-o", "--output", default=None, help="PNG path (default: {id}.png)")


def _stats_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset")
    p.add_argument("--json", action="store_true")


def _ids_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset")
    p.add_argument("--split", default=None, help="only this split (train, dev, test)")
    p.add_argument("--vocoder", default=None, help="only this vocoder")


def _run_ids(a: argparse.Namespace) -> int:
    from .show import list_ids

    ids = list_ids(a.dataset, a.split, a.vocoder)
    if not ids:
        raise ValueError(f"no rows in {a.dataset}" + (f" for split {a.split!r}" if a.split else "")
                         + (f" and vocoder {a.vocoder!r}" if a.vocoder else "") + " (see `annotate stats`)")
    sys.stdout.write("".join(f"{i}\n" for i in ids))
    return 0


def _run_show(a: argparse.Namespace) -> int:
    from .show import show

    path = show(a.dataset, a.id, a.output)
    print(f"wrote {path}")
    return 0


def _run_stats(a: argparse.Namespace) -> int:
    from .show import stats

    s = stats(a.dataset)
    print(json.dumps(s, indent=2) if a.json else s["text"])
    return 0


COMMANDS: dict[str, Command] = {
    "build": BUILD,
    "resynth": RESYNTH,
    "show": Command("real / spoof / smoothed difference / mask picture of one row (paper Fig. 1)", _show_arguments, _run_show),
    "stats": Command("counts per split and vocoder, mask coverage, durations", _stats_arguments, _run_stats),
    "ids": Command("list row ids, one a line (optionally of one split and/or vocoder)", _ids_arguments, _run_ids),
    "partial": PARTIAL,
    "card": CARD,
    "publish": PUBLISH,
}


def _project_errors() -> tuple[type[BaseException], ...]:
    """The pipeline's own error types that are bad input rather than bugs (corpus readers, resumable jobs)."""
    from .pipeline.jobs import JobError
    from .sources.base import SourceError

    return (SourceError, JobError)


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    parser = command_parser("annotate", "vocmask: ground-truth artifact masks from parallel real/vocoded speech", COMMANDS)
    return run_cli("annotate", parser, argv, errors=_project_errors())


if __name__ == "__main__":
    sys.exit(main())
