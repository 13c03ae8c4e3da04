"""The ``explain`` run loop: one heatmap per spoof row of a split, written as a benchmark submission.

Resumable: rows are processed in fixed batches of ``batch_rows``; the batch of rows ``[lo, hi)`` is
written atomically to ``{out}.parts/part-{lo:07d}-{hi:07d}.parquet``, so a killed run restarted with
the same settings skips the finished parts. When every part exists they are merged into ``out`` and the parts folder removed.
Detector methods fit each utterance to the detector's input length (tile if shorter, evenly spaced
crops if longer; :func:`~baselines.rawwrapper.make_windows`) and map the crops' heatmaps back onto
the row's ``(frames, 257)`` grid.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from annotate.core.spectral import DEFAULT_STFT, STFTConfig

from .attnlrp import LRPConfig
from .chance import CHANCE, chance_heatmap, row_seed
from .methods import DETECTOR_METHODS, METHODS
from .shap import ShapConfig
VERSION = 1


@dataclass(frozen=True)
class ExplainConfig:
    """Everything that determines the heatmaps (recorded in the submission metadata)."""

    method: str
    dataset: str
    split: str = "test"
    detector: str | None = None
    seed: int = 0
    limit: int | None = None
    batch_rows: int = 8  # rows per resumable part file
    temporal: bool = False  # gradcam: 1-D maps (frames,) of the last temporal layer, for the temporal track
    shap: ShapConfig = field(default_factory=ShapConfig)
    lrp: LRPConfig = field(default_factory=LRPConfig)

    def settings(self) -> dict:
        """The method-specific settings (what goes into the metadata besides method/detector/dataset)."""
        if self.method in ("deepshap", "gradientshap"):
            keys = ("n_references", "batch", "extend_rescale") if self.method == "deepshap" else ("n_samples", "stdevs", "chunk")
            s = {k: getattr(self.shap, k) for k in keys}
            if self.method == "gradientshap":
                s["baseline"] = "zero log-magnitude"
            else:
                s["references"] = "random bona fide (real_audio) rows of the train split, cropped/tiled to the detector length"
            return s
        if self.method == "attnlrp":
            return self.lrp.to_dict()
        if self.method == "gradcam" and self.temporal:
            return {"layer": "detector.gradcam_layer", "relu": True, "input": "the whole utterance in one pass",
                    "output": "1-D, one value per STFT frame (temporal track)"}
        if self.method == "gradcam":
            return {"layer": "detector.gradcam_layer", "relu": True, "spread": "constant over frequency"}
        if self.method == "smoothed-random":
            return {"kernel": "Eq. 2 Gaussian (annotate.core.spectral.smooth)"}
        return {}


# ----------------------------------------------------------------------------------------------- explainers


def _stft_config(ds: str | Path) -> STFTConfig:
    from annotate.core.dataset import build_config

    try:
        d = build_config(ds).get("stft")
    except FileNotFoundError:
        return DEFAULT_STFT
    return STFTConfig(**d) if d else DEFAULT_STFT


def load_references(ds: str | Path, n: int, length: int, seed: int, cfg: STFTConfig = DEFAULT_STFT, split: str = "train"):
    """``n`` random bona fide log-magnitudes ``(n, frames, F)``: rows of ``split`` drawn with ``seed``, their
    ``real_audio`` cropped at a random start (or tiled) to ``length`` samples. Reads only the chosen rows."""
    import torch

    from annotate.core.audio import decode_bytes
    from annotate.core.dataset import open_dataset

    from .rawwrapper import spectrogram

    d = open_dataset(ds)
    paths = d.files(split)
    if not paths:
        raise FileNotFoundError(f"no {split!r} shards in {ds}: DeepSHAP draws its bona fide references from there")
    groups = [(p, g, d.parquet(p).metadata.row_group(g).num_rows) for p in paths for g in range(d.parquet(p).num_row_groups)]
    total = sum(k for _, _, k in groups)
    if total < 2:
        raise ValueError(f"{ds} split {split!r} has {total} rows: DeepSHAP needs at least 2 bona fide references")
    rng = np.random.default_rng([int(seed), 0x5EED])
    chosen = np.sort(rng.choice(total, size=min(n, total), replace=False))
    waves, start = [], 0
    for p, g, k in groups:
        local = chosen[(chosen >= start) & (chosen < start + k)] - start
        if local.size:
            cells = d.parquet(p).read_row_group(g, columns=["real_audio"]).column("real_audio").to_pylist()
            for i in local:
                x, _ = decode_bytes(cells[int(i)]["bytes"])
                if x.size >= length:
                    s = int(rng.integers(0, x.size - length + 1))
                    waves.append(x[s : s + length])
                else:
                    waves.append(np.tile(x, int(np.ceil(length / x.size)))[:length])
        start += k
    logmag, _ = spectrogram(np.stack(waves).astype(np.float32), cfg)
    return logmag.to(torch.float32)


class DetectorExplainer:
    """Runs one detector method on an utterance: windows -> (logM, P) -> attribution -> utterance grid."""

    def __init__(self, cfg: ExplainConfig, stft_cfg: STFTConfig = DEFAULT_STFT, detector=None):
        import torch

        from training.detector import load_detector

        from .rawwrapper import RawWrapper, detector_length

        if detector is None:
            if not cfg.detector:
                raise ValueError(f"--method {cfg.method} explains a detector: pass --detector CKPT (a `train detector` folder)")
            detector = load_detector(cfg.detector)
        self.cfg, self.stft = cfg, stft_cfg
        self.detector = detector.eval()
        self.length = detector_length(detector)
        self.wrapper = RawWrapper(self.detector, self.length, stft_cfg).eval()
        self.references = None
        self.gaps: list[float] = []
        self.unhandled: set[str] = set()
        if cfg.method == "deepshap":
            self.references = load_references(cfg.dataset, cfg.shap.n_references, self.length, cfg.seed, stft_cfg)
        self._torch = torch

    def attribute(self, logmag, phase, seed: int) -> np.ndarray:
        """Crop heatmaps ``(W, frames, F)``."""
        torch, m = self._torch, self.cfg.method
        if m == "deepshap":
            from .shap import deepshap

            attr, gap = deepshap(self.wrapper, logmag, phase, self.references, self.cfg.shap)
            self.gaps.append(gap)
            return attr.numpy()
        if m == "gradientshap":
            from .shap import gradientshap

            return gradientshap(self.wrapper, logmag, phase, seed, self.cfg.shap).numpy()
        if m == "attnlrp":
            from .attnlrp import attnlrp

            res = attnlrp(lambda mag: self.wrapper.from_magnitude(mag, phase)[:, 1], torch.exp(logmag), self.wrapper, self.cfg.lrp)
            self.unhandled.update(res.unhandled)
            return res.relevance.numpy()
        if m == "gradcam":
            from .gradcam import gradcam

            return gradcam(self.wrapper, logmag, phase)
        raise ValueError(f"{m!r} is not a detector method")

    def __call__(self, row: dict) -> np.ndarray:
        from annotate.core.audio import decode_bytes

        from .rawwrapper import make_windows, spectrogram

        audio = row.get("spoof_audio") or {}
        if not audio.get("bytes"):
            raise ValueError(f"row {row['id']}: empty spoof_audio cell; rebuild the dataset")
        x, sr = decode_bytes(audio["bytes"])
        if sr != self.stft.sample_rate:
            raise ValueError(f"row {row['id']}: audio at {sr} Hz, the STFT config expects {self.stft.sample_rate} Hz")
        if self.cfg.temporal:  # one pass over the whole utterance (crops would leave steps at their joins)
            from .gradcam import gradcam_time
            from .rawwrapper import RawWrapper

            logmag, phase = spectrogram(x[None], self.stft)
            return gradcam_time(RawWrapper(self.detector, x.size, self.stft).eval(), logmag, phase)[0].astype(np.float32)
        win = make_windows(x, self.length, self.stft)
        logmag, phase = spectrogram(win.crops, self.stft)
        return win.to_utterance(self.attribute(logmag, phase, row_seed(self.cfg.seed, row["id"])))

    def report(self) -> dict:
        out = {}
        if self.gaps:
            out["deeplift_convergence_gap_mean"] = float(np.mean(self.gaps))
        if self.unhandled:
            out["attnlrp_plain_gradient_ops"] = sorted(self.unhandled)
        return out


def make_explainer(cfg: ExplainConfig, stft_cfg: STFTConfig = DEFAULT_STFT, detector=None) -> Callable[[dict], np.ndarray]:
    """A callable ``row -> heatmap (frames, F)`` for ``cfg.method``."""
    if cfg.method in DETECTOR_METHODS:
        return DetectorExplainer(cfg, stft_cfg, detector)
    if cfg.method in CHANCE:
        return lambda row: chance_heatmap(
            cfg.method, row["id"], (stft_cfg.n_frames(int(row["num_samples"])), stft_cfg.n_freq), cfg.seed, row.get("spoof_logmag")
        )
    raise ValueError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")


def columns(method: str) -> list[str]:
    cols = ["id", "num_samples"]
    if method in DETECTOR_METHODS:
        cols.append("spoof_audio")
    if method == "energy":
        cols.append("spoof_logmag")
    return cols


# ----------------------------------------------------------------------------------------------- run loop


def metadata(cfg: ExplainConfig, stft_cfg: STFTConfig) -> dict:
    return {
        "method": cfg.method, "settings": cfg.settings(), "detector": str(cfg.detector) if cfg.detector and cfg.method in DETECTOR_METHODS else None,
        "dataset": str(cfg.dataset), "split": cfg.split, "seed": cfg.seed, "limit": cfg.limit,
        "stft": stft_cfg.to_dict(), "explain_version": VERSION,
    }


def _row_count(ds, split: str) -> int:
    from annotate.core.dataset import row_count

    return row_count(ds, split)


def parts_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def run(cfg: ExplainConfig, out: str | Path, *, progress: bool = True, detector=None,
        shard: tuple[int, int] | None = None) -> Path:
    """Explain every spoof row of ``cfg.split`` (the first ``cfg.limit``; ``shard`` (I, N): only part I of N of
    them, for ``benchmark merge``) into the submission ``out``."""
    from tqdm import tqdm

    from annotate.core.dataset import iter_rows
    from annotate.core.submission import SubmissionWriter, iter_heatmaps, shard_metadata, shard_rows

    if cfg.method not in DETECTOR_METHODS + CHANCE:
        raise ValueError(f"unknown method {cfg.method!r} for this run loop; choose from {', '.join(DETECTOR_METHODS + CHANCE)}")
    if cfg.temporal and cfg.method != "gradcam":
        raise ValueError(f"--temporal writes 1-D Grad-CAM maps: use it with --method gradcam, not {cfg.method}")
    ndim = 1 if cfg.temporal else 2
    out = Path(out)
    stft_cfg = _stft_config(cfg.dataset)
    n_rows = _row_count(cfg.dataset, cfg.split)
    if cfg.limit is not None:
        n_rows = min(n_rows, max(0, int(cfg.limit)))
    meta = {**metadata(cfg, stft_cfg), **shard_metadata(shard, n_rows)}
    first, last = shard_rows(n_rows, shard)
    parts = parts_dir(out)
    parts.mkdir(parents=True, exist_ok=True)
    settings_file = parts / "settings.json"
    key = json.dumps({**{k: v for k, v in meta.items() if k != "limit"}, "batch_rows": cfg.batch_rows}, sort_keys=True, default=str)
    if settings_file.exists() and settings_file.read_text() != key:
        raise ValueError(f"{parts} holds parts written with other settings; delete it or choose another -o")
    settings_file.write_text(key)

    ranges = [(lo, min(lo + cfg.batch_rows, last)) for lo in range(first, last, cfg.batch_rows)]
    files = [parts / f"part-{lo:07d}-{hi:07d}.parquet" for lo, hi in ranges]
    explainer = None
    seconds, explained = 0.0, 0
    rows = iter_rows(cfg.dataset, cfg.split, columns(cfg.method), start=first, stop=last)
    bar = tqdm(total=last - first, desc=f"explain {cfg.method} {cfg.split}", unit="utt", disable=not progress)
    for (lo, hi), part in zip(ranges, files):
        if part.exists():
            for _ in range(hi - lo):
                next(rows)
            bar.update(hi - lo)
            continue
        if explainer is None:
            explainer = make_explainer(cfg, stft_cfg, detector)
        with SubmissionWriter(part, meta, ndim=ndim) as w:
            for _ in range(hi - lo):
                row = next(rows)
                t0 = time.perf_counter()
                heat = explainer(row)
                seconds += time.perf_counter() - t0
                explained += 1
                expected = (stft_cfg.n_frames(int(row["num_samples"])),) + (() if cfg.temporal else (stft_cfg.n_freq,))
                if heat.shape != expected:
                    raise RuntimeError(f"row {row['id']}: {cfg.method} made a {heat.shape} heatmap, the row's grid is {expected}")
                w.write(row["id"], heat)
                bar.update(1)
    bar.close()

    final = dict(meta)
    if explained:
        final["seconds_per_utterance"] = seconds / explained
    if isinstance(explainer, DetectorExplainer):
        final.update(explainer.report())
    with SubmissionWriter(out, final, ndim=ndim) as w:
        for f in files:
            for rid, heat, problem in iter_heatmaps([f]):
                if problem is not None:
                    raise RuntimeError(f"{f}: row {rid} is {problem}; delete {parts} and run again")
                w.write(rid, heat)
    shutil.rmtree(parts)
    return out


def run_segdiff(method: str, checkpoint: str | None, dataset: str, split: str, out: str | Path, *, seed: int = 0,
                limit: int | None = None, n_samples: int = 32, ddim_steps: int | None = None, detector: str | None = None,
                progress: bool = True, max_batch: int | None = None, hop: int | None = None,
                shard: tuple[int, int] | None = None) -> Path:
    """SpecSegDiff / ADDSegDiff heatmaps through ``training.segdiff.infer.explain_split``."""
    if not checkpoint:
        raise ValueError(f"--method {method} needs --checkpoint CKPT (a `train segdiff` folder)")
    try:
        from training.segdiff.infer import explain_split, load_checkpoint
    except ImportError as e:
        raise ImportError(f"--method {method} needs training.segdiff.infer.explain_split, which is not importable here ({e})") from None
    _, seg_cfg, _ = load_checkpoint(checkpoint)
    kind = "specsegdiff" if seg_cfg.model.condition == "spec" else "addsegdiff"
    if kind != method:
        raise ValueError(f"{checkpoint} is a {kind} checkpoint (condition {seg_cfg.model.condition!r}); use --method {kind}")
    kw = {"detector": detector} if detector else {}
    if max_batch is not None:
        kw["max_batch"] = max_batch
    return Path(explain_split(checkpoint, dataset, split, out, n_samples=n_samples, ddim_steps=ddim_steps, seed=seed,
                              limit=limit, progress=progress, hop=hop, shard=shard, **kw))


def run_unet(checkpoint: str | None, dataset: str, split: str, out: str | Path, *, limit: int | None = None,
             progress: bool = True, shard: tuple[int, int] | None = None) -> Path:
    """Supervised U-Net heatmaps (sigmoid probabilities) through ``training.unet.infer.explain_split``."""
    if not checkpoint:
        raise ValueError("--method unet needs --checkpoint CKPT (a `train unet` folder)")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1, got {limit}")
    try:
        from training.unet.infer import explain_split
    except ImportError as e:
        raise ImportError(f"--method unet needs training.unet, which is not importable here ({e})") from None
    return Path(explain_split(checkpoint, dataset, split, out, limit=limit, progress=progress, shard=shard))
