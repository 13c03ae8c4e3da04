"""SegDiff inference throughput: the naive loop against the cached + batched sampler, in one run.

Naive: one sample at a time, the conditioning encoder recomputed at every denoising step.
Fast: each crop's condition encoded once, all (crop, sample) chains denoised as one batch.
Both consume identical noise (per-(crop, sample) generators), so the heatmaps must agree; the
script prints heatmaps/s for each path, the speed-up, and the largest heatmap difference, and exits
non-zero if the outputs differ.

    python perf/segdiff.py                       # small preset, random weights, synthetic utterance
    python perf/segdiff.py --rrdb-blocks 12      # the paper's SpecSegDiff encoder depth
    python perf/segdiff.py --checkpoint CKPT --dataset DS --split test
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from training.segdiff.config import preset, replace  # noqa: E402
from training.segdiff.data import SpecCondition, Utterance, load_split, normalise_logmag  # noqa: E402
from training.segdiff.diffusion import Diffusion  # noqa: E402
from training.segdiff.infer import explain_utterance, load_checkpoint  # noqa: E402
from training.segdiff.model import SegDiffUNet  # noqa: E402


def random_model(args) -> tuple[SegDiffUNet, int]:
    """Small-preset model with every weight redrawn (zero-initialised outputs would make sampling trivial)."""
    cfg = preset(args.config, "spec")
    model_cfg = replace(cfg.model, rrdb_blocks=args.rrdb_blocks, width=args.width)
    model = SegDiffUNet(model_cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval(), args.crop_frames or cfg.train.crop_frames


def synthetic_utterance(frames: int) -> Utterance:
    rng = np.random.default_rng(0)
    return Utterance("perf", normalise_logmag(rng.standard_normal((frames, 257))).astype(np.float16))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="trained SegDiff folder (default: random small-preset weights)")
    p.add_argument("--dataset", help="take the utterance from this dataset (default: synthetic)")
    p.add_argument("--split", default="test")
    p.add_argument("--config", default="small", choices=("small", "paper"))
    p.add_argument("--rrdb-blocks", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--crop-frames", type=int)
    p.add_argument("--frames", type=int, default=64, help="synthetic utterance length in frames (64 = 0.5 s)")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--ddim-steps", type=int, default=20, help="0 = full DDPM (T steps)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.checkpoint:
        model, cfg, _ = load_checkpoint(args.checkpoint)
        crop = args.crop_frames or cfg.train.crop_frames
        diff = Diffusion(cfg.diffusion)
    else:
        model, crop = random_model(args)
        diff = Diffusion()
    model = model.to(memory_format=torch.channels_last)
    utt = load_split(args.dataset, args.split, with_mask=False, limit=1)[0] if args.dataset else synthetic_utterance(args.frames)
    ddim = args.ddim_steps or None
    kw = dict(n_samples=args.samples, ddim_steps=ddim, seed=args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: width {model.cfg.width}, {model.cfg.rrdb_blocks} RRDB, {n_params / 1e6:.2f}M params; utterance {utt.id} "
          f"{utt.frames} frames, crop {crop}; {args.samples} samples, {ddim or diff.T} {'DDIM' if ddim else 'DDPM'} steps; "
          f"{args.threads} thread(s)")

    with torch.inference_mode():
        t0 = time.perf_counter()
        fast = explain_utterance(model, diff, utt, SpecCondition(), crop, **kw)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive = explain_utterance(model, diff, utt, SpecCondition(), crop, naive=True, **kw)
        t_naive = time.perf_counter() - t0
    diff_max = float(np.abs(fast - naive).max())
    print(f"naive  (re-encode every step, 1 sample at a time): {1 / t_naive:8.4f} heatmaps/s  ({t_naive:.1f} s)")
    print(f"cached + batched                                  : {1 / t_fast:8.4f} heatmaps/s  ({t_fast:.1f} s)")
    print(f"speed-up {t_naive / t_fast:.1f}x; max |heatmap difference| {diff_max:.2e}")
    if diff_max > 1e-4:
        print("FAIL: the two paths disagree for the same seed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
