"""Chance baselines (docs/formulas.md): uniform random, spatially smoothed random, spoof energy.

Each random heatmap comes from ``np.random.default_rng(row_seed(seed, id))``: a row's map depends on
the global seed and its id only, never on which rows are explained or in what order.
"""
from __future__ import annotations

import hashlib

import numpy as np

from annotate.core.spectral import DEFAULT_MASK, MaskConfig, smooth

CHANCE = ("random", "smoothed-random", "energy")


def row_seed(seed: int, id: str) -> int:
    """A 63-bit seed from the global seed and a row id (sha256, stable across runs and platforms)."""
    digest = hashlib.sha256(f"{int(seed)}/{id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def uniform(shape: tuple[int, int], seed: int, id: str) -> np.ndarray:
    """Uniform noise in [0, 1)."""
    return np.random.default_rng(row_seed(seed, id)).random(shape, dtype=np.float32)


def smoothed(shape: tuple[int, int], seed: int, id: str, cfg: MaskConfig = DEFAULT_MASK) -> np.ndarray:
    """Uniform noise smoothed with the Eq. 2 Gaussian (the kernel that made the truth masks)."""
    return smooth(uniform(shape, seed, id), cfg).astype(np.float32)


def energy(spoof_logmag: np.ndarray) -> np.ndarray:
    """The spoof log-magnitude itself: its loudest bins are the "explanation"."""
    return np.asarray(spoof_logmag, dtype=np.float32)


def chance_heatmap(method: str, id: str, shape: tuple[int, int], seed: int = 0, spoof_logmag: np.ndarray | None = None) -> np.ndarray:
    """One chance heatmap of ``shape`` for row ``id``."""
    if method == "random":
        return uniform(shape, seed, id)
    if method == "smoothed-random":
        return smoothed(shape, seed, id)
    if method == "energy":
        if spoof_logmag is None:
            raise ValueError(f"row {id}: the energy baseline needs the row's spoof_logmag")
        return energy(spoof_logmag)
    raise ValueError(f"unknown chance baseline {method!r}; choose from {', '.join(CHANCE)}")
