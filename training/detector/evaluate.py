"""Scoring a split: the equal error rate and the average precision of the spoof class (mAP), overall and per
vocoder (each vocoder's spoofs against all bona fide items of the split), with a score-histogram + DET-curve PNG.
Any built dataset can be evaluated, whatever the model was trained on."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from annotate.core.figures import save_figure

from .data import AudioStore, Item, MultiStore, index_split, windows
from .model import Wav2Vec2AASIST, load_detector


def eer(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) with spoof = positive class (label 1) and higher score = more spoof-like.
    The EER is read where the false-positive and false-negative rates cross on sklearn's ROC curve,
    interpolated linearly between the two neighbouring operating points."""
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels)
    if labels.min() == labels.max():
        raise ValueError("EER needs both bona fide and spoof items")
    fpr, tpr, thr = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    d = fnr - fpr  # decreasing from 1 to -1 along the curve
    i = int(np.argmax(d <= 0))  # first point where fnr <= fpr
    if i == 0:
        return float(fpr[0]), float(thr[0])
    a, b = d[i - 1], d[i]
    t = a / (a - b) if a != b else 0.0
    e = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
    return float(e), float(thr[i])


@torch.no_grad()
def run_items(model: Wav2Vec2AASIST, store: AudioStore | MultiStore, items: Sequence[Item], *, batch_size: int = 16,
              max_windows: int = 8, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per item: mean logits over evenly spaced crops covering the utterance, and the mean embedding.
    Returns (logits (N, 2), embeddings (N, E))."""
    from tqdm import tqdm

    model.eval()
    n = model.config.crop
    crops, owner = [], []
    for k, it in enumerate(items):
        w = windows(store.wave(it), n, max_windows)
        crops.append(w)
        owner += [k] * len(w)
    crops = np.concatenate(crops) if crops else np.zeros((0, n), np.float32)
    owner = np.asarray(owner)
    logits, embs = [], []
    device = next(model.parameters()).device
    for s in tqdm(range(0, len(crops), batch_size), disable=not progress, desc="score"):
        x = torch.from_numpy(crops[s : s + batch_size]).to(device)
        emb = model.backend.embed(model._frontend(x)[0])
        logits.append(model.backend.out(emb).float().cpu().numpy())
        embs.append(emb.float().cpu().numpy())
    logits = np.concatenate(logits) if logits else np.zeros((0, 2), np.float32)
    embs = np.concatenate(embs) if embs else np.zeros((0, model.config.backend.embed_dim), np.float32)
    L = np.zeros((len(items), 2), np.float64)
    E = np.zeros((len(items), embs.shape[1]), np.float64)
    cnt = np.bincount(owner, minlength=len(items)).astype(np.float64)
    np.add.at(L, owner, logits)
    np.add.at(E, owner, embs)
    return (L / cnt[:, None]).astype(np.float32), (E / cnt[:, None]).astype(np.float32)


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of the spoof class (label 1 = positive, higher score = more spoof-like): the area
    under the precision-recall curve as scikit-learn's ``average_precision_score`` computes it (the "mAP"
    reported with the EER)."""
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels)
    if labels.min() == labels.max():
        raise ValueError("average precision needs both bona fide and spoof items")
    return float(average_precision_score(labels, scores, pos_label=1))


def metrics(items: Sequence[Item], scores: np.ndarray) -> dict:
    """EER and mAP (spoof average precision) overall and per vocoder, with counts."""
    labels = np.array([it.label for it in items])
    vocs = np.array([it.vocoder for it in items])
    overall, thr = eer(labels, scores)
    per = {}
    for v in sorted(set(vocs[labels == 1])):
        sel = (labels == 0) | (vocs == v)
        per[str(v)] = {"eer": eer(labels[sel], scores[sel])[0], "map": average_precision(labels[sel], scores[sel]),
                       "n_spoof": int((vocs == v).sum())}
    return {"eer": overall, "map": average_precision(labels, scores), "threshold": thr,
            "n_bona": int((labels == 0).sum()), "n_spoof": int((labels == 1).sum()), "per_vocoder": per}


def plot(items: Sequence[Item], scores: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Left: score histograms (bona fide and each vocoder); right: DET curves per vocoder (normal-deviate axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm
    from sklearn.metrics import det_curve

    labels = np.array([it.label for it in items])
    vocs = np.array([it.vocoder for it in items])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(scores.min(), scores.max() + 1e-6, 30)
    a.hist(scores[labels == 0], bins=bins, alpha=0.6, label="bona fide", color="k")
    for v in sorted(set(vocs[labels == 1])):
        a.hist(scores[vocs == v], bins=bins, alpha=0.5, label=v)
        sel = (labels == 0) | (vocs == v)
        fpr, fnr, _ = det_curve(labels[sel], scores[sel])
        clip = lambda p: norm.ppf(np.clip(p, 1e-3, 1 - 1e-3))
        b.plot(clip(fpr), clip(fnr), marker="o", ms=3, label=f"{v} (EER {100 * eer(labels[sel], scores[sel])[0]:.1f}%)")
    a.set_xlabel("spoof score = logit[spoof] - logit[bona fide]")
    a.set_ylabel("count")
    a.legend(fontsize=8)
    ticks = np.array([0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99])
    b.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    b.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    b.set_xlabel("false alarm rate (%)")
    b.set_ylabel("miss rate (%)")
    b.set_title("DET per vocoder")
    b.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def evaluate(detector: str | Path | Wav2Vec2AASIST, ds: str | Path, split: str = "test", out: str | Path | None = None,
             *, batch_size: int = 16, max_windows: int = 8, progress: bool = True, device: str = "cpu") -> dict:
    """Score every bona fide (deduplicated) and spoof item of ``split``; write scores.csv, metrics.json, eval.png."""
    model = load_detector(detector, device) if not isinstance(detector, torch.nn.Module) else detector
    items = index_split(ds, split)
    logits, _ = run_items(model, AudioStore(ds, split), items, batch_size=batch_size, max_windows=max_windows, progress=progress)
    scores = logits[:, 1] - logits[:, 0]
    res = {"split": split, "dataset": str(ds), **metrics(items, scores)}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "scores.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "label", "vocoder", "score", "logit_bonafide", "logit_spoof"])
            for it, s, l in zip(items, scores, logits):
                w.writerow([it.id, it.label, it.vocoder, f"{s:.6f}", f"{l[0]:.6f}", f"{l[1]:.6f}"])
        (out / "metrics.json").write_text(json.dumps(res, indent=2))
        plot(items, scores, out / "eval.png", title=f"{split}: EER {100 * res['eer']:.1f}%")
    return res
