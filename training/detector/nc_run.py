"""Neural-collapse workflows on a dataset: NC sampling from a trained detector (writes a manifest) and
the NC explanation report of a split (CSV + PCA figure + agreement figures)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from . import nc
from .data import AudioStore, Item, index_split, read_manifest, select_items, write_manifest
from .evaluate import run_items
from .model import Wav2Vec2AASIST, load_detector

MANIFEST = "nc_manifest.csv"
MEANS = "nc_means.npz"


def _subsample(items: Sequence[Item], max_per_class: int | None, seed: int) -> list[Item]:
    """At most ``max_per_class`` items per class, drawn without replacement from a seeded generator."""
    if not max_per_class:
        return list(items)
    rng = np.random.default_rng(seed)
    out = []
    for c in (0, 1):
        idx = [i for i, it in enumerate(items) if it.label == c]
        if len(idx) > max_per_class:
            idx = sorted(rng.choice(idx, max_per_class, replace=False).tolist())
        out += [items[i] for i in idx]
    return out


def embed_split(model: Wav2Vec2AASIST, ds: str | Path, split: str, items: Sequence[Item] | None = None, *,
                batch_size: int = 16, progress: bool = False) -> tuple[list[Item], np.ndarray, np.ndarray]:
    """(items, logits (N, 2), penultimate embeddings (N, E)) for ``split``."""
    items = list(items) if items is not None else index_split(ds, split)
    logits, emb = run_items(model, AudioStore(ds, split), items, batch_size=batch_size, progress=progress)
    return items, logits, emb


def nc_sample(teacher: str | Path | Wav2Vec2AASIST, ds: str | Path, out: str | Path, n_per_class: int, *,
              clusters: int = 4, seed: int = 0, pool_per_class: int | None = None, split: str = "train",
              progress: bool = False, device: str = "cpu") -> tuple[Path, list[Item]]:
    """Select ``n_per_class`` items per class from ``split`` by NC sampling with ``teacher``'s embeddings;
    writes ``out/nc_manifest.csv`` (id, label, vocoder, cluster, distance) and ``out/nc_means.npz``."""
    model = load_detector(teacher, device) if not isinstance(teacher, Wav2Vec2AASIST) else teacher
    pool = _subsample(index_split(ds, split), pool_per_class, seed)
    items, _, emb = embed_split(model, ds, split, pool, progress=progress)
    labels = np.array([it.label for it in items])
    sel = nc.select(emb, labels, n_per_class, clusters=clusters, seed=seed)
    chosen = [items[i] for i in sel["index"]]
    rows = [{"id": it.id, "label": it.label, "vocoder": it.vocoder, "cluster": int(c), "distance": f"{d:.6f}"}
            for it, c, d in zip(chosen, sel["cluster"], sel["distance"])]
    out = Path(out)
    path = write_manifest(out / MANIFEST, rows)
    np.savez(out / MEANS, means=sel["means"], centres=sel["centres"])
    return path, chosen


def load_manifest_items(ds: str | Path, manifest: str | Path, split: str = "train") -> list[Item]:
    """The split's items named in a manifest CSV (id, label)."""
    return select_items(index_split(ds, split), read_manifest(manifest), source=str(manifest))


def nc_report(detector: str | Path | Wav2Vec2AASIST, ds: str | Path, split: str = "test", out: str | Path | None = None,
              *, train_split: str = "train", max_train_per_class: int | None = 500, seed: int = 0,
              progress: bool = False) -> dict:
    """NC explanation of ``split``: class means from (a seeded subsample of) ``train_split``; per input the
    distances to both means, nearest-mean label, model prediction, agreement. Writes nc.csv, nc_pca.png, nc.json."""
    model = load_detector(detector) if not isinstance(detector, Wav2Vec2AASIST) else detector
    tr_items = _subsample(index_split(ds, train_split), max_train_per_class, seed)
    tr_items, _, tr_emb = embed_split(model, ds, train_split, tr_items, progress=progress)
    means = nc.class_means(tr_emb, np.array([it.label for it in tr_items]))
    items, logits, emb = embed_split(model, ds, split, progress=progress)
    labels = np.array([it.label for it in items])
    expl = nc.explain(emb, logits, means)
    res = nc.summary(expl, labels, logits[:, 1] - logits[:, 0])
    res.update(split=split, train_split=train_split, n_train=len(tr_items))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "nc.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "label", "vocoder", "d_real", "d_fake", "nc_label", "pred", "agree"])
            for i, it in enumerate(items):
                w.writerow([it.id, it.label, it.vocoder, f"{expl['d_real'][i]:.5f}", f"{expl['d_fake'][i]:.5f}",
                            int(expl["nc_label"][i]), int(expl["pred"][i]), int(expl["agree"][i])])
        nc.plot_pca(emb, labels, means, out / "nc_pca.png", groups=[it.vocoder for it in items],
                    title=f"{split}: NC agreement {100 * res['agreement']:.0f}%")
        (out / "nc.json").write_text(json.dumps(res, indent=2))
    return res
