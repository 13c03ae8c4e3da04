"""SegDiff inference throughput: the naive loop against the cached + batched sampler, in one run.

Naive: one sample at a time, the conditioning encoder recomputed at every denoising step.
Fast: each crop's condition encoded once, the (crop, sample) chains denoised in batches of
``--max-batch`` sharing the cached features and the step's timestep embedding.
Both consume identical noise (per-(crop, sample) generators), so the heatmaps must agree; the
script prints heatmaps/s for each path, the speed-up, where the time goes (encoder vs UNet, batch-1
vs batched cost per chain-step) and the largest heatmap difference; it exits non-zero if they differ.

``--timed-samples K`` (for models too slow to run 32 samples naively, e.g. ``--config paper`` on a
CPU) runs both paths on each crop's first K samples only and scales to ``--samples``: the naive time
by S/K (exact: its samples run one after another with their own generators and identical work), the
fast path's non-encoder time by S/K (its encoder runs once per crop whatever S is, so it is not scaled).

    python perf/segdiff.py                                     # small preset, random weights, ~2 min
    python perf/segdiff.py --rrdb-blocks 12                    # small UNet with the paper's encoder depth
    python perf/segdiff.py --config paper --timed-samples 1    # the paper SpecSegDiff, scaled, ~5 min
    python perf/segdiff.py --condition detector                # ADDSegDiff, small detector (random weights)
    python perf/segdiff.py --condition detector --detector-config xlsr300m --timed-samples 2   # the paper's detector
    python perf/segdiff.py --checkpoint CKPT --dataset DS --split test

ADDSegDiff's condition is the frozen detector's layer outputs on the crop's waveform: the naive loop
runs the detector, the projection MLPs and the encoder at every step (as a model whose forward takes
the waveform would); the fast path runs them once per crop.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from training.segdiff.config import preset, replace  # noqa: E402
from training.segdiff.data import DetectorCondition, SpecCondition, Utterance, load_split, normalise_logmag  # noqa: E402
from training.segdiff.diffusion import Diffusion  # noqa: E402
from training.segdiff.infer import DEFAULT_MAX_BATCH, explain_utterance, load_checkpoint  # noqa: E402
from training.segdiff.model import SegDiffUNet  # noqa: E402


def random_model(args, detector=None) -> tuple[SegDiffUNet, int]:
    """Preset model with every weight redrawn at 1/sqrt(fan-in) scale (the zero-initialised output
    convs would make sampling trivial; a fixed std would blow up the 12-RRDB encoder)."""
    cfg = preset(args.config, args.condition)
    model_cfg = replace(cfg.model, rrdb_blocks=args.rrdb_blocks, width=args.width)
    if detector is not None:  # read the detector's own layers and width
        from training.segdiff.detector_features import detector_spec

        layers, dim = detector_spec(detector)
        model_cfg = replace(model_cfg, detector_layers=layers, detector_dim=dim)
    model = SegDiffUNet(model_cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            scale = 1 / math.sqrt(p[0].numel()) if p.dim() > 1 else 0.05
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval(), args.crop_frames or cfg.train.crop_frames


def random_detector(name: str):
    """A frozen Wav2Vec2-AASIST of preset ``name`` with seeded random weights (its cost is what matters here)."""
    from training.detector.config import small, xlsr300m
    from training.detector.model import Wav2Vec2AASIST

    torch.manual_seed(0)
    det = Wav2Vec2AASIST({"small": small, "xlsr300m": xlsr300m}[name]())
    for p in det.parameters():
        p.requires_grad_(False)
    return det.eval()


class TimedCondition:
    """Wraps a condition provider to add up its time (the detector forward for ADDSegDiff)."""

    def __init__(self, inner):
        self.inner, self.t, self.calls = inner, 0.0, 0

    def __call__(self, *a):
        t0 = time.perf_counter()
        out = self.inner(*a)
        self.t += time.perf_counter() - t0
        self.calls += 1
        return out


def synthetic_utterance(frames: int) -> Utterance:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(frames * 128)).astype(np.float32)
    return Utterance("perf", normalise_logmag(rng.standard_normal((frames, 257))).astype(np.float16), audio=audio)


class Meter:
    """Wraps the model's ``encode_condition`` / ``denoise`` on the instance to add up their time and work."""

    def __init__(self, model: SegDiffUNet):
        self.model, self.orig = model, (model.encode_condition, model.denoise)
        model.encode_condition, model.denoise = self._timed("enc", self.orig[0]), self._timed("unet", self.orig[1])
        self.reset()

    def reset(self):
        self.t = {"enc": 0.0, "unet": 0.0}
        self.calls = {"enc": 0, "unet": 0}
        self.rows = {"enc": 0, "unet": 0}

    def _timed(self, key, fn):
        def wrapped(x, *a, **kw):
            t0 = time.perf_counter()
            out = fn(x, *a, **kw)
            self.t[key] += time.perf_counter() - t0
            self.calls[key] += 1
            self.rows[key] += x.shape[0]
            return out
        return wrapped

    def close(self):
        del self.model.encode_condition, self.model.denoise


