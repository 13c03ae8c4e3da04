"""``explain`` console script: any explainer writes a benchmark submission (DESIGN §1, §8).

    explain --method deepshap|gradientshap|attnlrp|gradcam --detector CKPT --dataset DS --split test -o sub.parquet
    explain --method random|smoothed-random|energy --dataset DS -o sub.parquet
    explain --method specsegdiff|addsegdiff --checkpoint CKPT --dataset DS -o sub.parquet
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from .explain import METHODS, SEGDIFF_METHODS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="explain", description="Write explanation heatmaps for a dataset split as a submission.")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--dataset", required=True, help="dataset folder built by `annotate build`")
    p.add_argument("--split", default="test")
    p.add_argument("-o", "--output", required=True, help="submission Parquet file to write")
    p.add_argument("--detector", default=None, help="detector checkpoint folder (deepshap, gradientshap, attnlrp, gradcam; addsegdiff override)")
    p.add_argument("--checkpoint", default=None, help="SegDiff checkpoint folder (specsegdiff, addsegdiff)")
    p.add_argument("--limit", type=int, default=None, help="explain only the first N rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-rows", type=int, default=8, help="rows per resumable part (default 8)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    g = p.add_argument_group("SHAP")
    g.add_argument("--n-references", type=int, default=20, help="DeepSHAP bona fide references (default 20)")
    g.add_argument("--n-samples", type=int, default=None, help="GradientSHAP samples (default 20); SegDiff samples (default 32)")
    g.add_argument("--chunk", type=int, default=5, help="references/samples per captum call (memory bound; default 5)")
    g.add_argument("--no-extend-rescale", action="store_true", help="DeepSHAP: only captum's own Rescale module types")
    g = p.add_argument_group("AttnLRP")
    g.add_argument("--eps", type=float, default=1e-6)
    g.add_argument("--gamma-conv1d", type=float, default=10.0)
    g.add_argument("--gamma-conv2d", type=float, default=0.1)
    g.add_argument("--gamma-linear", type=float, default=0.0, help="0 = ε-rule on linear layers")
    g = p.add_argument_group("SegDiff")
    g.add_argument("--ddim-steps", type=int, default=None, help="DDIM with this many steps (default: full DDPM)")
    g.add_argument("--max-batch", type=int, default=None,
                   help="chains denoised together (default 8, cache-sized for a CPU; raise it on a GPU)")
    g.add_argument("--hop", type=int, default=None, help="crop hop in frames (default: half the training crop)")
    return p


def _run(a: argparse.Namespace) -> int:
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    if a.method in SEGDIFF_METHODS:
        from .explain import run_segdiff

        path = run_segdiff(a.method, a.checkpoint, a.dataset, a.split, a.output, seed=a.seed, limit=a.limit,
                           n_samples=a.n_samples or 32, ddim_steps=a.ddim_steps, detector=a.detector, progress=not a.no_progress,
                           max_batch=a.max_batch, hop=a.hop)
    else:
        from .attnlrp import LRPConfig
        from .explain import ExplainConfig, run
        from .shap import ShapConfig

        shap = ShapConfig(n_references=a.n_references, n_samples=a.n_samples or 20, chunk=a.chunk, extend_rescale=not a.no_extend_rescale)
        lrp = replace(LRPConfig(), eps=a.eps, gamma_conv1d=a.gamma_conv1d, gamma_conv2d=a.gamma_conv2d, gamma_linear=a.gamma_linear)
        cfg = ExplainConfig(method=a.method, dataset=a.dataset, split=a.split, detector=a.detector, seed=a.seed, limit=a.limit,
                            batch_rows=a.batch_rows, shap=shap, lrp=lrp)
        path = run(cfg, a.output, progress=not a.no_progress)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, ValueError, ImportError) as e:
        if os.environ.get("VOCMASK_DEBUG"):
            raise
        print(f"explain: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
