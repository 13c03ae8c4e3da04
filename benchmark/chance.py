"""Chance baselines every leaderboard shows (docs/formulas.md): uniform random, smoothed random, spoof energy.

Each heatmap is drawn from ``np.random.default_rng([seed, crc32(id)])``, so a row's heatmap does not
depend on the order or the subset of rows scored. "Smoothed random" smooths uniform noise with the
Eq. 2 Gaussian (annotate.core.spectral.smooth, the kernel that made the truth masks); "spoof energy"
is the spoof's log-magnitude (its loudest 5% of bins after binarisation).
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from annotate.core.spectral import smooth

from .stats import BootstrapConfig

CHANCE_METHODS = ("uniform random", "smoothed random", "spoof energy")
CHANCE_PREFIX = "chance: "


def chance_name(method: str) -> str:
    return CHANCE_PREFIX + method


def _rng(seed: int, id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(id.encode())])


def chance_heatmap(method: str, id: str, shape: tuple[int, int], seed: int = 0, spoof_logmag: np.ndarray | None = None) -> np.ndarray:
    """One chance heatmap of ``shape`` for row ``id``."""
    if method == "uniform random":
        return _rng(seed, id).random(shape, dtype=np.float32)
    if method == "smoothed random":
        return smooth(_rng(seed, id).random(shape, dtype=np.float32))
    if method == "spoof energy":
        if spoof_logmag is None:
            raise ValueError("the spoof-energy baseline needs the row's spoof_logmag")
        return np.asarray(spoof_logmag, dtype=np.float32)
    raise ValueError(f"unknown chance baseline {method!r}; choose from {', '.join(CHANCE_METHODS)}")


def iter_chance(method: str, ds: str | Path, split: str, shapes: dict[str, tuple], seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """``(id, heatmap)`` of a chance baseline for every row of the split (``shapes``: id -> mask shape)."""
    if method == "spoof energy":
        from .score import iter_split

        for row in iter_split(ds, split, ["id", "spoof_logmag"], arrays=("spoof_logmag",)):
            yield row["id"], chance_heatmap(method, row["id"], shapes[row["id"]], seed, row["spoof_logmag"])
    else:
        for i, shape in shapes.items():
            yield i, chance_heatmap(method, i, shape, seed)


def chance_result(
    method: str, ds: str | Path, split: str = "test", seed: int = 0, boot: BootstrapConfig = BootstrapConfig(), truth=None, key=None
) -> dict:
    """Score one chance baseline on the split into a result dict (kind ``chance``)."""
    from .score import build_result, iter_arrays, load_truth, score_stream
    from .submission import ProblemLog, SubmissionError

    truth = truth or load_truth(ds, split, key)
    shapes = {i: truth.masks[i].shape for i in truth.ids}
    log = ProblemLog()
    scored = score_stream(iter_arrays(iter_chance(method, ds, split, shapes, seed)), truth, log)
    if not log.ok:  # e.g. a spoof_logmag grid that differs from the mask grid
        raise SubmissionError([f"chance baseline {method!r}: " + m for m in log.error_messages()])
    return build_result(
        chance_name(method), "chance", scored.values, truth, ds, split, boot,
        metadata={"method": method, "seed": seed}, warnings=log.warning_messages(),
    )
