"""``benchmark`` command: score a submission, validate it, rank results, or explain-and-score everything (``run``).

Exit codes: 0 success, 2 invalid input (submission, dataset, key, detector), each with a one-line
message per problem and no traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from annotate.core.commands import Command, command_parser, run_cli
from annotate.core.console import quiet_broken_pipe

from training.segdiff.config import EXPLAIN_DDIM_STEPS, EXPLAIN_SAMPLES

from .stats import BootstrapConfig


def _score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission", help="Parquet file or folder with columns id, heatmap")
    p.add_argument("--dataset", required=True, help="vocmask dataset folder")
    p.add_argument("--split", default="test")
    p.add_argument("--detector", help="detector checkpoint: adds the faithfulness metrics AI/AD/AG/Fid-In")
    p.add_argument("--key", help="private Parquet (id, mask) holding withheld test masks; replaces the dataset's masks")
    p.add_argument("--name", help="method name shown in tables (default: submission metadata 'method', else file name)")
    p.add_argument("-o", "--output", help="write the result JSON here")
    p.add_argument("--workers", type=int, default=1, help="processes computing the metrics (default 1)")
    p.add_argument("--limit", type=int, help="score only the split's first N rows (as `explain --limit N` explains them)")
    p.add_argument("--ids", metavar="FILE", help="score only the ids listed in FILE, one a line (e.g. from `annotate ids`)")
    p.add_argument("--track", choices=("auto", "tf", "temporal"), default="auto",
                   help="tf: T-F masks; temporal: frame_labels (T-F maps reduced to time); auto: temporal for 1-D heatmaps")
    _boot_args(p)


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--key")
    p.add_argument("--track", choices=("auto", "tf", "temporal"), default="auto", help="as for `score --track`")


def _merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("parts", nargs="+", help="the part files (or folders of them): shards 0/N .. N-1/N, each once")
    p.add_argument("-o", "--output", required=True, help="the joined submission Parquet file to write")


def _leaderboard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", help="folder of result JSONs from `benchmark score -o`")
    p.add_argument("--format", choices=("md", "csv", "html"), default="md")
    p.add_argument("--metric", default="IoU", help="ranking metric (default IoU)")
    p.add_argument("--dataset", help="dataset for missing chance rows (default: the one named in the results)")
    p.add_argument("--split", help="split for missing chance rows (default: the results' split)")
    p.add_argument("--key", help="private masks for the chance rows, as for `score --key`")
    p.add_argument("--save-chance", action="store_true", help="also write computed chance rows into the results folder")
    p.add_argument("-o", "--output", help="write the table here instead of stdout")
    _boot_args(p)


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="vocmask dataset folder")
    p.add_argument("--detector", help="detector checkpoint: adds DeepSHAP, GradientSHAP, AttnLRP, Grad-CAM and AI/AD/AG/Fid-In")
    p.add_argument("--segdiff", action="append", default=[], metavar="CKPT",
                   help="SegDiff checkpoint (repeatable); SpecSegDiff or ADDSegDiff from its condition")
    p.add_argument("--unet", action="append", default=[], metavar="CKPT", help="`train unet` checkpoint (repeatable): the U-Net row")
    p.add_argument("--split", default="test")
    p.add_argument("--methods", nargs="+", metavar="M",
                   help="only these (of random smoothed-random energy deepshap gradientshap attnlrp gradcam specsegdiff "
                        "addsegdiff unet); the chance rows are always computed")
    p.add_argument("--limit", type=int, help="explain and score only the split's first N rows")
    p.add_argument("--out", default="results", help="folder for result JSONs, submissions/ and table.txt (default results/)")
    p.add_argument("--segdiff-samples", type=int, default=EXPLAIN_SAMPLES,
                   help=f"SegDiff samples per utterance (default {EXPLAIN_SAMPLES}: explain's default, docs/segdiff.md)")
    p.add_argument("--ddim-steps", type=int, default=EXPLAIN_DDIM_STEPS,
                   help=f"SegDiff DDIM steps (default {EXPLAIN_DDIM_STEPS}; 0 = every diffusion step)")
    p.add_argument("--deepshap-references", type=int, default=None,
                   help="DeepSHAP bona fide references (default: explain's, 10; the paper's 20 doubles its cost, docs/baselines.md)")
    p.add_argument("--gradientshap-samples", type=int, default=None,
                   help="GradientSHAP samples (default: explain's, 10; the paper's 20 doubles its cost)")
    p.add_argument("--force", action="store_true", help="recompute methods whose result exists")
    p.add_argument("--threads", type=int, help="torch CPU threads (with one worker)")
    p.add_argument("--workers", type=int, default=None,
                   help="explain processes per method, each on its share of the rows with one thread "
                        "(default: the usable CPU cores; 1 = in this process)")
    p.add_argument("--no-progress", action="store_true")
    _boot_args(p)


def _analyse_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission", help="Parquet file or folder of 1-D (or T-F, reduced to time) heatmaps")
    p.add_argument("--dataset", required=True, help="dataset with frame_labels (`annotate partial`)")
    p.add_argument("--split", default="test")
    p.add_argument("-o", "--output", help="folder for analysis.json, analysis.png, per_utterance.jsonl (default: SUB_analysis)")
    p.add_argument("--examples", type=int, default=3, help="example utterances drawn in the PNG (default 3)")


def _boot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap resamples for the 95%% CIs (default 1000; at least 100, or 0 for no CI)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (and of computed chance rows)")


def _track(a) -> str:
    """The track to score on: ``--track``, or for ``auto`` temporal when the submission's heatmaps are 1-D."""
    if a.track != "auto":
        return a.track
    from .submission import submission_files
    from .temporal import heatmap_ndim

    return "temporal" if heatmap_ndim(submission_files(a.submission)) == 1 else "tf"


