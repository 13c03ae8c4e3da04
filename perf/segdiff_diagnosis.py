"""Why SpecSegDiff learns nothing on real speech: train named variants, draw dev IoU against step.

Each variant is the ``small`` preset with a few fields changed (what the network predicts, the loss
weight of the ~5% foreground, crop length, architecture, a shuffled-condition control). Every run
writes its own checkpoint folder with ``metrics.jsonl`` (dev IoU at each check, wall time) and the
training CPU-seconds; ``--plot`` draws all finished runs of ``--out`` into one PNG (IoU vs step and vs
CPU-minutes). Run two variants at once on a 2-core machine, one thread each:

    python perf/segdiff_diagnosis.py --dataset runs/devcorpus/ds --out runs/segdiag --variants eps,x0 &
    python perf/segdiff_diagnosis.py --dataset runs/devcorpus/ds --out runs/segdiag --variants x0_fg4,x0_shuffled
    python perf/segdiff_diagnosis.py --out runs/segdiag --plot docs/img/segdiff_diagnosis.png

Findings and the figure: docs/segdiff.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from training.segdiff.config import SegDiffConfig, preset, replace  # noqa: E402

# The CPU architecture the variants share: 4 levels, attention only in the 1/8-resolution bottleneck
# (attention over a 1/4-resolution map of a 128-frame crop dominates a CPU step), one RRDB.
FAST = dict(channel_mult=(1, 2, 2, 4), attention_levels=())
# ... and without the RRDB blocks (the encoder is conv, conv + skip, conv): ~half a step's cost at 128 frames.
LEAN = dict(FAST, rrdb_blocks=0)


def old_small() -> SegDiffConfig:
    """The ``small`` preset as it was before this diagnosis (eps, 32-frame crops, attention at 1/4 resolution,
    one RRDB, per-utterance normalisation): the base every variant but ``final`` changes."""
    from training.segdiff.config import DiffusionConfig, ModelConfig, TrainConfig

    model = ModelConfig(width=16, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), groups=8, heads=2,
                        rrdb_blocks=1, rrdb_width=16, rrdb_growth=8, detector_layers=(0, 1), detector_dim=128, layer_proj=32)
    train = TrainConfig(crop_frames=32, batch_size=8, steps=3000, lr=1e-3, ema_decay=0.995, val_every=300, val_utterances=2,
                        val_samples=4, val_ddim_steps=5, val_max_frames=128, ckpt_every=100)
    return SegDiffConfig(model=model, diffusion=DiffusionConfig(), train=train)


def variant(name: str) -> SegDiffConfig:
    """The named variant (see VARIANTS); ``final`` is today's ``small`` preset."""
    if name == "final":
        return preset("small")
    model, diffusion, train, *top = VARIANTS[name]
    cfg = old_small()
    return replace(cfg, model=replace(cfg.model, **model), diffusion=replace(cfg.diffusion, **diffusion),
                   train=replace(cfg.train, **train), **(top[0] if top else {}))


VARIANTS: dict[str, tuple] = {  # (model, diffusion, train[, SegDiffConfig]) changes
    # the small preset as it was (32-frame crops, attention at 1/4 resolution, eps)
    "old_small": ({}, {}, {}),
    "eps": (FAST, {}, dict(crop_frames=64)),
    "x0": (FAST, dict(parameterisation="x0"), dict(crop_frames=64)),
    "x0_fg4": (FAST, dict(parameterisation="x0"), dict(crop_frames=64, fg_weight=4.0)),
    "x0_shuffled": (FAST, dict(parameterisation="x0"), dict(crop_frames=64, shuffle_condition=True)),
    "eps_fg4": (FAST, {}, dict(crop_frames=64, fg_weight=4.0)),
    "x0_crop128": (FAST, dict(parameterisation="x0"), dict(crop_frames=128)),
    "x0_lean128": (LEAN, dict(parameterisation="x0"), dict(crop_frames=128)),
    "logit": (FAST, dict(parameterisation="logit"), dict(crop_frames=64, fg_weight=4.0)),
    # the network as a plain regressor: every example at t = T-1 (x_t pure noise), BCE + Dice
    "logit_tmax1": (FAST, dict(parameterisation="logit"), dict(crop_frames=64, fg_weight=4.0, t_max_fraction=1.0)),
    "logit_dsnorm": (FAST, dict(parameterisation="logit"), dict(crop_frames=64, fg_weight=4.0), dict(normalisation="dataset")),
    "logit_lean128": (LEAN, dict(parameterisation="logit"), dict(crop_frames=128, fg_weight=4.0)),
    "x0_fg4_crop128": (FAST, dict(parameterisation="x0"), dict(crop_frames=128, fg_weight=4.0)),
}


