"""The ``annotate`` command: build, show, stats (and card/publish when available)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from .core.console import quiet_broken_pipe
from .sources import SOURCES
from .pipeline.splits import POLICIES

EXAMPLE_ID = "griffinlim__4706_68436_000011_000000"  # a test row of the default demo (tests check it exists)


def _build_parser(sub) -> None:
    p = sub.add_parser("build", help="annotate a parallel corpus into a Parquet dataset",
                       description="Pair, align (DTW + sample refinement), optionally RawBoost, annotate and "
                                   "write Parquet shards. Re-running the same command resumes a killed build.")
    p.add_argument("--source", default="demo", metavar="{" + ",".join(SOURCES) + "}",
                   help="corpus reader (default: demo, generated offline)")
    p.add_argument("--root", help="corpus folder as downloaded (manifest: the CSV/TSV file); demo: where to generate it")
    p.add_argument("--real-root", help="folder holding the real utterances when the corpus ships only fakes (vocv4: ASVspoof 2019 LA)")
    p.add_argument("--out", required=True, help="dataset folder to write (data/*.parquet, build.json, summary.json, rejects.jsonl)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--backend", default="loky", choices=("loky", "dask", "ray"),
                   help="where workers run: local processes (loky), a Dask cluster, or Ray")
    p.add_argument("--scheduler", default=None,
                   help="Dask scheduler address (tcp://host:8786) or Ray address; default: a local cluster of --workers")
    p.add_argument("--split-policy", choices=POLICIES, default="official",
                   help="official lists when present (else hashed by utterance), utterance, or speaker-disjoint")
    p.add_argument("--seed", type=int, default=0, help="global seed (splits without official lists, RawBoost)")
    p.add_argument("--sample-rate", type=int, default=16000, help="target rate in Hz (default 16000)")
    p.add_argument("--shard-size", type=int, default=64, help="pairs per Parquet shard (default 64)")
    p.add_argument("--rawboost-prob", type=float, default=0.0, help="probability of matched RawBoost per pair (paper: 0.5)")
    p.add_argument("--rawboost-algo", type=int, default=5, choices=range(0, 9), help="RawBoost algorithm 1-8 (default 5)")
    p.add_argument("--augment-copies", type=int, default=0, help="extra RawBoost-augmented rows per pair")
    p.add_argument("--quantile", type=float, default=0.95, help="mask threshold quantile of D (default 0.95)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset built with other parameters")
    p.add_argument("--no-progress", action="store_true")


def check_build_options(a) -> None:
    """Every `annotate build` parameter in range, and --out writable, before anything is read or written."""
    from .core.console import NON_NEGATIVE, POSITIVE, PROBABILITY, OptionError, Rule, between, check_options, check_writable

    check_options(a, {"quantile": between(0.0, 1.0, open_lo=True, open_hi=True),
                      "sample_rate": Rule(lambda v: 8000 <= v <= 384000, "must be a sample rate in Hz from 8000 to 384000"),
                      "rawboost_prob": PROBABILITY, "shard_size": POSITIVE, "augment_copies": NON_NEGATIVE,
                      "workers": POSITIVE, "seed": NON_NEGATIVE})
    if a.augment_copies and not a.rawboost_algo:
        raise OptionError(f"--augment-copies {a.augment_copies} needs a RawBoost algorithm: pass --rawboost-algo 1-8")
    check_writable(a.out)


def cmd_build(a) -> int:
    from .pipeline.build import BuildConfig, build
    from .core.spectral import MaskConfig, STFTConfig

    check_build_options(a)
    cfg = BuildConfig(source=a.source, root=str(Path(a.root).expanduser().resolve()) if a.root else None,
                      real_root=str(Path(a.real_root).expanduser().resolve()) if a.real_root else None,
                      split_policy=a.split_policy, seed=a.seed, shard_size=a.shard_size,
                      rawboost_prob=a.rawboost_prob, rawboost_algo=a.rawboost_algo, augment_copies=a.augment_copies,
                      stft=STFTConfig(sample_rate=a.sample_rate), mask=replace(MaskConfig(), quantile=a.quantile))
    try:
        summary = build(cfg, a.out, workers=a.workers, overwrite=a.overwrite, backend=a.backend,
                        scheduler=a.scheduler, progress=not a.no_progress)
    except OSError as e:  # the disk, not the corpus (unreadable corpus files are rejects)
        from .core.console import fs_error_line

        line = fs_error_line(e, a.out, resumable=True)
        if line is None:
            raise
        raise BuildFailed(line) from None
    print(json.dumps(summary, indent=2))
    print(f"wrote {summary['rows_out']} rows to {Path(a.out) / 'data'}; {summary['rejects']} rejects in {Path(a.out) / 'rejects.jsonl'}")
    if summary.get("empty_splits"):
        print(f"warning: split(s) {', '.join(summary['empty_splits'])} has no rows (no pairs in the corpus, or every pair rejected): see {Path(a.out) / 'rejects.jsonl'}")
    return 0


class BuildFailed(ValueError):
    """A build stopped by its output location (full disk, read-only): one line saying what to do."""


def cmd_ids(a) -> int:
    from .show import list_ids

    ids = list_ids(a.dataset, a.split, a.vocoder)
    if not ids:
        raise ValueError(f"no rows in {a.dataset}" + (f" for split {a.split!r}" if a.split else "")
                         + (f" and vocoder {a.vocoder!r}" if a.vocoder else "") + " (see `annotate stats`)")
    sys.stdout.write("".join(f"{i}\n" for i in ids))
    return 0


def cmd_show(a) -> int:
    from .show import show

    path = show(a.dataset, a.id, a.output)
    print(f"wrote {path}")
    return 0


def cmd_stats(a) -> int:
    from .show import stats

    s = stats(a.dataset)
    print(json.dumps(s, indent=2) if a.json else s["text"])
    return 0


def _resynth_parser(sub) -> None:
    from .pipeline.vocoders import BUILTIN

    p = sub.add_parser("resynth", help="make a parallel corpus (LibriSeVoc layout) from a folder of real speech",
                       description="Re-synthesise every audio file under --real-root with each vocoder and write a "
                                   "LibriSeVoc-layout corpus (gt/, {vocoder}/, split lists by speaker, truth.json of "
                                   "exact lags) that `annotate build --source librisevoc --root OUT` reads. "
                                   "Re-running the same command resumes a killed run.")
    p.add_argument("--real-root", required=True, help="folder of real recordings (any rate; stereo is mixed down; "
                                                       "the first folder level names the speaker)")
    p.add_argument("--out", required=True, help="corpus folder to write")
    p.add_argument("--vocoders", default="world,griffinlim,mp3,opus",
                   help=f"comma-separated: {', '.join(BUILTIN)} (mp3@0.9 / opus@0.9: libsndfile compression level "
                        "0-1, higher = fewer bits), or [name=]module:function(wave, sr) -> wave for your own vocoder")
    p.add_argument("--trim-edges", type=float, default=0.0,
                   help="share of spoofs whose leading/trailing silence is trimmed, as in LibriSeVoc (default 0)")
    p.add_argument("--sample-rate", type=int, default=16000, help="rate of the written corpus in Hz (default 16000)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (Griffin-Lim phase, LPC noise, trims, splits)")
    p.add_argument("--dev-speakers", default="", help="comma-separated speakers to put in dev (default: drawn by seed)")
    p.add_argument("--test-speakers", default="", help="comma-separated speakers to put in test (default: drawn by seed)")
    p.add_argument("--min-seconds", type=float, default=0.5, help="reals shorter than this are rejected (default 0.5)")
    p.add_argument("--chunk-size", type=int, default=16, help="utterances per unit of work (default 16)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--backend", default="loky", choices=("loky", "dask", "ray"), help="where workers run")
    p.add_argument("--scheduler", default=None, help="Dask scheduler or Ray address (default: local)")
    p.add_argument("--overwrite", action="store_true", help="replace a corpus made with other parameters")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_resynth)


def cmd_resynth(a) -> int:
    from .pipeline.resynth import ResynthConfig, ResynthError, resynth

    if a.workers < 1:
        raise ResynthError(f"--workers {a.workers}: give at least 1")
    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
    cfg = ResynthConfig(real_root=str(Path(a.real_root).expanduser().resolve()), vocoders=split(a.vocoders),
                        sample_rate=a.sample_rate, trim_edges=a.trim_edges, min_seconds=a.min_seconds, seed=a.seed,
                        chunk_size=a.chunk_size, dev_speakers=split(a.dev_speakers), test_speakers=split(a.test_speakers))
    summary = resynth(cfg, a.out, workers=a.workers, overwrite=a.overwrite, backend=a.backend,
                      scheduler=a.scheduler, progress=not a.no_progress)
    print(json.dumps(summary, indent=2))
    print(f"wrote {summary['utterances']} reals and {summary['spoofs']} spoofs to {a.out}; {summary['rejects']} rejects in "
          f"{Path(a.out) / 'rejects.jsonl'}; next: annotate build --source librisevoc --root {a.out} --out DS")
    return 0


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="annotate", description="vocmask: ground-truth artifact masks from parallel real/vocoded speech")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _build_parser(sub)
    _resynth_parser(sub)
    p = sub.add_parser("show", help="real / spoof / smoothed difference / mask picture of one row (paper Fig. 1)")
    p.add_argument("dataset")
    p.add_argument("--id", required=True, help=f"row id (e.g. {EXAMPLE_ID} in the demo; list them with `annotate ids DS`)")
    p.add_argument("-o", "--output", default=None, help="PNG path (default: {id}.png)")
    p = sub.add_parser("stats", help="counts per split and vocoder, mask coverage, durations")
    p.add_argument("dataset")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("ids", help="list row ids, one a line (optionally of one split and/or vocoder)")
    p.add_argument("dataset")
    p.add_argument("--split", default=None, help="only this split (train, dev, test)")
    p.add_argument("--vocoder", default=None, help="only this vocoder")
    from .pipeline.partial import add_parser as _partial_parser

    _partial_parser(sub)
    try:
        from .hub import publish  # noqa: F401  (card/publish, when present)

        publish.add_parsers(sub)
    except ImportError:
        pass
    a = parser.parse_args(argv)
    handlers = {"build": cmd_build, "show": cmd_show, "stats": cmd_stats, "ids": cmd_ids}
    handler = handlers.get(a.cmd) or getattr(a, "handler", None)
    from .pipeline.jobs import JobError
    from .sources.base import SourceError

    try:
        return handler(a)
    except (SourceError, JobError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"annotate {a.cmd}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
