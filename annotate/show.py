"""`annotate show` (one row as the paper's Fig. 1) and `annotate stats` (counts, coverage, durations)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from .core.audio import decode_bytes
from .core.dataset import array2d, build_config, open_dataset, read_table
from .core.figures import save_figure
from .core.spectral import MaskConfig, STFTConfig, log_magnitude, smooth, stft


def find_row(ds: str | Path, row_id: str) -> dict:
    """The row ``row_id`` of dataset ``ds`` (Array2D columns as numpy); KeyError naming the id if absent."""
    try:
        return open_dataset(ds).read_rows([row_id])[row_id]
    except KeyError:
        raise KeyError(f"id {row_id!r} not found in {ds} (list the ids with `annotate ids {ds}`)") from None


def list_ids(ds: str | Path, split: str | None = None, vocoder: str | None = None) -> list[str]:
    """Row ids of ``ds`` in shard order, optionally of one split and/or one vocoder."""
    t = read_table(ds, split, columns=["id", "vocoder"])
    if vocoder is not None:
        t = t.filter(pc.equal(t.column("vocoder"), vocoder))
    return t.column("id").to_pylist()


def show(ds: str | Path, row_id: str, out: str | Path | None = None) -> Path:
    """Write a PNG of one row: real, spoof, smoothed spoof G(Ms), relative difference D, mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = build_config(ds)
    stft_cfg, mask_cfg = STFTConfig(**cfg["stft"]), MaskConfig(**cfg["mask"])
    row = find_row(ds, row_id)
    if not row.get("real_audio"):  # a corpus without real twins (e.g. PartialSpoof): spectrogram and frame labels
        return _show_labelled(row, row_id, stft_cfg, out)
    real, sr = decode_bytes(row["real_audio"]["bytes"])
    real_lm = log_magnitude(stft(real, stft_cfg))
    spoof_lm = row["spoof_logmag"]
    smoothed = np.log(np.maximum(smooth(np.exp(spoof_lm), mask_cfg), 1e-8))
    d = row["diff"].astype(np.float32)
    panels = [("real (log |S|)", real_lm, "magma"), ("spoof (log |S|)", spoof_lm, "magma"),
              ("smoothed spoof log G(Ms)", smoothed, "magma"), ("D = |G(Ms)-G(Mb)| / |G(Mb)| (log10)", np.log10(d + 1e-3), "viridis"),
              (f"mask (D > q{mask_cfg.quantile:.2f}, {row['mask'].mean():.1%})", row["mask"], "gray_r")]
    dur = len(real) / sr
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels)), sharex=True)
    for ax, (title, img, cmap) in zip(axes, panels):
        ax.imshow(img.T, origin="lower", aspect="auto", cmap=cmap, extent=(0, dur, 0, sr / 2000))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(f"{row_id}  ({row['vocoder']}, speaker {row['speaker']}, {row['split']}, offset {row['offset']} samples)", fontsize=10)
    return save_figure(fig, out or f"{row_id}.png")


def _show_labelled(row: dict, row_id: str, stft_cfg: STFTConfig, out: str | Path | None) -> Path:
    """The picture of a row without a real twin: spoof log |S| over its frame labels (spoofed fraction per frame)."""
    import matplotlib.pyplot as plt

    sr = stft_cfg.sample_rate
    dur = row["num_samples"] / sr
    labels = np.asarray(row.get("frame_labels") or [], dtype=np.float32)
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 4.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    a.imshow(row["spoof_logmag"].T, origin="lower", aspect="auto", cmap="magma", extent=(0, dur, 0, sr / 2000))
    a.set_title("spoof (log |S|); no real twin, so no T-F mask", fontsize=9)
    a.set_ylabel("kHz")
    b.step(np.arange(labels.size) * stft_cfg.hop_length / sr, labels, where="mid", color="crimson")
    b.set_ylim(-0.05, 1.05)
    b.set_title(f"frame labels (spoofed fraction per frame, {float((labels > 0).mean()) if labels.size else 0:.1%} of frames)",
                fontsize=9)
    b.set_xlabel("time (s)")
    fig.suptitle(f"{row_id}  ({row['vocoder']}, speaker {row['speaker']}, {row['split']})", fontsize=10)
    return save_figure(fig, out or f"{row_id}.png")


def _mean(x: np.ndarray) -> float:
    """Mean over the finite values (NaN when none: rows without a mask or an alignment)."""
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def stats(ds: str | Path) -> dict:
    """Counts per split and vocoder, hours, mask coverage and alignment statistics."""
    t = read_table(ds, columns=["split", "vocoder", "num_samples", "align_score", "offset", "mask"])
    sr = build_config(ds)["stft"]["sample_rate"]
    mask_col = t.column("mask")
    cells = [array2d(mask_col[i]) for i in range(t.num_rows)]
    coverage = np.array([c.mean() if c is not None else np.nan for c in cells])  # NaN: no mask (no real twin)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (s, v) in enumerate(zip(t.column("split").to_pylist(), t.column("vocoder").to_pylist())):
        groups[(s, v)].append(i)
    ns = np.asarray(t.column("num_samples").to_numpy(), dtype=np.float64)
    table = []
    for (s, v), idx in sorted(groups.items()):
        table.append({"split": s, "vocoder": v, "rows": len(idx), "hours": float(ns[idx].sum() / sr / 3600),
                      "mean_seconds": float(ns[idx].mean() / sr), "mask_coverage": _mean(coverage[idx])})
    out = {"rows": t.num_rows, "hours": float(ns.sum() / sr / 3600), "mask_coverage": _mean(coverage),
           "align_score_mean": _mean(np.asarray(t.column("align_score").to_numpy(zero_copy_only=False), dtype=np.float64)),
           "abs_offset_ms_median": float(np.median(np.abs(t.column("offset").to_numpy())) * 1000 / sr),
           "by_split_vocoder": table}
    lines = [f"{'split':<8}{'vocoder':<28}{'rows':>7}{'hours':>9}{'mean s':>8}{'mask %':>8}"]
    lines += [f"{r['split']:<8}{r['vocoder']:<28}{r['rows']:>7}{r['hours']:>9.3f}{r['mean_seconds']:>8.2f}{100 * r['mask_coverage']:>8.2f}" for r in table]
    lines.append(f"total: {out['rows']} rows, {out['hours']:.3f} h, mask coverage {100 * out['mask_coverage']:.2f}%, "
                 f"mean align score {out['align_score_mean']:.3f}, median |offset| {out['abs_offset_ms_median']:.2f} ms")
    out["text"] = "\n".join(lines)
    return out
