"""Neural collapse (seed paper "Audio Deep Fake Detection"): class means of the penultimate embedding,
NC sampling of training points nearest their class mean (fake class: after a K-means step), and
NC explanations (distances to the real/fake means, nearest-mean label vs the model's prediction)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from annotate.core.figures import save_figure


def class_means(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(2, E): row 0 = mean bona fide embedding, row 1 = mean spoof embedding."""
    labels = np.asarray(labels)
    for c in (0, 1):
        if not (labels == c).any():
            raise ValueError(f"no items of class {c} ({'bona fide' if c == 0 else 'spoof'}) to average")
    return np.stack([emb[labels == c].mean(0) for c in (0, 1)])


def _nearest(emb: np.ndarray, centre: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` rows nearest ``centre`` (ties broken by index: stable sort)."""
    d = np.linalg.norm(emb - centre, axis=1)
    return np.argsort(d, kind="stable")[:k]


def _allocate(sizes: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` picks over clusters proportionally to their sizes (largest remainder, capped by size)."""
    n = min(n, int(sizes.sum()))
    quota = sizes / sizes.sum() * n
    take = np.minimum(np.floor(quota).astype(int), sizes)
    order = np.lexsort((np.arange(len(sizes)), -(quota - np.floor(quota))))  # largest remainder first, then index
    while take.sum() < n:
        for c in order:
            if take.sum() < n and take[c] < sizes[c]:
                take[c] += 1
    return take


def select(emb: np.ndarray, labels: np.ndarray, n_per_class: int, *, clusters: int = 4, seed: int = 0) -> dict:
    """NC sampling: the ``n_per_class`` bona fide items nearest the bona fide mean, and ``n_per_class``
    spoof items chosen by K-means (``clusters`` clusters, seeded) on the spoof embeddings, each cluster
    contributing in proportion to its size its items nearest its centre.

    Returns ``{"index": (M,) item indices, "cluster": (M,) (-1 for bona fide), "distance": (M,),
    "means": (2, E)}``; raises if a class has fewer than ``n_per_class`` items (the selection is balanced)."""
    from sklearn.cluster import KMeans

    labels = np.asarray(labels)
    means = class_means(emb, labels)
    real = np.flatnonzero(labels == 0)
    fake = np.flatnonzero(labels == 1)
    for name, idx in (("bona fide", real), ("spoof", fake)):
        if len(idx) < n_per_class:
            raise ValueError(f"--nc-per-class {n_per_class} but only {len(idx)} {name} training items; lower it")
    pick_r = real[_nearest(emb[real], means[0], n_per_class)]
    index, cluster, dist = list(pick_r), [-1] * len(pick_r), list(np.linalg.norm(emb[pick_r] - means[0], axis=1))
    k = max(1, min(clusters, len(fake)))
    km = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(emb[fake].astype(np.float64))
    sizes = np.bincount(km.labels_, minlength=k)
    take = _allocate(sizes, n_per_class)
    for c in range(k):
        members = fake[km.labels_ == c]
        chosen = members[_nearest(emb[members], km.cluster_centers_[c], int(take[c]))]
        index += list(chosen)
        cluster += [c] * len(chosen)
        dist += list(np.linalg.norm(emb[chosen] - km.cluster_centers_[c], axis=1))
    return {"index": np.asarray(index, dtype=int), "cluster": np.asarray(cluster), "distance": np.asarray(dist),
            "means": means, "centres": km.cluster_centers_}


def explain(emb: np.ndarray, logits: np.ndarray, means: np.ndarray) -> dict:
    """Per input: Euclidean distances to the bona fide and spoof means, the nearest-mean label
    (0 bona fide, 1 spoof), the model's predicted label (argmax of logits), whether they agree, and the
    model's confidence (its largest softmax probability)."""
    from scipy.special import softmax

    d_real = np.linalg.norm(emb - means[0], axis=1)
    d_fake = np.linalg.norm(emb - means[1], axis=1)
    nc_label = (d_fake < d_real).astype(int)
    logits = np.asarray(logits, dtype=np.float64)
    pred = logits.argmax(1)
    p_max = softmax(logits, axis=1).max(1) if len(logits) else np.zeros(0)
    return {"d_real": d_real, "d_fake": d_fake, "nc_label": nc_label, "pred": pred, "agree": nc_label == pred,
            "p_max": p_max}


def summary(expl: dict, labels: np.ndarray, scores: np.ndarray, confidence: float = 0.9) -> dict:
    """Agreement rate of nearest-mean vs model labels (on all inputs, and on the confidently classified ones:
    max softmax >= ``confidence``), the NC classifier's accuracy, and the Spearman correlation between the NC
    margin (d_real - d_fake) and the model's spoof score."""
    from scipy.stats import spearmanr

    margin = expl["d_real"] - expl["d_fake"]
    rho = spearmanr(margin, scores).statistic if len(scores) > 2 else float("nan")
    sure = expl["p_max"] >= confidence
    return {"agreement": float(np.mean(expl["agree"])), "nc_accuracy": float(np.mean(expl["nc_label"] == labels)),
            "model_accuracy": float(np.mean(expl["pred"] == labels)), "margin_score_spearman": float(rho),
            "n": int(len(labels)), "confidence": float(confidence), "n_confident": int(sure.sum()),
            "agreement_confident": float(np.mean(expl["agree"][sure])) if sure.any() else None}


def plot_pca(emb: np.ndarray, labels: np.ndarray, means: np.ndarray, path: str | Path, *,
             groups: Sequence[str] | None = None, title: str = "") -> Path:
    """The embeddings projected on their first two principal components, with both class means (stars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="full").fit(np.concatenate([emb, means]))
    z, zm = pca.transform(emb), pca.transform(means)
    groups = np.asarray(groups if groups is not None else np.where(np.asarray(labels) == 0, "bona fide", "spoof"))
    fig, ax = plt.subplots(figsize=(6, 5))
    for g in sorted(set(groups), key=lambda s: (s != "bonafide" and s != "bona fide", s)):
        sel = groups == g
        ax.scatter(z[sel, 0], z[sel, 1], s=14, alpha=0.7, label=g, color="k" if g in ("bonafide", "bona fide") else None)
    ax.scatter(zm[0, 0], zm[0, 1], marker="*", s=300, c="white", edgecolors="k", label="bona fide mean")
    ax.scatter(zm[1, 0], zm[1, 1], marker="*", s=300, c="red", edgecolors="k", label="spoof mean")
    ax.set_xlabel(f"PC1 ({100 * pca.explained_variance_ratio_[0]:.0f}%)")
    ax.set_ylabel(f"PC2 ({100 * pca.explained_variance_ratio_[1]:.0f}%)")
    ax.legend(fontsize=8)
    ax.set_title(title or "penultimate embeddings (PCA) and class means")
    return save_figure(fig, path)
