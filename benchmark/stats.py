"""Means with seeded bootstrap confidence intervals, overall and per group (vocoder)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapConfig:
    """Percentile bootstrap over utterances: ``resamples`` draws from ``np.random.default_rng(seed)``; 0 means no CI
    (``ci`` is ``[None, None]``); the CLIs refuse 1-99, too few draws for the tails of a 95% interval."""

    resamples: int = 1000
    level: float = 0.95
    seed: int = 0

    def to_dict(self) -> dict:
        return {"resamples": self.resamples, "level": self.level, "seed": self.seed}


def mean_ci(values: np.ndarray, cfg: BootstrapConfig = BootstrapConfig()) -> dict:
    """``{mean, ci: [lo, hi], n, n_undefined}`` of per-utterance values; NaNs are skipped and counted."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    ok = np.isfinite(v)
    v = v[ok]
    out = {"mean": None, "ci": [None, None], "n": int(v.size), "n_undefined": int((~ok).sum())}
    if v.size == 0:
        return out
    mean = float(v.mean())
    out["mean"] = mean
    if cfg.resamples <= 0:  # no bootstrap asked for: no interval, rather than a degenerate one
        return out
    if v.size == 1:
        out["ci"] = [mean, mean]
        return out
    rng = np.random.default_rng(cfg.seed)
    means = np.empty(cfg.resamples)
    chunk = max(1, 2_000_000 // v.size)  # bounded memory: chunk * n indices at a time
    for start in range(0, cfg.resamples, chunk):
        k = min(chunk, cfg.resamples - start)
        means[start : start + k] = v[rng.integers(0, v.size, size=(k, v.size))].mean(axis=1)
    alpha = (1.0 - cfg.level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    out["ci"] = [float(lo), float(hi)]
    return out


def summarise(
    values: dict[str, np.ndarray], groups: np.ndarray, cfg: BootstrapConfig = BootstrapConfig()
) -> tuple[dict, dict]:
    """Overall and per-group ``mean_ci`` of every metric; returns ``(overall, {group: {metric: ...}})``."""
    groups = np.asarray(groups)
    overall = {k: mean_ci(v, cfg) for k, v in values.items()}
    per_group = {}
    for g in sorted(set(groups.tolist())):
        sel = groups == g
        per_group[str(g)] = {k: mean_ci(np.asarray(v)[sel], cfg) for k, v in values.items()}
    return overall, per_group
