"""Segmentation metrics of a heatmap against a ground-truth mask (paper Sec. 3.4, Table 1).

Every metric is computed per utterance on time-first ``(frames, n_freq)`` maps and returned in
percent; the benchmark then averages over utterances (never pooled counts). numpy/scipy only:
this module and its imports never load torch.

Policies (documented in docs and the result JSON):

* Binarisation: a heatmap ``h`` becomes ``h > quantile(h, 0.95)`` (:func:`annotate.core.spectral.threshold`,
  the rule that made the truth masks). Ties at the quantile fall outside, so a constant heatmap
  binarises to an all-zero map and its foreground metrics are 0.
* 0/0 is 0: F1, IoU and FBound are 0 whenever their denominator is 0 (e.g. both maps empty) —
  a prediction is never rewarded for matching nothing.
* GDice class weights are ``1/volume**2`` of the truth class; a truth class of volume 0 (infinite
  weight) takes the largest finite weight instead (MONAI's convention).
* SSIM needs at least 11 frames and 11 bins (its Gaussian window); smaller maps give NaN, which
  the means skip and count.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from annotate.core.spectral import DEFAULT_MASK, threshold

QUANTILE = DEFAULT_MASK.quantile
RADII = (1, 2, 3, 4, 5)
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # skimage's choice for gaussian_weights=True: an 11-tap window at sigma 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
SEGMENTATION_METRICS = ("GDice", "F1", "IoU", "FBound", "SSIM")


def binarise(heatmap: np.ndarray, q: float = QUANTILE) -> np.ndarray:
    """Boolean map of the pixels strictly above the heatmap's own ``q`` quantile."""
    return threshold(np.asarray(heatmap), q).view(bool)


def _check(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape or pred.ndim != 2:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} must be the same 2-D shape")
    return pred, truth


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def f1(pred: np.ndarray, truth: np.ndarray) -> float:
    """Foreground F1 (= Dice) of two binary maps, in [0, 1]."""
    pred, truth = _check(pred, truth)
    tp = np.count_nonzero(pred & truth)
    return _ratio(2 * tp, np.count_nonzero(pred) + np.count_nonzero(truth))


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Foreground intersection over union of two binary maps, in [0, 1]."""
    pred, truth = _check(pred, truth)
    tp = np.count_nonzero(pred & truth)
    return _ratio(tp, np.count_nonzero(pred) + np.count_nonzero(truth) - tp)


def heatmap_iou_f1(heatmap: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(IoU, F1) in percent of a heatmap binarised by :func:`binarise` against a mask: the trainers' validation."""
    pred = binarise(heatmap)
    return 100.0 * iou(pred, truth), 100.0 * f1(pred, truth)


def gdice_from_counts(tp: int, n_pred: int, n_true: int, n: int) -> float:
    """Two-class generalized Dice (Sudre et al. 2017) from confusion counts, weights 1/volume**2 of the truth."""
    vols = np.array([n_true, n - n_true], dtype=np.float64)  # foreground, background truth volumes
    inter = np.array([tp, n - n_pred - n_true + tp], dtype=np.float64)
    sums = np.array([n_pred + n_true, 2 * n - n_pred - n_true], dtype=np.float64)
    with np.errstate(divide="ignore"):
        w = 1.0 / vols**2
    finite = np.isfinite(w)
    w[~finite] = w[finite].max() if finite.any() else 1.0
    return _ratio(2.0 * (w * inter).sum(), (w * sums).sum())