def check_benchmark_options(a) -> None:
    """Numeric options in range before any work: --bootstrap is 0 (no CI) or at least 100 draws."""
    from annotate.core.console import NON_NEGATIVE, POSITIVE, OptionError, check_options

    check_options(a, {"workers": POSITIVE, "limit": POSITIVE, "seed": NON_NEGATIVE, "segdiff_samples": POSITIVE,
                      "deepshap_references": POSITIVE, "gradientshap_samples": POSITIVE, "ddim_steps": NON_NEGATIVE,
                      "threads": POSITIVE, "max_files": POSITIVE})
    b = getattr(a, "bootstrap", None)
    if b is not None and b != 0 and b < MIN_BOOTSTRAP:
        raise OptionError(f"--bootstrap {b}: use at least {MIN_BOOTSTRAP} resamples for a 95% CI, or 0 for none")


MIN_BOOTSTRAP = 100


def _score(a) -> int:
    from .score import format_table, score_submission, write_result

    if _track(a) == "temporal":
        from .score import ScoreError
        from .temporal import score_temporal

        if a.limit is not None or a.ids is not None:
            raise ScoreError("--limit/--ids subset the T-F track only; the temporal track scores the whole split")

        result = score_temporal(a.submission, a.dataset, a.split, name=a.name, boot=BootstrapConfig(resamples=a.bootstrap, seed=a.seed))
    else:
        result = score_submission(
            a.submission, a.dataset, a.split, detector=a.detector, key=a.key, name=a.name,
            boot=BootstrapConfig(resamples=a.bootstrap, seed=a.seed), workers=a.workers, limit=a.limit, ids_file=a.ids,
        )
    for w in result["warnings"]:
        print(f"benchmark: warning: {w}", file=sys.stderr)
    print(format_table(result))
    if a.output:
        print(f"wrote {write_result(result, a.output)}")
    return 0


def _validate(a) -> int:
    from .score import validate_submission
    from .temporal import validate_temporal

    warnings = (validate_temporal(a.submission, a.dataset, a.split) if _track(a) == "temporal"
                else validate_submission(a.submission, a.dataset, a.split, a.key))
    for w in warnings:
        print(f"benchmark: warning: {w}", file=sys.stderr)
    print(f"{a.submission}: valid for split {a.split!r} of {a.dataset}")
    return 0