def run(meter: Meter, condition: TimedCondition, fn) -> tuple[np.ndarray, float, dict]:
    """(output, wall seconds, the meter's snapshot) of one timed call. The condition provider's time
    (detector forward) is counted with the encoder's: both are the conditioning that gets cached."""
    meter.reset()
    condition.t, condition.calls = 0.0, 0
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    t, calls = dict(meter.t), dict(meter.calls)
    t["enc"] += condition.t
    return out, wall, {"t": t, "calls": calls, "rows": dict(meter.rows), "cond_t": condition.t, "cond_calls": condition.calls}


def describe(name: str, wall: float, m: dict) -> str:
    enc, unet = m["t"]["enc"], m["t"]["unet"]
    per_chain_step = unet / max(m["rows"]["unet"], 1)
    return (f"  {name:<16} total {wall:8.1f} s | conditioning {enc:8.1f} s ({enc / wall:4.0%}, {m['calls']['enc']} encoder calls, "
            f"{m['cond_t']:.1f} s in {m['cond_calls']} condition-provider calls) | "
            f"UNet {unet:8.1f} s ({unet / wall:4.0%}, {m['calls']['unet']} calls, mean batch {m['rows']['unet'] / max(m['calls']['unet'], 1):.1f}, "
            f"{per_chain_step * 1e3:.1f} ms per chain-step) | other {wall - enc - unet:6.1f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="trained SegDiff folder (default: random weights of --config)")
    p.add_argument("--dataset", help="take the utterance from this dataset (default: synthetic)")
    p.add_argument("--split", default="test")
    p.add_argument("--config", default="small", choices=("small", "paper"), help="preset for random weights")
    p.add_argument("--condition", default="spec", choices=("spec", "detector"), help="SpecSegDiff or ADDSegDiff")
    p.add_argument("--detector", help="ADDSegDiff: a `train detector` checkpoint (default: random weights of --detector-config)")
    p.add_argument("--detector-config", default="small", choices=("small", "xlsr300m"))
    p.add_argument("--rrdb-blocks", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--crop-frames", type=int)
    p.add_argument("--frames", type=int, default=64, help="synthetic utterance length in frames (64 = 0.5 s)")
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--timed-samples", type=int, help="run only the first K samples per crop and scale to --samples")
    p.add_argument("--ddim-steps", type=int, default=20, help="0 = full DDPM (T steps)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="chains denoised together (fast path)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    k = args.timed_samples or args.samples
    if not 1 <= k <= args.samples:
        p.error(f"--timed-samples must be in 1..{args.samples}, got {k}")

    detector = None
    if args.checkpoint:
        model, cfg, meta = load_checkpoint(args.checkpoint)
        args.condition = cfg.model.condition
        crop = args.crop_frames or cfg.train.crop_frames
        diff = Diffusion(cfg.diffusion)
        if args.condition == "detector":
            from training.segdiff.detector_features import load_frozen_detector

            detector = load_frozen_detector(args.detector or meta["detector"])
    else:
        if args.condition == "detector":
            if args.detector:
                from training.segdiff.detector_features import load_frozen_detector

                detector = load_frozen_detector(args.detector)
            else:
                detector = random_detector(args.detector_config)
        model, crop = random_model(args, detector)
        diff = Diffusion()
    if detector is not None:
        condition = TimedCondition(DetectorCondition(detector, model.cfg.detector_layers))
        print(f"detector: {detector.config.name}, {sum(p.numel() for p in detector.parameters()) / 1e6:.1f}M params, "
              f"layers {model.cfg.detector_layers}")
    else:
        condition = TimedCondition(SpecCondition())
    model = model.to(memory_format=torch.channels_last)  # shared by both paths
    utt = (load_split(args.dataset, args.split, with_mask=False, with_audio=detector is not None, limit=1)[0]
           if args.dataset else synthetic_utterance(args.frames))
    ddim = args.ddim_steps or None
    n_steps = len(diff.timesteps(ddim))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: width {model.cfg.width}, mult {model.cfg.channel_mult}, {model.cfg.rrdb_blocks} RRDB (width {model.cfg.rrdb_width}), "
          f"{n_params / 1e6:.2f}M params; utterance {utt.id} {utt.frames} frames, crop {crop}; {args.samples} samples, "
          f"{n_steps} {'DDIM' if ddim else 'DDPM'} steps; fast batch <= {args.max_batch}; {args.threads} thread(s)")

    kw = dict(n_samples=k, ddim_steps=ddim, seed=args.seed)
    meter = Meter(model)
    with torch.inference_mode():  # warm-up: one encoder and one batch-1 UNet call (allocator, oneDNN primitives)
        length = min(crop, utt.frames)
        feats = model.encode_condition(condition.inner([utt], [0], length), frames=length)
        model.denoise(torch.zeros(1, 1, length, model.cfg.n_freq), torch.zeros(1, dtype=torch.long), feats)
    fast, t_fast, m_fast = run(meter, condition, lambda: explain_utterance(model, diff, utt, condition, crop, max_batch=args.max_batch, **kw))
    naive, t_naive, m_naive = run(meter, condition, lambda: explain_utterance(model, diff, utt, condition, crop, naive=True, **kw))
    meter.close()

    scale = args.samples / k
    print(f"timed: {k} of {args.samples} samples per crop" + ("" if k == args.samples else f" (times below scaled to {args.samples}, see --help)"))
    print(describe("naive", t_naive, m_naive))
    print(describe("cached+batched", t_fast, m_fast))
    s_naive = t_naive * scale
    s_fast = m_fast["t"]["enc"] + (t_fast - m_fast["t"]["enc"]) * scale
    tag = "" if k == args.samples else f"  [scaled: naive x{scale:g}; fast = encoder {m_fast['t']['enc']:.1f} s + rest x{scale:g}]"
    print(f"naive  (re-encode every step, 1 sample at a time): {1 / s_naive:8.5f} heatmaps/s  ({s_naive:.1f} s per heatmap){tag}")
    print(f"cached + batched                                  : {1 / s_fast:8.5f} heatmaps/s  ({s_fast:.1f} s per heatmap)")
    e1, u1 = (m_naive["t"][key] / max(m_naive["calls"][key], 1) for key in ("enc", "unet"))
    print(f"ceiling from caching alone (naive conditioning + UNet per chain-step / UNet per chain-step): {(e1 + u1) / u1:.1f}x; "
          f"batched UNet per chain-step {m_fast['t']['unet'] / max(m_fast['rows']['unet'], 1) / u1:.2f}x its batch-1 cost")
    diff_max = float(np.abs(fast - naive).max())
    print(f"speed-up {s_naive / s_fast:.1f}x; max |heatmap difference| {diff_max:.2e} (over the {k} timed samples per crop)")
    if not np.isfinite(fast).all() or diff_max > 1e-4:
        print("FAIL: the two paths disagree for the same seed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