def gdice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Two-class generalized Dice of two binary maps, in [0, 1]."""
    pred, truth = _check(pred, truth)
    tp = np.count_nonzero(pred & truth)
    return gdice_from_counts(tp, np.count_nonzero(pred), np.count_nonzero(truth), pred.size)


def gdice_at_density(f1_score: float, density: float = 0.05) -> float:
    """GDice implied by an F1 when prediction and truth both cover ``density`` of the map (paper's identity)."""
    n = 1.0
    a = density * n
    tp = f1_score * a  # F1 = 2 tp / (a + a)
    return gdice_from_counts(tp, a, a, n)  # type: ignore[arg-type]


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels that differ from their east (next bin), south (next frame) or south-east neighbour."""
    m = np.asarray(mask, dtype=bool)
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= m[:-1, :] != m[1:, :]
    b[:-1, :-1] |= m[:-1, :-1] != m[1:, 1:]
    return b


@lru_cache(maxsize=8)
def _rings(radii: tuple[int, ...]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """For each radius r (increasing), the offsets with prev_r**2 < dy**2 + dx**2 <= r**2 (disk growth)."""
    out, prev = [], 0
    for r in radii:
        ring = tuple(
            (dy, dx)
            for dy in range(-r, r + 1)
            for dx in range(-r, r + 1)
            if prev * prev < dy * dy + dx * dx <= r * r
        )
        out.append(ring)
        prev = r
    return tuple(out)


def _or_shifted(dst: np.ndarray, src: np.ndarray, dy: int, dx: int) -> None:
    """dst[y + dy, x + dx] |= src[y, x] wherever both lie inside the map."""
    h, w = src.shape
    if abs(dy) >= h or abs(dx) >= w:
        return
    dst[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] |= src[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]


def fbound_per_radius(pred: np.ndarray, truth: np.ndarray, radii: tuple[int, ...] = RADII) -> np.ndarray:
    """Boundary F-measure for each radius: a boundary pixel matches if the other map has one within a disk of radius r."""
    pred, truth = _check(pred, truth)
    radii = tuple(sorted(int(r) for r in radii))
    if radii[0] < 0:
        raise ValueError(f"radii must be >= 0, got {radii}")
    bp, bt = boundary(pred), boundary(truth)
    n_p, n_t = np.count_nonzero(bp), np.count_nonzero(bt)
    if n_p == 0 or n_t == 0:
        return np.zeros(len(radii))  # nothing to match on one side: P or R is 0, so F is 0
    grow_p, grow_t = bp.copy(), bt.copy()  # disks of growing radius around each boundary
    out = np.empty(len(radii))
    for i, ring in enumerate(_rings(radii)):
        for dy, dx in ring:
            _or_shifted(grow_p, bp, dy, dx)
            _or_shifted(grow_t, bt, dy, dx)
        precision = np.count_nonzero(bp & grow_t) / n_p
        recall = np.count_nonzero(bt & grow_p) / n_t
        out[i] = _ratio(2 * precision * recall, precision + recall)
    return out


def fbound(pred: np.ndarray, truth: np.ndarray, radii: tuple[int, ...] = RADII) -> float:
    """Boundary F-measure averaged over ``radii`` (1..5 by default), in [0, 1]."""
    return float(fbound_per_radius(pred, truth, radii).mean())


def ssim(pred: np.ndarray, truth: np.ndarray, sigma: float = SSIM_SIGMA) -> float:
    """Mean SSIM of two binary maps, equal to skimage's ``structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1)``; faster because x*x == x for binary maps
    (3 Gaussian filters instead of 5). NaN when the map is smaller than the window."""
    pred, truth = _check(pred, truth)
    radius = int(SSIM_TRUNCATE * sigma + 0.5)
    if min(pred.shape) < 2 * radius + 1:
        return float("nan")
    x, y = pred.astype(np.float64), truth.astype(np.float64)

    def g(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma, truncate=SSIM_TRUNCATE, mode="reflect")

    inner = (slice(radius, -radius), slice(radius, -radius))  # skimage averages only where the window fits
    ux, uy, uxy = g(x)[inner], g(y)[inner], g(x * y)[inner]
    vx, vy, vxy = ux - ux * ux, uy - uy * uy, uxy - ux * uy
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean(dtype=np.float64))


def segmentation_scores_binary(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All segmentation metrics of a binary prediction, in percent."""
    pred, truth = _check(pred, truth)
    tp = np.count_nonzero(pred & truth)
    n_p, n_t = np.count_nonzero(pred), np.count_nonzero(truth)
    return {
        "GDice": 100.0 * gdice_from_counts(tp, n_p, n_t, pred.size),
        "F1": 100.0 * _ratio(2 * tp, n_p + n_t),
        "IoU": 100.0 * _ratio(tp, n_p + n_t - tp),
        "FBound": 100.0 * fbound(pred, truth),
        "SSIM": 100.0 * ssim(pred, truth),
    }


def segmentation_scores(heatmap: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Binarise ``heatmap`` at its 95% quantile, then every segmentation metric against ``truth``, in percent."""
    return segmentation_scores_binary(binarise(heatmap), truth)
