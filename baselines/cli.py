"""``explain`` console script: any explainer writes a benchmark submission (docs/layouts.md).

    explain --method deepshap|gradientshap|attnlrp|gradcam --detector CKPT --dataset DS --split test -o sub.parquet
    explain --method random|smoothed-random|energy --dataset DS -o sub.parquet
    explain --method specsegdiff|addsegdiff --checkpoint CKPT --dataset DS -o sub.parquet
    explain --method unet --checkpoint CKPT --dataset DS -o sub.parquet
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from annotate.core.commands import run_cli
from annotate.core.console import quiet_broken_pipe

from training.segdiff.config import EXPLAIN_DDIM_STEPS, EXPLAIN_SAMPLES

from .methods import METHODS, SEGDIFF_METHODS, UNET_METHOD


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="explain", description="Write explanation heatmaps for a dataset split as a submission.")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--dataset", required=True, help="dataset folder built by `annotate build`")
    p.add_argument("--split", default="test")
    p.add_argument("-o", "--output", required=True, help="submission Parquet file to write")
    p.add_argument("--detector", default=None, help="detector checkpoint folder (deepshap, gradientshap, attnlrp, gradcam; addsegdiff override)")
    p.add_argument("--checkpoint", default=None, help="SegDiff (specsegdiff, addsegdiff) or `train unet` (unet) checkpoint folder")
    p.add_argument("--limit", type=int, default=None, help="explain only the first N rows")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="explain only part I of N of the rows (contiguous, disjoint; 0/N .. N-1/N cover the split): "
                        "run the parts on N machines and join them with `benchmark merge`")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-rows", type=int, default=8, help="rows per resumable part (default 8)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--temporal", action="store_true",
                   help="gradcam: write 1-D maps (one value per STFT frame) of the last temporal layer, for the temporal track")
    g = p.add_argument_group("SHAP")
    g.add_argument("--n-references", type=int, default=10, help="DeepSHAP bona fide references (default 10; the paper's "
                   "20 localise no better at twice the cost, docs/baselines.md)")
    g.add_argument("--n-samples", type=int, default=None, help="GradientSHAP samples (default 10; the paper's 20: "
                   f"docs/baselines.md); SegDiff samples (default {EXPLAIN_SAMPLES}, "
                   "from the cost-quality frontier, docs/segdiff.md)")
    g.add_argument("--chunk", type=int, default=5, help="GradientSHAP samples per captum call (memory bound; default 5)")
    g.add_argument("--deepshap-batch", type=int, default=4, help="DeepSHAP (window, reference) pairs per captum call "
                   "(default 4: small batches stay in a CPU's cache, docs/performance.md)")
    g.add_argument("--no-extend-rescale", action="store_true", help="DeepSHAP: only captum's own Rescale module types")
    g = p.add_argument_group("AttnLRP")
    g.add_argument("--eps", type=float, default=1e-6)
    g.add_argument("--gamma-conv1d", type=float, default=10.0)
    g.add_argument("--gamma-conv2d", type=float, default=0.1)
    g.add_argument("--gamma-linear", type=float, default=0.0, help="0 = ε-rule on linear layers")
    g = p.add_argument_group("SegDiff")
    g.add_argument("--ddim-steps", type=int, default=EXPLAIN_DDIM_STEPS,
                   help=f"DDIM steps from t = T-1 (default {EXPLAIN_DDIM_STEPS}, from the cost-quality frontier, docs/segdiff.md; "
                   "0 = every diffusion step, ancestral DDPM; the paper preset was trained for 32 samples x DDPM)")
    g.add_argument("--max-batch", type=int, default=None,
                   help="chains denoised together (default 8, cache-sized for a CPU; raise it on a GPU)")
    g.add_argument("--hop", type=int, default=None, help="crop hop in frames (default: half the training crop)")
    p.set_defaults(_run=_run)
    return p


def check_explain_options(a: argparse.Namespace) -> None:
    """Every numeric option in range, and the split non-empty, before any model is loaded or file written."""
    from annotate.core.console import FINITE, NON_NEGATIVE, POSITIVE, POSITIVE_FLOAT, check_options

    check_options(a, {"limit": POSITIVE, "seed": NON_NEGATIVE, "batch_rows": POSITIVE, "threads": POSITIVE,
                      "n_references": POSITIVE, "n_samples": POSITIVE, "chunk": POSITIVE, "deepshap_batch": POSITIVE,
                      "eps": POSITIVE_FLOAT,
                      "gamma_conv1d": NON_NEGATIVE, "gamma_conv2d": NON_NEGATIVE, "gamma_linear": NON_NEGATIVE,
                      "ddim_steps": NON_NEGATIVE, "max_batch": POSITIVE, "hop": POSITIVE})
    check_options(a, {"eps": FINITE, "gamma_conv1d": FINITE, "gamma_conv2d": FINITE, "gamma_linear": FINITE})
    from annotate.core.submission import parse_shard

    a.shard = parse_shard(a.shard)
    _check_split(a.dataset, a.split)


def _check_split(ds: str, split: str) -> None:
    """ValueError (one line) when ``split`` of ``ds`` has no rows: nothing to explain."""
    from annotate.core.dataset import open_dataset

    d = open_dataset(ds)
    if not d.files():
        return  # not a dataset at all: the explainer's own loader says so
    if d.num_rows(split) == 0:
        raise ValueError(f"split {split!r} of {ds} has no rows (see its summary.json, empty_splits): choose another --split")


def _run(a: argparse.Namespace) -> int:
    check_explain_options(a)
    if a.threads is not None:
        import torch

        torch.set_num_threads(a.threads)
    if a.method == UNET_METHOD:
        from .explain import run_unet

        path = run_unet(a.checkpoint, a.dataset, a.split, a.output, limit=a.limit, progress=not a.no_progress, shard=a.shard)
    elif a.method in SEGDIFF_METHODS:
        from .explain import run_segdiff

        path = run_segdiff(a.method, a.checkpoint, a.dataset, a.split, a.output, seed=a.seed, limit=a.limit,
                           n_samples=EXPLAIN_SAMPLES if a.n_samples is None else a.n_samples, ddim_steps=a.ddim_steps or None, detector=a.detector, progress=not a.no_progress,
                           max_batch=a.max_batch, hop=a.hop, shard=a.shard)
    else:
        from .attnlrp import LRPConfig
        from .explain import ExplainConfig, run
        from .shap import ShapConfig

        shap = ShapConfig(n_references=a.n_references, n_samples=ShapConfig.n_samples if a.n_samples is None else a.n_samples,
                          chunk=a.chunk, batch=a.deepshap_batch, extend_rescale=not a.no_extend_rescale)
        lrp = replace(LRPConfig(), eps=a.eps, gamma_conv1d=a.gamma_conv1d, gamma_conv2d=a.gamma_conv2d, gamma_linear=a.gamma_linear)
        cfg = ExplainConfig(method=a.method, dataset=a.dataset, split=a.split, detector=a.detector, seed=a.seed, limit=a.limit,
                            temporal=a.temporal,
                            batch_rows=a.batch_rows, shap=shap, lrp=lrp)
        path = run(cfg, a.output, progress=not a.no_progress, shard=a.shard)
    print(f"wrote {path}")
    return 0


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    return run_cli("explain", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
