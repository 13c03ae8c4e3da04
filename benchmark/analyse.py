"""`benchmark analyse`: the partially-spoofed-audio analysis of 1-D activations (Grad-CAM or any temporal map).

For a submission on a dataset with ``frame_labels`` (``annotate partial``), per utterance:

- mean / std / peak of the activation normalised by the split's largest value (per-utterance min-max would
  make every peak 1), and the share of frames above 0.3/0.5/0.7 of the per-utterance min-max map;
  summarised for bona fide vs spoof rows and per vocoder (attack);
- where the peak lies: within 50 ms of a splice boundary (vs the share of frames that are, i.e. what a
  uniformly placed peak would give), inside the spoofed frames, in the first/last 100 ms;
- Pearson correlation of the activation with an energy curve (frame log-energy of the tested audio, from
  ``spoof_logmag``) and with the speech-activity curve it gives (frames within 35 dB of the utterance's loudest);

then a JSON summary and a PNG (the distributions, and a few utterances: waveform, labels, activation).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from annotate.core.dataset import dataset_name

from .temporal import THRESHOLDS, iter_temporal_heatmaps, load_temporal_truth, minmax
from .submission import SubmissionError, read_metadata


@dataclass(frozen=True)
class AnalyseConfig:
    boundary_ms: float = 50.0  # a peak this close to a splice boundary counts as "at the boundary"
    edge_ms: float = 100.0  # first/last stretch checked for edge effects
    vad_db: float = 35.0  # speech activity: frames within this many dB of the utterance's loudest frame
    examples: int = 3  # utterances drawn in the PNG


def frame_energy_db(spoof_logmag: np.ndarray) -> np.ndarray:
    """Frame log-energy (dB) from a log-magnitude spectrogram ``(frames, F)``."""
    power = np.exp(2.0 * np.asarray(spoof_logmag, dtype=np.float64)).mean(axis=1)
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _stats(v: list[float]) -> dict:
    x = np.asarray([u for u in v if np.isfinite(u)], dtype=np.float64)
    if x.size == 0:
        return {"n": 0, "mean": None, "std": None, "median": None}
    return {"n": int(x.size), "mean": float(x.mean()), "std": float(x.std()), "median": float(np.median(x))}


def analyse(sub: str | Path, ds: str | Path, split: str = "test", out: str | Path | None = None,
            cfg: AnalyseConfig = AnalyseConfig()) -> dict:
    """Run the analysis; writes ``analysis.json`` and ``analysis.png`` into ``out`` and returns the summary."""
    from .score import iter_split
    from .temporal import _validated, check_map

    truth = load_temporal_truth(ds, split)
    files, log = _validated(sub, truth)
    maps: dict[str, np.ndarray] = {}
    for i, h, problem in iter_temporal_heatmaps(files):
        if i in truth.labels and check_map(i, h, problem, truth.labels[i].size, log):
            maps[i] = np.asarray(h, dtype=np.float64)
    if not log.ok:
        raise SubmissionError(log.error_messages())
    out = Path(out) if out else Path(sub).with_name(Path(sub).stem + "_analysis")
    out.mkdir(parents=True, exist_ok=True)
    hop, sr = truth.hop, truth.sample_rate
    scale = max(float(np.max(np.abs(m))) for m in maps.values()) or 1.0
    per_utt = []
    for row in iter_split(ds, split, ["id", "vocoder", "spans", "spoof_logmag", "num_samples"], arrays=("spoof_logmag",)):
        i = row["id"]
        h, lab = maps[i], truth.labels[i]
        norm, mm = h / scale, minmax(h)
        n = int(row["num_samples"])
        centres = np.arange(h.size) * hop
        bounds = np.array([b for span in (row["spans"] or []) for b in span if 0 < b < n], dtype=np.float64)
        near = (np.abs(centres[:, None] - bounds[None, :]).min(axis=1) <= cfg.boundary_ms * sr / 1000
                if bounds.size else np.zeros(h.size, bool))
        edge = (centres < cfg.edge_ms * sr / 1000) | (centres >= n - cfg.edge_ms * sr / 1000)
        energy = frame_energy_db(row["spoof_logmag"])
        vad = (energy >= energy.max() - cfg.vad_db).astype(np.float64)
        peak = int(np.argmax(h))
        per_utt.append({
            "id": i, "vocoder": row["vocoder"], "spoof": bool(lab.any()),
            "mean": float(norm.mean()), "std": float(norm.std()), "peak": float(norm.max()),
            **{f"above_{t}": float((mm > t).mean()) for t in THRESHOLDS},
            "peak_near_boundary": bool(near[peak]) if bounds.size else None,
            "near_boundary_share": float(near.mean()) if bounds.size else None,
            "peak_in_spoof": bool(lab[peak]) if lab.any() else None,
            "peak_at_edge": bool(edge[peak]), "edge_share": float(edge.mean()),
            "edge_mean": float(norm[edge].mean()) if edge.any() else None,
            "inner_mean": float(norm[~edge].mean()) if (~edge).any() else None,
            "r_energy": _pearson(h, energy), "r_vad": _pearson(h, vad),
        })
    summary = _summarise(per_utt, cfg)
    summary.update({"submission": str(Path(sub).resolve()), "method": read_metadata(sub), "dataset": dataset_name(ds),
                    "split": split, "normalisation": f"activation / {scale:.6g} (the split's largest |value|)",
                    "config": asdict(cfg)})
    (out / "analysis.json").write_text(json.dumps(_clean(summary), indent=2) + "\n")
    (out / "per_utterance.jsonl").write_text("".join(json.dumps(_clean(u)) + "\n" for u in per_utt))
    method = summary["method"].get("method") or Path(sub).stem
    summary["png"] = str(plot(per_utt, maps, truth, ds, split, out / "analysis.png", scale, cfg, title=str(method)))
    summary["out"] = str(out)
    return summary


def _summarise(per_utt: list[dict], cfg: AnalyseConfig) -> dict:
    keys = ["mean", "std", "peak"] + [f"above_{t}" for t in THRESHOLDS] + ["r_energy", "r_vad", "edge_mean", "inner_mean"]

    def block(rows: list[dict]) -> dict:
        d = {k: _stats([r[k] for r in rows if r[k] is not None]) for k in keys}
        nb = [r for r in rows if r["peak_near_boundary"] is not None]
        d["n"] = len(rows)
        d["peak_near_boundary_share"] = float(np.mean([r["peak_near_boundary"] for r in nb])) if nb else None
        d["near_boundary_frame_share"] = float(np.mean([r["near_boundary_share"] for r in nb])) if nb else None
        sp = [r for r in rows if r["peak_in_spoof"] is not None]
        d["peak_in_spoof_share"] = float(np.mean([r["peak_in_spoof"] for r in sp])) if sp else None
        d["peak_at_edge_share"] = float(np.mean([r["peak_at_edge"] for r in rows])) if rows else None
        d["edge_frame_share"] = float(np.mean([r["edge_share"] for r in rows])) if rows else None
        return d

    bona = [r for r in per_utt if not r["spoof"]]
    spoof = [r for r in per_utt if r["spoof"]]
    out = {"n_utterances": len(per_utt), "bonafide": block(bona), "spoof": block(spoof),
           "per_vocoder": {v: block([r for r in per_utt if r["vocoder"] == v]) for v in sorted({r["vocoder"] for r in per_utt})}}
    if bona and spoof:
        from sklearn.metrics import roc_auc_score

        y = [r["spoof"] for r in per_utt]
        out["utterance_auc"] = {k: 100.0 * float(roc_auc_score(y, [r[k] for r in per_utt])) for k in ("mean", "peak")}
    return out


def plot(per_utt: list[dict], maps: dict, truth, ds, split: str, path: Path, scale: float, cfg: AnalyseConfig,
         title: str = "temporal activation") -> Path:
    """Distributions (bona fide vs spoof: mean and peak per utterance) and example utterances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from annotate.core.audio import decode_bytes
    from annotate.core.figures import save_figure

    from .score import iter_split

    spoof = [r for r in per_utt if r["spoof"]]
    bona = [r for r in per_utt if not r["spoof"]]
    # examples: the spoof rows with the highest and lowest peak-in-spoof activations, plus one bona fide row
    ex_ids = [r["id"] for r in sorted(spoof, key=lambda r: -r["peak"])[: max(1, cfg.examples - 1)]]
    ex_ids += [r["id"] for r in bona[:1]]
    ex_ids = ex_ids[: cfg.examples]
    examples = {}
    for row in iter_split(ds, split, ["id", "vocoder", "spoof_audio", "spans"]):
        if row["id"] in ex_ids:
            examples[row["id"]] = row
    fig = plt.figure(figsize=(12, 3.0 + 2.2 * len(ex_ids)))
    gs = fig.add_gridspec(1 + len(ex_ids), 3, height_ratios=[1.3] + [1] * len(ex_ids))
    for k, (key, name) in enumerate([("mean", "mean activation"), ("peak", "peak activation"), ("r_vad", "corr. with speech activity")]):
        ax = fig.add_subplot(gs[0, k])
        data = [[r[key] for r in grp if r[key] is not None and np.isfinite(r[key])] for grp in (bona, spoof)]
        bins = np.linspace(min(min(d, default=0) for d in data), max(max(d, default=1) for d in data) + 1e-9, 20)
        for d, lab, c in zip(data, ("bona fide", "spoof"), ("tab:blue", "tab:red")):
            if d:
                ax.hist(d, bins=bins, alpha=0.6, label=f"{lab} (n={len(d)})", color=c)
        ax.set_title(f"{name} per utterance", fontsize=9)
        ax.legend(fontsize=7)
    for j, i in enumerate(ex_ids):
        row = examples[i]
        ax = fig.add_subplot(gs[1 + j, :])
        x, sr = decode_bytes(row["spoof_audio"]["bytes"])
        t = np.arange(x.size) / sr
        ax.plot(t, x / (np.abs(x).max() or 1) * 0.5 + 0.5, color="0.6", lw=0.4, label="waveform")
        for a, b in row["spans"] or []:
            ax.axvspan(a / sr, b / sr, color="tab:red", alpha=0.15, label="spoofed span" if a == row["spans"][0][0] else None)
        h = maps[i]
        ft = np.arange(h.size) * truth.hop / sr
        ax.step(ft, truth.labels[i].astype(float), where="mid", color="tab:red", lw=0.8, label="frame labels")
        ax.plot(ft, h / scale, color="k", lw=1.2, label="activation (split-normalised)")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlim(0, t[-1] if t.size else 1)
        ax.set_title(f"{i} ({row['vocoder']})", fontsize=9)
        if j == 0:
            ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncol=4, frameon=False)
    fig.axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"{title}: {len(bona)} bona fide, {len(spoof)} spoof utterances", fontsize=10)
    return save_figure(fig, path)


