"""Validation metrics: heatmaps binarised at their own 95% quantile against the ground-truth mask."""
from __future__ import annotations

import numpy as np


def binarise(heatmap: np.ndarray, q: float = 0.95) -> np.ndarray:
    """True where the heatmap is strictly above its own ``q`` quantile (as the dataset's masks are)."""
    h = np.asarray(heatmap, dtype=np.float64)
    return h > np.quantile(h, q)


def iou_f1(heatmap: np.ndarray, mask: np.ndarray, q: float = 0.95) -> tuple[float, float]:
    """(IoU, F1) in percent of the binarised heatmap's foreground against the mask's."""
    p, m = binarise(heatmap, q), np.asarray(mask) > 0
    inter, union = np.logical_and(p, m).sum(), np.logical_or(p, m).sum()
    denom = p.sum() + m.sum()
    iou = 100.0 * inter / union if union else 100.0
    f1 = 100.0 * 2 * inter / denom if denom else 100.0
    return float(iou), float(f1)
