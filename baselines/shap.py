"""DeepSHAP and GradientSHAP (captum) on the log-magnitude, through :class:`~baselines.rawwrapper.RawWrapper`.

DeepSHAP = captum ``DeepLiftShap`` with bona fide spectrograms as references. Captum runs the input
and every reference as ONE batch, so references are fed in chunks and the chunk results averaged
(weighted by chunk size: the same mean over references).

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

from .rawwrapper import SPOOF, Exp, RawWrapper

EXTRA_RESCALE = (Exp, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardtanh, nn.CELU)


@dataclass(frozen=True)
class ShapConfig:
    """docs/formulas.md: DeepSHAP with 20 bona fide references; GradientSHAP with 20 samples and a zero baseline."""

    n_references: int = 20
    n_samples: int = 20
    stdevs: float = 0.0  # GradientSHAP noise on the input samples (captum's default)
    chunk: int = 5  # references / samples per captum call (bounds memory: captum batches them all)
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


def deepshap(wrapper: RawWrapper, logmag: Tensor, phase: Tensor, references: Tensor, cfg: ShapConfig = ShapConfig()) -> tuple[Tensor, float]:
    """DeepLiftShap attributions ``(W, frames, F)`` of the spoof logit, and the mean relative convergence gap.

    ``references``: ``(R, frames, F)`` bona fide log-magnitudes on the same grid as ``logmag``.
    """
    from captum.attr import DeepLiftShap

    if references.shape[1:] != logmag.shape[1:]:
        raise ValueError(f"references have grid {tuple(references.shape[1:])}, inputs {tuple(logmag.shape[1:])}: crop/tile them first")
    if references.shape[0] < 2:
        raise ValueError("DeepLiftShap needs at least 2 references")
    wrapper.eval()
    explainer = DeepLiftShap(wrapper)
    total = torch.zeros_like(logmag)
    gaps = []
    parts = _chunks(references.shape[0], cfg.chunk)
    if parts[-1].stop - parts[-1].start < 2 and len(parts) > 1:  # captum wants >= 2 references per call
        parts[-2] = slice(parts[-2].start, parts[-1].stop)
        parts.pop()
    with rescale_rules(cfg.extend_rescale), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
        for sl in parts:
            refs = references[sl]
            attr, delta = explainer.attribute(
                logmag, baselines=refs, target=SPOOF, additional_forward_args=(phase,), return_convergence_delta=True
            )
            total += attr.detach() * (sl.stop - sl.start)
            with torch.no_grad():  # delta is per (input, reference): its scale is |f(x) - f(ref)|
                w, r = logmag.shape[0], refs.shape[0]
                fx = wrapper(logmag, phase)[:, SPOOF]
                fr = wrapper(refs.repeat(w, 1, 1), phase.repeat_interleave(r, 0))[:, SPOOF].reshape(w, r)
            denom = (fx[:, None] - fr).abs().mean().clamp(min=1e-8)
            gaps.append(float(delta.abs().mean() / denom))
    return total / references.shape[0], float(np.mean(gaps))


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