def run(name: str, dataset: str, out: Path, steps: int, val_every: int, val_utts: int, val_setting: str) -> None:
    from training.segdiff.train import train

    cfg = variant(name)
    vs, vk = (int(v) for v in val_setting.split("x"))
    cfg = replace(cfg, train=replace(cfg.train, steps=steps, val_every=val_every, val_utterances=val_utts, val_samples=vs,
                                     val_ddim_steps=vk, val_max_frames=256, ckpt_every=val_every))
    print(f"== {name}: {json.dumps(cfg.to_dict())}", flush=True)
    res = train(cfg, dataset, out / name, progress=False)
    print(f"== {name}: step {res['step']}, last val {res['val'][-1] if res['val'] else None}", flush=True)


def plot(out: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    rows = []
    for d in sorted(p for p in out.iterdir() if (p / "metrics.jsonl").exists()):
        recs = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        vals = [r for r in recs if "val" in r]
        if not vals:
            continue
        cpu_s = json.loads((d / "config.json").read_text()).get("cpu_seconds", 0.0)
        steps = [r["step"] for r in vals]
        iou = [r["val"]["iou"] for r in vals]
        per_step = cpu_s / max(recs[-1]["step"], 1) / 60
        ls = "--" if "shuffled" in d.name else "-"
        axes[0].plot(steps, iou, ls, marker="o", ms=3, label=d.name)
        axes[1].plot([s * per_step for s in steps], iou, ls, marker="o", ms=3, label=d.name)
        rows.append((d.name, recs[-1]["step"], cpu_s / 60, max(iou), iou[-1]))
    axes[0].set(xlabel="training step", ylabel="dev IoU (%)", title="SpecSegDiff variants: dev IoU")
    axes[1].set(xlabel="training CPU-minutes", title="against cost")
    for ax in axes:
        ax.axhline(2.6, color="grey", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    axes[0].text(0, 3.2, "uniform random", color="grey", fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"{'variant':<18} {'steps':>6} {'CPU-min':>8} {'best IoU':>9} {'last IoU':>9}")
    for name, step, cpu, best, last in rows:
        print(f"{name:<18} {step:>6} {cpu:>8.1f} {best:>9.1f} {last:>9.1f}")
    print(f"wrote {png}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--variants", default="", help=f"comma-separated, from final, {', '.join(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--val-every", type=int, default=50)
    ap.add_argument("--val-utterances", type=int, default=16)
    ap.add_argument("--val-setting", default="2x5", help="SAMPLESxDDIM_STEPS of the dev checks (default 2x5)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", type=Path, help="draw every finished run under --out into this PNG")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = [v for v in a.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS and v != "final"]
    if unknown:
        ap.error(f"unknown variants {unknown}: choose from {', '.join(VARIANTS)}")
    if names and not a.dataset:
        ap.error("--dataset is needed to train variants")
    for name in names:
        run(name, a.dataset, a.out, a.steps, a.val_every, a.val_utterances, a.val_setting)
    if a.plot:
        plot(a.out, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