def _merge(a) -> int:
    from .merge import merge

    out = merge(a.parts, a.output)
    print(f"wrote {out} ({len(a.parts)} parts)")
    return 0


def _leaderboard(a) -> int:
    from .chance import CHANCE_PREFIX
    from .leaderboard import add_chance, load_results, render
    from .score import write_result

    from .score import check_comparable

    results = load_results(a.results)
    check_comparable(results)  # a subset result is never ranked against full ones
    boot = BootstrapConfig(resamples=a.bootstrap, seed=a.seed)
    before = {id(r) for r in results}
    results = add_chance(results, a.dataset, a.split, a.seed, boot, a.key)
    if a.save_chance:
        for r in results:
            if id(r) not in before:
                slug = r["name"].removeprefix(CHANCE_PREFIX).replace(" ", "_")
                print(f"wrote {write_result(r, Path(a.results) / f'chance_{slug}.json')}", file=sys.stderr)
    text = render(results, a.format, a.metric)
    if a.output:
        Path(a.output).write_text(text)
        print(f"wrote {a.output}")
    else:
        sys.stdout.write(text)
    return 0


def _analyse(a) -> int:
    from .analyse import AnalyseConfig, analyse, format_summary
    from .score import ScoreError

    if a.examples < 0:
        raise ScoreError(f"--examples must be >= 0, got {a.examples}")
    s = analyse(a.submission, a.dataset, a.split, a.output, AnalyseConfig(examples=a.examples))
    print(format_summary(s))
    print(f"wrote {s['out']}/analysis.json, analysis.png, per_utterance.jsonl")
    return 0


def _run(a) -> int:
    from .run import RunConfig, format_table1, run_benchmark

    if a.threads is not None:
        import torch

        torch.set_num_threads(a.threads)
    methods = tuple(m for arg in a.methods for m in arg.split(",") if m) if a.methods else None
    cfg = RunConfig(
        dataset=a.dataset, out=a.out, split=a.split, detector=a.detector, segdiff=tuple(a.segdiff), unet=tuple(a.unet), methods=methods,
        limit=a.limit, seed=a.seed, boot=BootstrapConfig(resamples=a.bootstrap, seed=a.seed),
        segdiff_samples=a.segdiff_samples, ddim_steps=a.ddim_steps or None, force=a.force, progress=not a.no_progress,
        deepshap_references=a.deepshap_references, gradientshap_samples=a.gradientshap_samples,
        workers=a.workers if a.workers is not None else len(os.sched_getaffinity(0)),
    )
    results, notes = run_benchmark(cfg, log=lambda m: print(f"benchmark: {m}", file=sys.stderr))
    table = format_table1(results, notes)
    (Path(a.out) / "table.txt").write_text(table + "\n")
    print(table)
    return 0


def _checked(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``run`` after :func:`check_benchmark_options` (every command's numeric options, before any work)."""
    def checked(a: argparse.Namespace) -> int:
        check_benchmark_options(a)
        return run(a)

    return checked


COMMANDS: dict[str, Command] = {
    "score": Command("validate and score a submission (Parquet file or folder)", _score_arguments, _checked(_score)),
    "validate": Command("run every submission check without scoring", _validate_arguments, _checked(_validate)),
    "merge": Command("check and join the parts of `explain --shard I/N` into one submission", _merge_arguments,
                     _checked(_merge)),
    "leaderboard": Command("rank result JSONs (chance baselines always included)", _leaderboard_arguments, _checked(_leaderboard)),
    "run": Command("explain and score every available method, print Table 1 (chance rows included)", _run_arguments, _checked(_run)),
    "analyse": Command("temporal activation analysis: bona fide vs spoof, splice boundaries, speech activity", _analyse_arguments, _checked(_analyse)),
}


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``benchmark`` console script; returns the exit code."""
    from .score import ScoreError
    from .submission import SubmissionError

    parser = command_parser("benchmark", "Score explanation heatmaps against vocmask ground truth.", COMMANDS)
    return run_cli("benchmark", parser, argv, errors=(ScoreError, SubmissionError))


if __name__ == "__main__":
    sys.exit(main())
