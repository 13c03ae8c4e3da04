"""DeepSHAP and GradientSHAP (captum) on the log-magnitude, through :class:`~baselines.rawwrapper.RawWrapper`.

DeepSHAP = DeepLiftShap with bona fide spectrograms as references: the mean over references of captum's
``DeepLift`` against each, run as (window, reference) pairs in batches of ``ShapConfig.batch`` (captum's
``DeepLiftShap`` would put every pair into one batch, which on a CPU is memory-bound and several times slower).

What captum's DeepLift does with the detector: its Rescale rule replaces the gradient only at
*module* non-linearities of the types in ``captum.attr._core.deep_lift.SUPPORTED_NON_LINEAR``
(ReLU, ELU, Sigmoid, Tanh, Softplus, MaxPool, Softmax). The detector's AASIST back end uses
``nn.SELU`` modules, which captum does not list, and RawWrapper's own ``exp`` (log-magnitude ->
magnitude, the first and strongest non-linearity; an :class:`~baselines.rawwrapper.Exp` module):
:func:`rescale_rules` adds these and GELU/SiLU/Mish/Hardtanh modules to that table for the
duration of the call (the Rescale rule holds for any element-wise function). The wav2vec2 front end calls GELU, softmax (inside
``scaled_dot_product_attention``), tanh and sigmoid *functionally*; captum cannot hook those,
so there DeepLift falls back to the plain gradient at the input and at the reference, and the
summation-to-delta property no longer holds exactly. Each call therefore reports the convergence
gap ``|Σ attribution − (f(x) − f(ref))|`` relative to ``|f(x) − f(ref)|`` (recorded in the
submission metadata) instead of hiding it. Each module is used once per forward (the detector is
written that way; captum breaks on reused modules).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from training.detector.model import LogFloor

from .rawwrapper import SPOOF, Exp, RawWrapper

EXTRA_RESCALE = (Exp, LogFloor, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardtanh, nn.CELU)


@dataclass(frozen=True)
class ShapConfig:
    """docs/formulas.md: DeepSHAP with 10 bona fide references, GradientSHAP with 10 samples and a zero baseline
    (the paper's 20 and 20 localise no better on held-out speech at twice the cost: docs/baselines.md)."""

    n_references: int = 10
    n_samples: int = 10
    stdevs: float = 0.0  # GradientSHAP noise on the input samples (captum's default)
    chunk: int = 5  # GradientSHAP samples per captum call (bounds memory: captum batches them all)
    batch: int = 4  # DeepSHAP (window, reference) pairs per captum call (small batches stay in cache)
    extend_rescale: bool = True  # apply the Rescale rule to SELU/GELU/... modules too

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def rescale_rules(enabled: bool = True):
    """Temporarily register more element-wise module types for captum's DeepLift Rescale rule."""
    from captum.attr._core import deep_lift

    table = deep_lift.SUPPORTED_NON_LINEAR
    added = [t for t in EXTRA_RESCALE if t not in table] if enabled else []
    for t in added:
        table[t] = deep_lift.nonlinear
    try:
        yield
    finally:
        for t in added:
            table.pop(t, None)


@contextmanager
def seeded_global_rngs(seed: int):
    """Seed numpy's and torch's global generators (used inside captum) for a block, then restore them."""
    state = np.random.get_state()
    np.random.seed(int(seed) % 2**32)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            yield
    finally:
        np.random.set_state(state)


def _chunks(n: int, size: int) -> list[slice]:
    size = max(1, int(size))
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


class _Recorder(nn.Module):
    """The wrapper, keeping the spoof logits of its last forward (captum's DeepLift runs inputs and references
    as one batch: these are f(x) and f(ref) for free, no second forward for the convergence gap)."""

    def __init__(self, wrapper: RawWrapper):
        super().__init__()
        self.wrapper = wrapper
        self.last: Tensor | None = None

    def forward(self, logmag: Tensor, phase: Tensor) -> Tensor:
        out = self.wrapper(logmag, phase)
        self.last = out[:, SPOOF].detach()
        return out


def deepshap(wrapper: RawWrapper, logmag: Tensor, phase: Tensor, references: Tensor, cfg: ShapConfig = ShapConfig()) -> tuple[Tensor, float]:
    """DeepLiftShap attributions ``(W, frames, F)`` of the spoof logit, and the mean relative convergence gap.

    ``references``: ``(R, frames, F)`` bona fide log-magnitudes on the same grid as ``logmag``. DeepLiftShap is
    the mean over references of DeepLift against each; here every (window, reference) pair is one DeepLift
    problem and ``cfg.batch`` pairs go through captum's ``DeepLift`` per call (what ``DeepLiftShap`` does
    internally, with all pairs in one batch): small batches keep the activations in cache, several times
    faster on a CPU than large ones (docs/performance.md). The gap is ``mean|Σ attr − (f(x) − f(ref))|``
    over pairs relative to ``mean|f(x) − f(ref)|``.
    """
    from captum.attr import DeepLift

    if references.shape[1:] != logmag.shape[1:]:
        raise ValueError(f"references have grid {tuple(references.shape[1:])}, inputs {tuple(logmag.shape[1:])}: crop/tile them first")
    if references.shape[0] < 2:
        raise ValueError("DeepLiftShap needs at least 2 references")
    wrapper.eval()
    model = _Recorder(wrapper)
    explainer = DeepLift(model)
    w, r = logmag.shape[0], references.shape[0]
    win = torch.arange(w).repeat_interleave(r)  # pair k = (window win[k], reference ref[k])
    ref = torch.arange(r).repeat(w)
    total = torch.zeros_like(logmag)
    delta_sum, scale_sum = 0.0, 0.0
    with rescale_rules(cfg.extend_rescale), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
        for sl in _chunks(w * r, cfg.batch):
            i, j = win[sl], ref[sl]
            x = logmag[i].detach().requires_grad_(True)
            attr = explainer.attribute(x, baselines=references[j], target=SPOOF, additional_forward_args=(phase[i],))
            attr = attr.detach()
            total.index_add_(0, i, attr)
            fx, fr = model.last.chunk(2)  # captum's batch: the pairs' inputs, then their references
            delta_sum += float((attr.sum(dim=(1, 2)) - (fx - fr)).abs().sum())
            scale_sum += float((fx - fr).abs().sum())
    return total / r, delta_sum / max(scale_sum, 1e-8 * w * r)


def gradientshap(wrapper: RawWrapper, logmag: Tensor, phase: Tensor, seed: int, cfg: ShapConfig = ShapConfig()) -> Tensor:
    """GradientShap attributions ``(W, frames, F)`` of the spoof logit with a zero baseline.

    captum draws its samples from numpy's and torch's global generators: both are seeded with
    ``seed`` inside a scope that restores them, so the result depends only on the inputs and ``seed``.
    """
    from captum.attr import GradientShap

    wrapper.eval()
    explainer = GradientShap(wrapper)
    baseline = torch.zeros_like(logmag[:1])
    total = torch.zeros_like(logmag)
    with seeded_global_rngs(seed):
        for sl in _chunks(cfg.n_samples, cfg.chunk):
            n = sl.stop - sl.start
            attr = explainer.attribute(
                logmag, baselines=baseline, n_samples=n, stdevs=cfg.stdevs, target=SPOOF, additional_forward_args=(phase,)
            )
            total += attr.detach() * n
    return total / cfg.n_samples
