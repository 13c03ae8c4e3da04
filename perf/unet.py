"""U-Net training-step and inference cost on this CPU (random inputs; the cost does not depend on the data).

Prints CPU seconds per training step (batch x crop x 257 bins, the real loss and Adam) in windows of
``--window`` steps (the time must stay flat along a run), the steps that fit in ``--budget-min``
CPU-minutes, and the CPU seconds to explain one utterance of ``--utt-frames`` frames in one pass.

    python perf/unet.py                      # small preset, 1 thread, 60 steps (~1 min)
    python perf/unet.py --threads 2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from training.unet.config import preset  # noqa: E402
from training.unet.infer import heatmap  # noqa: E402
from training.unet.model import UNet  # noqa: E402
from training.unet.train import loss_fn  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="small")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget-min", type=float, default=12.0)
    p.add_argument("--utt-frames", type=int, default=250, help="a 2-second utterance at hop 128 / 16 kHz")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = preset(a.config)
    tc, nf = cfg.train, cfg.model.n_freq
    torch.manual_seed(0)
    model = UNet(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tc.batch_size, 1, tc.crop_frames, nf, generator=g)
    y = (torch.rand(tc.batch_size, 1, tc.crop_frames, nf, generator=g) < 0.05).float()
    valid = torch.ones(tc.batch_size, 1, tc.crop_frames, 1)
    per_step = []
    for step in range(a.steps):
        c0 = time.process_time()
        model.train()
        loss = loss_fn(model(x), y, valid, tc.pos_weight, tc.dice_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        per_step.append(time.process_time() - c0)
    print(f"U-Net {a.config}: widths {cfg.model.widths}, batch {tc.batch_size} x {tc.crop_frames} frames x {nf} bins, "
          f"{a.threads} thread(s)")
    for w0 in range(0, a.steps, a.window):
        chunk = per_step[w0 : w0 + a.window]
        print(f"  steps {w0 + 1:4d}-{w0 + len(chunk):4d}: {np.mean(chunk):.3f} CPU s/step")
    steady = float(np.median(per_step[min(5, a.steps - 1):]))
    print(f"  median {steady:.3f} CPU s/step -> {int(a.budget_min * 60 / steady)} steps in {a.budget_min:g} CPU-minutes "
          f"(preset default: {tc.steps} steps = {tc.steps * steady / 60:.1f} CPU-minutes)")
    model.eval()
    u = np.random.default_rng(0).standard_normal((a.utt_frames, nf)).astype(np.float32)
    heatmap(model, u, cfg.max_frames)
    c0, n = time.process_time(), 10
    for _ in range(n):
        heatmap(model, u, cfg.max_frames)
    print(f"  explain: {(time.process_time() - c0) / n:.3f} CPU s per {a.utt_frames}-frame utterance (one pass)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
