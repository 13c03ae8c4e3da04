"""The ``annotate`` subcommands of the build pipeline: ``build``, ``resynth`` and ``partial`` (arguments here;
the pipeline's modules are imported when a command runs)."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..core.commands import Command
from ..sources import SOURCES
from .splits import POLICIES


def _build_arguments(p: argparse.ArgumentParser) -> None:
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
    from ..core.console import NON_NEGATIVE, POSITIVE, PROBABILITY, OptionError, Rule, between, check_options, check_writable

    check_options(a, {"quantile": between(0.0, 1.0, open_lo=True, open_hi=True),
                      "sample_rate": Rule(lambda v: 8000 <= v <= 384000, "must be a sample rate in Hz from 8000 to 384000"),
                      "rawboost_prob": PROBABILITY, "shard_size": POSITIVE, "augment_copies": NON_NEGATIVE,
                      "workers": POSITIVE, "seed": NON_NEGATIVE})
    if a.augment_copies and not a.rawboost_algo:
        raise OptionError(f"--augment-copies {a.augment_copies} needs a RawBoost algorithm: pass --rawboost-algo 1-8")
    check_writable(a.out)


def _run_build(a) -> int:
    from ..core.spectral import MaskConfig, STFTConfig
    from .build import BuildConfig, build

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
        from ..core.console import fs_error_line

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


def _resynth_arguments(p: argparse.ArgumentParser) -> None:
    from .vocoders import BUILTIN

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



def _run_resynth(a) -> int:
    from .resynth import ResynthConfig, ResynthError, resynth

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


def _partial_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset folder built by `annotate build`")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--segments", type=int, default=1, help="spoof spans per utterance (default 1)")
    p.add_argument("--min-len", type=float, default=0.2, help="shortest span in seconds (default 0.2)")
    p.add_argument("--max-len", type=float, default=1.5, help="longest span in seconds (default 1.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bonafide", action="store_true", help="write only the partially spoofed rows")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out")
    p.add_argument("--no-progress", action="store_true")



def _run_partial(a) -> int:
    from .partial import PartialConfig, make_partial

    cfg = PartialConfig(segments=a.segments, min_len=a.min_len, max_len=a.max_len, seed=a.seed, bonafide=not a.no_bonafide)
    cfg.validate()
    s = make_partial(a.dataset, a.out, cfg, overwrite=a.overwrite, progress=not a.no_progress)
    print(f"wrote {s['rows_out']} rows ({s['partial_rows']} partially spoofed, {s['bonafide_rows']} bona fide; "
          f"{s['rejects']} rejects) to {Path(a.out) / 'data'}; spoofed share {s['spoofed_share_mean']:.1%}")
    return 0


BUILD = Command("annotate a parallel corpus into a Parquet dataset", _build_arguments, _run_build,
                description="Pair, align (DTW + sample refinement), optionally RawBoost, annotate and write Parquet "
                            "shards. Re-running the same command resumes a killed build.")
RESYNTH = Command("make a parallel corpus (LibriSeVoc layout) from a folder of real speech", _resynth_arguments, _run_resynth,
                  description="Re-synthesise every audio file under --real-root with each vocoder and write a "
                              "LibriSeVoc-layout corpus (gt/, {vocoder}/, split lists by speaker, truth.json of "
                              "exact lags) that `annotate build --source librisevoc --root OUT` reads. "
                              "Re-running the same command resumes a killed run.")
PARTIAL = Command("splice spoof spans into the reals of a built dataset (partially spoofed audio)", _partial_arguments, _run_partial,
                  description="From a built dataset's aligned pairs, write a dataset of partially spoofed utterances "
                              "(K spoof spans spliced into each real, sample-exact labels, frame_labels and spans "
                              "columns, Eq. 2 masks) plus one bona fide row per real utterance.")