def _clean(obj):
    from .score import _clean as clean

    return clean(obj)


def format_summary(s: dict) -> str:
    """A few lines for the terminal."""
    def f(v, pct=False):
        return "-" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3f}")

    lines = [f"{s['n_utterances']} utterances ({s['bonafide']['n']} bona fide, {s['spoof']['n']} spoof); {s['normalisation']}"]
    for name in ("bonafide", "spoof"):
        b = s[name]
        lines.append(f"  {name:<9s} mean {f(b['mean']['mean'])}  std {f(b['std']['mean'])}  peak {f(b['peak']['mean'])}  "
                     f"r(energy) {f(b['r_energy']['mean'])}  r(VAD) {f(b['r_vad']['mean'])}  peak at edge {f(b['peak_at_edge_share'], True)}")
    sp = s["spoof"]
    lines.append(f"  spoof peaks within 50 ms of a splice boundary: {f(sp['peak_near_boundary_share'], True)} "
                 f"(frames there: {f(sp['near_boundary_frame_share'], True)}); peaks inside spoofed frames: {f(sp['peak_in_spoof_share'], True)}")
    if "utterance_auc" in s:
        lines.append(f"  bona fide vs spoof from the activation: AUC {s['utterance_auc']['mean']:.1f} (mean), {s['utterance_auc']['peak']:.1f} (peak)")
    return "\n".join(lines)
