"""Neural-collapse workflows: NC sampling by one or several trained detectors, each on its own dataset (writes
one merged manifest recording every item's origin), and the NC explanation report of a split of any dataset
(class means from the model's recorded training items; CSV + PCA figure + agreement figures)."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from . import nc
from annotate.core.dataset import shard_paths

from .data import AudioStore, Item, index_split, open_store, read_manifest, select_items, write_manifest
from .evaluate import run_items
from .model import Wav2Vec2AASIST, load_detector, read_meta

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


def _select(model: Wav2Vec2AASIST, ds: str | Path, n_per_class: int, *, clusters: int, seed: int,
            pool_per_class: int | None, split: str, progress: bool) -> tuple[list[Item], dict]:
    """One teacher's NC selection of its own dataset's ``split``: (chosen items, ``nc.select``'s result)."""
    pool = _subsample(index_split(ds, split), pool_per_class, seed)
    items, _, emb = embed_split(model, ds, split, pool, progress=progress)
    sel = nc.select(emb, np.array([it.label for it in items]), n_per_class, clusters=clusters, seed=seed)
    return [replace(items[i], dataset=str(ds)) for i in sel["index"]], sel


def nc_sample_multi(teachers: Sequence[tuple[str | Path | Wav2Vec2AASIST, str | Path]], out: str | Path,
                    n_per_class: int, *, clusters: int = 4, seed: int = 0, pool_per_class: int | None = None,
                    split: str = "train", progress: bool = False, device: str = "cpu") -> tuple[Path, list[Item]]:
    """NC sampling across corpora: each (teacher, dataset) pair selects ``n_per_class`` items per class of its
    own dataset's ``split`` with its own embeddings (bona fide nearest the class mean, spoof after K-means), and
    the selections are merged in ``teachers`` order (an item two teachers both picked is kept once).

    Writes ``out/nc_manifest.csv`` (id, label, dataset, teacher, vocoder, cluster, distance: every item's origin)
    and ``out/nc_means.npz`` (``means_T`` / ``centres_T`` for teacher T); returns (manifest, items), each item
    carrying its ``dataset``."""
    out = Path(out)
    chosen, rows, arrays, seen = [], [], {}, set()
    for t, (teacher, ds) in enumerate(teachers):
        model = teacher if isinstance(teacher, Wav2Vec2AASIST) else load_detector(teacher, device)
        name = f"teacher{t}" if isinstance(teacher, Wav2Vec2AASIST) else str(teacher)
        items, sel = _select(model, ds, n_per_class, clusters=clusters, seed=seed, pool_per_class=pool_per_class,
                             split=split, progress=progress)
        arrays[f"means_{t}"], arrays[f"centres_{t}"] = sel["means"], sel["centres"]
        for it, c, d in zip(items, sel["cluster"], sel["distance"]):
            if (it.dataset, it.key) in seen:
                continue
            seen.add((it.dataset, it.key))
            chosen.append(it)
            rows.append({"id": it.id, "label": it.label, "dataset": it.dataset, "teacher": name, "vocoder": it.vocoder,
                         "cluster": int(c), "distance": f"{d:.6f}"})
    path = write_manifest(out / MANIFEST, rows)
    np.savez(out / MEANS, **arrays)
    return path, chosen


def nc_sample(teacher: str | Path | Wav2Vec2AASIST, ds: str | Path, out: str | Path, n_per_class: int, *,
              clusters: int = 4, seed: int = 0, pool_per_class: int | None = None, split: str = "train",
              progress: bool = False, device: str = "cpu") -> tuple[Path, list[Item]]:
    """Select ``n_per_class`` items per class from ``split`` by NC sampling with ``teacher``'s embeddings
    (:func:`nc_sample_multi` with one teacher)."""
    return nc_sample_multi([(teacher, ds)], out, n_per_class, clusters=clusters, seed=seed,
                           pool_per_class=pool_per_class, split=split, progress=progress, device=device)


def load_manifest_items(ds: str | Path | None, manifest: str | Path, split: str = "train") -> list[Item]:
    """The items a manifest CSV names (id, label), in its order: of ``ds``'s ``split``, or, when the manifest has
    a ``dataset`` column (NC across corpora), of each row's own dataset (the items then carry it)."""
    with open(manifest, newline="") as f:
        fields = csv.DictReader(f).fieldnames or []
    if "dataset" not in fields:
        if ds is None:
            raise ValueError(f"{manifest}: no dataset column; pass --dataset")
        return select_items(index_split(ds, split), read_manifest(manifest), source=str(manifest))
    keys = read_manifest(manifest)
    with open(manifest, newline="") as f:
        where = [r["dataset"] for r in csv.DictReader(f)]
    by_ds: dict[str, dict] = {}
    for d in dict.fromkeys(where):
        if not d:
            raise ValueError(f"{manifest}: a row has an empty dataset")
        idx = [i for i, w in enumerate(where) if w == d]
        got = select_items(index_split(d, split), [keys[i] for i in idx], source=f"{manifest} ({d})")
        by_ds[d] = {keys[i]: replace(it, dataset=d) for i, it in zip(idx, got)}
    return [by_ds[w][k] for w, k in zip(where, keys)]


def training_items(detector: str | Path) -> list[Item]:
    """The items a checkpoint was trained on, from what its config.json records: the NC manifest in its folder
    (sampler nc), the given manifest (sampler manifest), or its dataset's whole split (sampler all); every item
    carries its dataset."""
    weights, meta = read_meta(detector)
    tr = meta.get("train")
    if not tr or "dataset" not in tr:
        raise ValueError(f"{detector}: the checkpoint records no training data; pass --nc-train-dataset DS")
    ds, split = tr["dataset"], tr.get("split", "train")
    sampler = meta.get("sampler", "all")
    if sampler in ("nc", "manifest"):
        manifest = weights.parent / MANIFEST if sampler == "nc" else Path(meta["manifest"])
        if not manifest.exists():
            raise FileNotFoundError(f"{detector}: its training manifest {manifest} is missing; pass --nc-train-dataset DS")
        items = load_manifest_items(ds, manifest, split)
        return [it if it.dataset else replace(it, dataset=str(ds)) for it in items]
    if not shard_paths(ds, split):
        raise FileNotFoundError(f"{detector}: its training data {ds} ({split!r} split) is not here; "
                                "pass --nc-train-dataset DS")
    return [replace(it, dataset=str(ds)) for it in index_split(ds, split)]


def nc_report(detector: str | Path | Wav2Vec2AASIST, ds: str | Path, split: str = "test", out: str | Path | None = None,
              *, train_items: Sequence[Item] | None = None, train_split: str = "train",
              max_train_per_class: int | None = 500, seed: int = 0, confidence: float = 0.9,
              progress: bool = False) -> dict:
    """NC explanation of ``ds``'s ``split`` (any dataset): class means of the penultimate embedding over (a seeded
    subsample of) the model's training items (``train_items``; default: those its checkpoint records, or ``ds``'s
    ``train_split`` for a model object); per input the distances to both means, the nearest-mean label, the
    model's decision and confidence, agreement (overall and on confident items, max softmax >= ``confidence``)
    and the confident disagreements. Writes nc.csv, nc_disagreements.csv, nc_means.npz, nc_pca.png, nc.json."""
    model = load_detector(detector) if not isinstance(detector, Wav2Vec2AASIST) else detector
    if train_items is None:
        train_items = (index_split(ds, train_split) if isinstance(detector, Wav2Vec2AASIST)
                       else training_items(detector))
    tr_items = _subsample(train_items, max_train_per_class, seed)
    _, tr_emb = run_items(model, open_store(ds, train_split, tr_items), tr_items, progress=progress)
    means = nc.class_means(tr_emb, np.array([it.label for it in tr_items]))
    items, logits, emb = embed_split(model, ds, split, progress=progress)
    labels = np.array([it.label for it in items])
    expl = nc.explain(emb, logits, means)
    res = nc.summary(expl, labels, logits[:, 1] - logits[:, 0], confidence)
    sure = expl["p_max"] >= confidence
    odd = [i for i in range(len(items)) if sure[i] and not expl["agree"][i]]
    res.update(split=split, dataset=str(ds), n_train=len(tr_items),
               train_datasets=sorted({it.dataset or str(ds) for it in tr_items}),
               n_disagree=int((~expl["agree"]).sum()),
               disagreements=[{"id": items[i].id, "label": int(labels[i]), "vocoder": items[i].vocoder,
                               "nc_label": int(expl["nc_label"][i]), "pred": int(expl["pred"][i]),
                               "p_max": round(float(expl["p_max"][i]), 5)} for i in odd])
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        cols = ["id", "label", "vocoder", "d_real", "d_fake", "nc_label", "pred", "p_max", "confident", "agree"]
        for name, keep in (("nc.csv", range(len(items))), ("nc_disagreements.csv", odd)):
            with open(out / name, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(cols)
                for i in keep:
                    it = items[i]
                    w.writerow([it.id, it.label, it.vocoder, f"{expl['d_real'][i]:.5f}", f"{expl['d_fake'][i]:.5f}",
                                int(expl["nc_label"][i]), int(expl["pred"][i]), f"{expl['p_max'][i]:.5f}",
                                int(sure[i]), int(expl["agree"][i])])
        np.savez(out / MEANS, means=means)
        nc.plot_pca(emb, labels, means, out / "nc_pca.png", groups=[it.vocoder for it in items],
                    title=f"{split}: NC agreement {100 * res['agreement']:.0f}%")
        (out / "nc.json").write_text(json.dumps(res, indent=2))
    return res
