"""Threshold-free localisation metrics (beyond the paper): ROC-AUC, relevance mass accuracy, pointing game.

They score the raw heatmap (no binarisation) against the truth mask, per utterance, in percent.
numpy only. Policies: ROC-AUC is undefined (NaN, skipped by the means and counted) when the mask
is empty or full; ties count one half (as scikit-learn's ``roc_auc_score``). Relevance mass
accuracy uses the positive part of the heatmap and is 0 when there is no positive mass. The
pointing game with several tied maxima scores the share of them inside the mask (the expected hit
of a random tie-break), so a constant heatmap scores the mask density, i.e. chance.
"""
from __future__ import annotations

import numpy as np

LOCALISATION_METRICS = ("AUC", "RMA", "PG")


def roc_auc(heatmap: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of the heatmap as a score for mask pixels (Mann-Whitney U), in [0, 1]."""
    h = np.asarray(heatmap).reshape(-1)
    t = np.asarray(truth, dtype=bool).reshape(-1)
    if h.shape != t.shape:
        raise ValueError(f"heatmap {np.shape(heatmap)} and truth {np.shape(truth)} differ in size")
    n_pos = int(np.count_nonzero(t))
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    all_sorted = np.sort(h)
    pos = np.sort(h[t])
    below_all = np.searchsorted(all_sorted, pos, "left")
    upto_all = np.searchsorted(all_sorted, pos, "right")
    below_pos = np.searchsorted(pos, pos, "left")
    upto_pos = np.searchsorted(pos, pos, "right")
    neg_below = (below_all - below_pos).sum(dtype=np.int64)
    neg_equal = ((upto_all - below_all) - (upto_pos - below_pos)).sum(dtype=np.int64)
    return float((neg_below + 0.5 * neg_equal) / (float(n_pos) * float(n_neg)))


def relevance_mass_accuracy(heatmap: np.ndarray, truth: np.ndarray) -> float:
    """Share of the heatmap's positive mass that lies inside the mask, in [0, 1]."""
    h = np.maximum(np.asarray(heatmap, dtype=np.float64), 0.0)
    t = np.asarray(truth, dtype=bool)
    total = h.sum()
    return float(h[t].sum() / total) if total > 0 else 0.0


def pointing_game(heatmap: np.ndarray, truth: np.ndarray) -> float:
    """1 if the heatmap's maximum lies in the mask; with tied maxima, the share of them in the mask."""
    h = np.asarray(heatmap)
    t = np.asarray(truth, dtype=bool)
    at_max = h == h.max()
    return float(np.count_nonzero(at_max & t) / np.count_nonzero(at_max))


def localisation_scores(heatmap: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """ROC-AUC, relevance mass accuracy and pointing game of a raw heatmap, in percent."""
    return {
        "AUC": 100.0 * roc_auc(heatmap, truth),
        "RMA": 100.0 * relevance_mass_accuracy(heatmap, truth),
        "PG": 100.0 * pointing_game(heatmap, truth),
    }
