"""The cost-quality frontier of the learned explainers: IoU against function evaluations per crop.

For each SegDiff checkpoint (``--segdiff``, SpecSegDiff or ADDSegDiff) and each sampling setting
``SAMPLESxSTEPS`` (DDIM steps; ``xddpm`` = every diffusion step, ancestral), and for each U-Net
checkpoint (one forward pass), the script explains the same held-out rows, scores each heatmap with
``benchmark.metrics`` (IoU, 95% bootstrap CI over utterances) and times it (CPU seconds per
utterance, one thread). It prints one table, marks the cheapest setting within 1 IoU point of the
best for each SegDiff checkpoint (the rule ``explain``'s defaults follow), and draws the frontier:

    python perf/explainers.py --dataset runs/devcorpus/ds --split dev --limit 48 \\
        --segdiff runs/segdiff_small --unet runs/unet_small --png docs/img/explainer_frontier.png

Use a split no model trained on (the development corpus's ``dev`` speaker), never the test split:
the defaults are chosen here. ``--max-frames N`` explains each row's first N frames only (the
expensive settings then fit in minutes); ``--settings`` picks the grid.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DEFAULT_SETTINGS = "1x1,1x2,1x5,4x5,8x10,32x25,32xddpm"


def parse_setting(text: str) -> tuple[int, int | None]:
    """``'8x10'`` -> (8, 10); ``'32xddpm'`` -> (32, None) (None = every diffusion step)."""
    s, _, k = text.partition("x")
    return int(s), None if k == "ddpm" else int(k)


def rows(dataset: str, split: str, limit: int, max_frames: int | None, with_audio: bool, normalise=None):
    from annotate.core.dataset import iter_rows
    from training.segdiff.data import Utterance, row_to_utterance

    cols = ["id", "spoof_logmag", "mask"] + (["spoof_audio"] if with_audio else [])
    out = []
    for row in iter_rows(dataset, split, cols):
        u = row_to_utterance(row, with_audio, **({"normalise": normalise} if normalise is not None else {}))
        if max_frames and u.frames > max_frames:
            hop = 128  # STFT hop of the dataset grid
            u = Utterance(u.id, u.logmag[:max_frames], u.mask[:max_frames], None if u.audio is None else u.audio[: max_frames * hop])
        out.append(u)
        if len(out) >= limit:
            break
    return out


def score(heats, utts) -> dict:
    from benchmark.metrics import heatmap_iou_f1
    from benchmark.stats import mean_ci

    return mean_ci(np.array([heatmap_iou_f1(h, u.mask)[0] for h, u in zip(heats, utts)]))


def segdiff_rows(ckpt: str, args, settings) -> list[dict]:
    from training.segdiff.diffusion import Diffusion
    from training.segdiff.infer import explain_utterance, input_normaliser, load_checkpoint, make_condition

    model, cfg, meta = load_checkpoint(ckpt)
    diff, cond = Diffusion(cfg.diffusion), make_condition(cfg, meta, args.detector)
    utts = rows(args.dataset, args.split, args.limit, args.max_frames, cfg.model.condition == "detector",
                normalise=input_normaliser(cfg, meta))
    method = "SpecSegDiff" if cfg.model.condition == "spec" else "ADDSegDiff"
    out = []
    for s, k in settings:
        t0 = time.process_time()
        heats = [explain_utterance(model, diff, u, cond, cfg.train.crop_frames, n_samples=s, ddim_steps=k, seed=args.seed)
                 for u in utts]
        sec = (time.process_time() - t0) / len(utts)
        nfe = s * (k if k is not None and k < diff.T else diff.T)
        out.append({"method": method, "checkpoint": ckpt, "setting": f"{s}x{k or 'ddpm'}", "samples": s, "steps": k,
                    "nfe_per_crop": nfe, "sec_per_utt": sec, **score(heats, utts)})
        print(_line(out[-1]), flush=True)
    return out


def unet_rows(ckpt: str, args) -> list[dict]:
    from training.unet.infer import heatmap, load_checkpoint

    model, cfg, norm, _ = load_checkpoint(ckpt)
    utts = rows(args.dataset, args.split, args.limit, args.max_frames, False, normalise=norm)
    t0 = time.process_time()
    heats = [heatmap(model, u.logmag.astype(np.float32), cfg.max_frames) for u in utts]
    sec = (time.process_time() - t0) / len(utts)
    row = {"method": "U-Net", "checkpoint": ckpt, "setting": "1 pass", "samples": 1, "steps": 1, "nfe_per_crop": 1,
           "sec_per_utt": sec, **score(heats, utts)}
    print(_line(row), flush=True)
    return [row]


def _line(r: dict) -> str:
    lo, hi = r["ci"]
    return (f"{r['method']:<12} {r['setting']:>8} {r['nfe_per_crop']:>6} {r['sec_per_utt']:>9.2f} "
            f"{r['mean']:>6.1f} [{lo:5.1f}, {hi:5.1f}]  n={r['n']}")


def choose(rows_: list[dict], tolerance: float = 1.0) -> dict:
    """The cheapest setting (fewest evaluations, then seconds) within ``tolerance`` IoU points of the best."""
    best = max(r["mean"] for r in rows_)
    ok = [r for r in rows_ if r["mean"] >= best - tolerance]
    return min(ok, key=lambda r: (r["nfe_per_crop"], r["sec_per_utt"]))


def plot(results: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for key in dict.fromkeys((r["method"], r["checkpoint"]) for r in results):
        rs = [r for r in results if (r["method"], r["checkpoint"]) == key]
        y = np.array([r["mean"] for r in rs])
        err = np.array([[r["mean"] - r["ci"][0], r["ci"][1] - r["mean"]] for r in rs]).T
        label = f"{key[0]} ({Path(key[1]).name})"
        for ax, x in zip(axes, ([r["nfe_per_crop"] for r in rs], [r["sec_per_utt"] for r in rs])):
            ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, label=label, ls="-" if len(rs) > 1 else "none")
        for r in rs:
            axes[0].annotate(r["setting"], (r["nfe_per_crop"], r["mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[0].set(xscale="log", xlabel="network evaluations per crop (samples x steps)", ylabel="IoU (%), 95% CI")
    axes[1].set(xscale="log", xlabel="CPU seconds per utterance (one thread)")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8)
    fig.suptitle("learned explainers: quality against cost (held-out rows)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--split", default="dev")
    ap.add_argument("--limit", type=int, default=48, help="rows explained per setting")
    ap.add_argument("--max-frames", type=int, default=None, help="explain each row's first N frames only")
    ap.add_argument("--segdiff", action="append", default=[], help="SegDiff checkpoint (repeatable)")
    ap.add_argument("--unet", action="append", default=[], help="U-Net checkpoint (repeatable)")
    ap.add_argument("--detector", help="ADDSegDiff's detector, if the checkpoint's path moved")
    ap.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"SAMPLESxSTEPS list (default {DEFAULT_SETTINGS})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--json", type=Path, help="write every row here; rows already in it for the same checkpoint, "
                    "setting, split, --limit and --max-frames are kept, not recomputed (add settings run by run)")
    a = ap.parse_args(argv)
    try:
        settings = [parse_setting(s) for s in a.settings.split(",") if s]
    except ValueError:
        ap.error(f"--settings {a.settings!r}: expected SAMPLESxSTEPS items such as 1x5 or 32xddpm")
    if not a.segdiff and not a.unet:
        ap.error("give at least one --segdiff or --unet checkpoint")
    torch.set_num_threads(a.threads)
    print(f"{'method':<12} {'setting':>8} {'NFE':>6} {'s/utt':>9} {'IoU':>6} [95% CI]  ({a.split}, {a.limit} rows"
          f"{f', first {a.max_frames} frames' if a.max_frames else ''})")
    scope = {"split": a.split, "limit": a.limit, "max_frames": a.max_frames}
    kept = json.loads(a.json.read_text()) if a.json and a.json.exists() else []
    in_scope = [r for r in kept if all(r.get(k) == v for k, v in scope.items())]
    done = {(r["checkpoint"], r["setting"]) for r in in_scope}
    for r in in_scope:
        print(_line(r) + "  (kept)")
    results = list(kept)
    for ck in a.unet:
        if (ck, "1 pass") not in done:
            results += [{**r, **scope} for r in unet_rows(ck, a)]
    for ck in a.segdiff:
        todo = [(s, k) for s, k in settings if (ck, f"{s}x{k or 'ddpm'}") not in done]
        results += [{**r, **scope} for r in segdiff_rows(ck, a, todo)]
        rs = [r for r in results if r["checkpoint"] == ck and all(r.get(k) == v for k, v in scope.items())]
        if not rs:
            continue
        c = choose(rs)
        print(f"-> {rs[0]['method']} {ck}: cheapest within 1 IoU point of the best ({max(r['mean'] for r in rs):.1f}): "
              f"{c['setting']} ({c['mean']:.1f}, {c['sec_per_utt']:.2f} s/utt)")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    if a.png:
        plot([r for r in results if all(r.get(k) == v for k, v in scope.items())], a.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
