"""AttnLRP (Achtibat et al. 2024) for waveform transformers, written as "gradient x input" with modified
backward passes, applied at the torch-op level by a ``TorchFunctionMode``.

Invariant: the relevance of any tensor ``t`` is ``t * dOut/dt`` under the modified gradients, so the
input relevance is ``x * x.grad`` after one backward pass. Each rule below changes only the backward
of one op, never its forward value (``_exact`` keeps the forward bit-identical):

- ``linear`` (``F.linear``): ε-rule; ``conv1d``: γ-rule with γ=10; ``conv2d``: γ-rule with γ=0.1
  (docs/formulas.md: γ=10 on 1-D convolutions, 0.1 on the other layers; every γ is an option, γ=0 = ε-rule).
  The generalised γ-rule favours the contributions x_j w_jk whose sign matches z_k.
- softmax (``softmax_rule="attnlrp"``): R_i = x_i (R_i - s_i ΣR), the paper's Proposition 3.1 — a Taylor
  decomposition at x whose constant term keeps the rest (the paper and its `lxt` code leave it
  undistributed: "conservation ... excluding bias terms"); equal to the plain softmax gradient times x.
  ``"constant"`` = CP-LRP (Ali et al. 2022): attention weights held fixed, conservative.
- products of two input-dependent tensors (``*``, ``@``, ``bmm``, the matmuls inside
  ``scaled_dot_product_attention``): relevance split 50/50 between the operands.
- LayerNorm / GroupNorm (and any division by an input-dependent tensor, ``std``/``var``): the
  standard deviation is held constant; BatchNorm (eval) is affine.
- element-wise activations (GELU, SELU, tanh, sigmoid, log of a log-spectral front end, ...): identity rule,
  R_in = R_out.
- max / max-pool / top-k / abs / gather / sums / reshapes: plain gradient (exactly conservative).

Constants added to input-dependent values (linear/conv biases, norm and BatchNorm shifts, added tables):
``bias="absorb"`` (default, as in the paper and `lxt`): they keep their share, z = z_x + b keeps b/z · R(z).
``bias="ignore"`` (zennit's ``zero_params=['bias']``): left out of every denominator, so a layer passes
all its relevance on (ε aside). Measured on the small detector (15 demo test utterances, 60 windows,
random init and trained): "ignore" is conservative in exact arithmetic but not in float32 — where a shift dominates
(z_x ≈ 0, b ≠ 0; BatchNorm after training, HS-GAL layers) the ratio z / z_x reaches 1e6+ and Σ|R| grows
to 1e9-1e10 × |logit| with cancelling signs; the AttnLRP softmax remainder alone is 1.4-3.7 × |logit|
(median over windows). So the strict form Σ R_in = logit does not hold for this detector under AttnLRP;
what holds exactly is the ledger identity below, and the strict form holds for attention-free nets with
``bias="ignore"`` (tests).

Relevance that a rule does not pass on (biases, shifts, constants, the ε stabiliser, the softmax's
Taylor remainder) is booked per kind in a ledger, so ``sum(input relevance) + sum(ledger) == output``
checks every other rule for conservation.
"""
from __future__ import annotations

import math
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten


BIAS_MODES = ("absorb", "ignore")


@dataclass(frozen=True)
class LRPConfig:
    """Rule settings. The ``*_rule`` switches exist to show what breaks: ``"gradient"`` = plain autograd."""

    bias: str = "absorb"  # "absorb": biases / shifts / added constants keep their share | "ignore": zennit zero_params
    eps: float = 1e-6  # ε stabiliser of every linear / convolution / shift rule
    gamma_conv1d: float = 10.0
    gamma_conv2d: float = 0.1
    gamma_linear: float = 0.0  # 0 = ε-rule on linear layers (docs/formulas.md)
    softmax_rule: str = "attnlrp"  # "attnlrp" (x (R - s ΣR), its remainder absorbed) | "constant" (CP-LRP: weights held fixed)
    matmul_rule: str = "uniform"  # "uniform" (AttnLRP 50/50) | "gradient" (double counts)
    norm_rule: str = "constant_std"  # "constant_std" | "gradient" (scale-invariant: relevance vanishes)
    act_rule: str = "identity"  # "identity" | "gradient" (x f'(x) instead of f(x))
    check_forward: bool = True  # the hooked forward must reproduce the model's output

    def __post_init__(self):
        for name, allowed in (("bias", BIAS_MODES), ("matmul_rule", ("uniform", "gradient")),
                              ("softmax_rule", ("attnlrp", "constant")),
                              ("norm_rule", ("constant_std", "gradient")), ("act_rule", ("identity", "gradient"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"LRPConfig.{name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class Ledger:
    """Relevance absorbed per kind of rule (float64 totals over the batch)."""

    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def book(self, kind: str, value: Tensor) -> None:
        self.totals[kind] += float(value.double().sum())

    @property
    def total(self) -> float:
        return float(sum(self.totals.values()))


@dataclass(frozen=True)
class LRPResult:
    relevance: Tensor  # same shape as the input
    output: Tensor  # the explained outputs (B,)
    absorbed: dict[str, float]  # ledger totals per kind
    unhandled: tuple[str, ...]  # input-dependent ops no rule knows (given the plain gradient)


# ----------------------------------------------------------------------------------------------- helpers


def _exact(approx: Tensor, exact: Tensor) -> Tensor:
    """Forward value of ``exact``, gradient of ``approx``."""
    return approx + (exact - approx).detach()


def _stab(z: Tensor, eps: float) -> Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _grad(t) -> bool:
    return isinstance(t, Tensor) and t.requires_grad


def _any_grad(args, kwargs) -> bool:
    return any(_grad(t) for t in tree_flatten((args, kwargs))[0])


def _name(func) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)


def _arg(args, kwargs, i: int, name: str, default=None):
    return args[i] if len(args) > i else kwargs.get(name, default)


T = torch.Tensor
LINEAR = {F.linear}
CONV = {F.conv1d: "gamma_conv1d", F.conv2d: "gamma_conv2d", F.conv3d: "gamma_conv2d"}
SOFTMAX = {F.softmax, torch.softmax, T.softmax}
PRODUCTS = {torch.mul, T.mul, T.__mul__, T.__rmul__, torch.matmul, T.matmul, T.__matmul__, T.__rmatmul__, torch.bmm, T.bmm}
DIVISIONS = {torch.div, T.div, T.__truediv__, torch.true_divide}
STATS = {torch.std, T.std, torch.var, T.var, T.norm, torch.norm, torch.linalg.vector_norm}
ACTIVATIONS = {
    F.gelu, F.selu, torch.selu, F.elu, F.relu, torch.relu, T.relu, F.silu, F.softplus, F.leaky_relu, F.mish,
    torch.tanh, T.tanh, F.tanh, torch.sigmoid, T.sigmoid, F.sigmoid, torch.log, T.log,
}
IN_PLACE = {T.__iadd__: T.__add__, T.__isub__: T.__sub__}
ADDS = {torch.add, T.add, T.__add__, T.__radd__, T.__iadd__, torch.sub, T.sub, T.__sub__, T.__rsub__, T.__isub__}
# linear / piecewise-linear / structural ops whose plain gradient conserves relevance exactly
PLAIN = {
    T.__getitem__, T.view, T.reshape, torch.reshape, T.transpose, torch.transpose, T.permute, T.unsqueeze, T.squeeze,
    torch.unsqueeze, torch.squeeze, T.expand, T.expand_as, T.contiguous, torch.cat, torch.stack, T.flatten, torch.flatten,
    T.sum, torch.sum, T.mean, torch.mean, T.__neg__, torch.neg, T.neg, F.pad, F.max_pool1d, F.max_pool2d, F.dropout,
    T.amax, torch.amax, T.max, torch.max, torch.maximum, T.abs, torch.abs, torch.gather, T.gather, torch.topk, T.topk,
    torch.polar, torch.istft, torch.stft, T.to, T.float, T.clone, T.split, T.chunk, T.narrow, T.repeat, T.repeat_interleave,
    T.type_as, T.__setitem__, torch.index_select, T.index_select, T.t, torch.view_as_real, torch.view_as_complex,
    T.__len__, T.dim, T.size, T.is_complex, T.numel, F.interpolate, T.__format__, T.__repr__, T.tolist, T.item,
}
KNOWN = PLAIN | DIVISIONS | STATS | ACTIVATIONS | {F.layer_norm, F.group_norm}


# ----------------------------------------------------------------------------------------------- the mode


class LRPMode(TorchFunctionMode):
    """Routes every op that touches an input-dependent tensor through its LRP rule (see module docstring).

    Parameters must not require grad while active (use :func:`frozen`): "requires grad" then means
    "depends on the explained input", which is how products of two activations are recognised.
    """

    def __init__(self, cfg: LRPConfig, ledger: Ledger):
        super().__init__()
        self.cfg = cfg
        self.ledger = ledger
        self.unhandled: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not _any_grad(args, kwargs):
            return func(*args, **kwargs)
        cfg = self.cfg
        if func in LINEAR:
            return self._affine(func, args, kwargs, cfg.gamma_linear, "linear")
        if func in CONV:
            return self._affine(func, args, kwargs, getattr(cfg, CONV[func]), "conv")
        if func is F.scaled_dot_product_attention:
            return self._sdpa(func, args, kwargs)
        if func in SOFTMAX:
            return self._softmax(func, args, kwargs)
        if func in PRODUCTS:
            return self._product(func, args, kwargs)
        if func in DIVISIONS and cfg.norm_rule != "gradient":
            return self._divide(func, args, kwargs)
        if func in STATS and cfg.norm_rule != "gradient":
            with torch.no_grad():
                return func(*args, **kwargs)
        if func in (F.layer_norm, F.group_norm) and cfg.norm_rule != "gradient":
            return self._norm(func, args, kwargs)
        if func is F.batch_norm:
            return self._batch_norm(func, args, kwargs)
        if func in ACTIVATIONS and cfg.act_rule != "gradient":
            return self._activation(func, args, kwargs)
        if func in ADDS:
            return self._add(func, args, kwargs)
        if func not in KNOWN and not _name(func).endswith("__get__"):  # property reads are not ops
            self.unhandled.add(_name(func))
        return func(*args, **kwargs)

    # ------------------------------------------------------------------ rules

    def _book(self, out: Tensor, absorbed: Callable[[Tensor], dict[str, Tensor]]) -> Tensor:
        """Books, during the backward pass, the relevance the rule at ``out`` keeps (per kind)."""
        def hook(g: Tensor) -> None:
            for k, v in absorbed(g).items():
                self.ledger.book(k, v)

        if out.requires_grad:
            out.register_hook(hook)
        return out

    def _shift(self, part: Tensor, exact: Tensor, kind: str) -> Tensor:
        """``exact = part + shift`` element-wise, the shift constant (bias, norm shift, added table).

        ``bias="ignore"``: R(part) = part / (part ± ε) · R(exact), all relevance passes on (ε aside);
        ``bias="absorb"``: R(part) = part · ∂ (plain gradient), the shift keeps ``shift · ∂``.
        """
        ed, pd = exact.detach(), part.detach()
        if self.cfg.bias == "absorb":
            return self._book(_exact(part, exact), lambda g: {kind: (ed - pd) * g})
        den = _stab(pd, self.cfg.eps)
        approx = part * (ed / den)
        return self._book(_exact(approx, exact), lambda g: {"epsilon": ed * (den - pd) / den * g})

    def _affine(self, func, args, kwargs, gamma: float, kind: str) -> Tensor:
        """ε/γ-rule: gradient of z'_x · stop(z / (z' ± ε)) with z' the γ-modified pre-activation.

        ``bias="ignore"``: z' = z'_x (the bias-free part; γ favours contributions with the sign of z_x), so
        the inputs share all of R(z) up to ε. ``bias="absorb"``: z' = z'_x + b' and the bias keeps b'/z' · R(z).
        """
        x, w = args[0], args[1]
        b = _arg(args, kwargs, 2, "bias")
        rest, kw = args[3:], {k: v for k, v in kwargs.items() if k != "bias"}
        exact = func(*args, **kwargs)
        if _grad(w) or _grad(b) or not _grad(x):  # weights that depend on the input: plain gradient
            self.unhandled.add(_name(func) + "(input-dependent weight)")
            return exact
        op = lambda xx, ww: func(xx, ww, None, *rest, **kw)
        zx = op(x, w)
        ed = exact.detach()
        ignore = self.cfg.bias == "ignore"
        const = torch.zeros_like(ed) if ignore or b is None else ed - zx.detach()  # the bias, broadcast
        zp_x, zp_c = zx, const
        if gamma > 0:
            xp, xn = x.clamp(min=0), x.clamp(max=0)
            wp, wn = w.clamp(min=0), w.clamp(max=0)
            sel = (zx.detach() if ignore else ed) > 0
            zp_x = zx + gamma * torch.where(sel, op(xp, wp) + op(xn, wn), op(xp, wn) + op(xn, wp))
            zp_c = const + gamma * torch.where(sel, const.clamp(min=0), const.clamp(max=0))
        den = zp_x.detach() + zp_c
        sden = _stab(den, self.cfg.eps)
        approx = zp_x * (ed / sden)
        out = _exact(approx, exact)
        return self._book(out, lambda g: {f"{kind}_bias": zp_c * ed / sden * g, "epsilon": ed * (sden - den) / sden * g})

    def _softmax(self, func, args, kwargs) -> Tensor:
        """AttnLRP softmax rule R_i = x_i (R_i - s_i ΣR): the plain softmax gradient; its remainder is booked."""
        x = args[0]
        dim = _arg(args, kwargs, 1, "dim")
        s = func(*args, **kwargs)
        if self.cfg.softmax_rule == "constant":  # CP-LRP: the products it feeds pass all relevance to their other operand
            return s.detach()
        xd, sd = x.detach(), s.detach()

        def absorbed(g: Tensor) -> Tensor:
            grad_x = sd * (g - (sd * g).sum(dim, keepdim=True))
            r_in = torch.where(torch.isfinite(xd), xd * grad_x, torch.zeros_like(xd))  # masked scores carry none
            return sd * g - r_in

        return self._book(s, lambda g: {"softmax": absorbed(g)})

    def _product(self, func, args, kwargs) -> Tensor:
        """Uniform (50/50) rule for a product of two input-dependent tensors."""
        a, b = args[0], args[1]
        if not (_grad(a) and _grad(b)) or self.cfg.matmul_rule == "gradient":
            return func(*args, **kwargs)
        rest = args[2:]
        return 0.5 * (func(a, b.detach(), *rest, **kwargs) + func(a.detach(), b, *rest, **kwargs))

    def _divide(self, func, args, kwargs) -> Tensor:
        """A divisor that depends on the input is held constant (the LayerNorm rule applied to any ``x / std``)."""
        a, b = args[0], args[1]
        if _grad(b):
            b = b.detach()
        return func(a, b, *args[2:], **kwargs)

    def _norm(self, func, args, kwargs) -> Tensor:
        """LayerNorm / GroupNorm with the standard deviation held constant; the shift absorbs relevance."""
        x = args[0]
        exact = func(*args, **kwargs)
        w = _arg(args, kwargs, 2, "weight")
        eps = _arg(args, kwargs, 4, "eps", 1e-5)
        if func is F.layer_norm:
            shape = _arg(args, kwargs, 1, "normalized_shape")
            dims = tuple(range(-len(tuple(shape)), 0))
            y = (x - x.mean(dims, keepdim=True)) / (x.detach().var(dims, unbiased=False, keepdim=True) + eps).sqrt()
            if w is not None:
                y = y * w
        else:
            groups = _arg(args, kwargs, 1, "num_groups")
            xg = x.reshape(x.shape[0], groups, -1)
            y = (xg - xg.mean(-1, keepdim=True)) / (xg.detach().var(-1, unbiased=False, keepdim=True) + eps).sqrt()
            y = y.reshape(x.shape)
            if w is not None:
                y = y * w.reshape(1, -1, *([1] * (x.dim() - 2)))
        return self._shift(y, exact, "norm_shift")

    def _batch_norm(self, func, args, kwargs) -> Tensor:
        """Eval-mode BatchNorm is affine: plain gradient, its shift (bias - mean * scale) booked as absorbed."""
        x = args[0]
        rm, rv = _arg(args, kwargs, 1, "running_mean"), _arg(args, kwargs, 2, "running_var")
        training = _arg(args, kwargs, 5, "training", False)
        exact = func(*args, **kwargs)
        if training or rm is None:
            raise RuntimeError("AttnLRP needs the model in eval mode (BatchNorm with running statistics)")
        w = _arg(args, kwargs, 3, "weight")
        eps = _arg(args, kwargs, 7, "eps", 1e-5)
        scale = 1.0 / torch.sqrt(rv + eps) * (w if w is not None else 1.0)
        y = x * scale.reshape(1, -1, *([1] * (x.dim() - 2)))
        return self._shift(y, exact, "batchnorm_shift")

    def _activation(self, func, args, kwargs) -> Tensor:
        """Identity rule: gradient of x * stop(f(x) / x), so x * grad = f(x) * g."""
        x = args[0]
        exact = func(*args, **kwargs)
        xd, ed = x.detach(), exact.detach()
        nz = xd.abs() > 1e-30
        ratio = torch.where(nz, ed / torch.where(nz, xd, torch.ones_like(xd)), torch.zeros_like(xd))
        approx = x * ratio
        out = _exact(approx, exact)
        return self._book(out, lambda g: {"activation": (ed - approx.detach()) * g})

    def _add(self, func, args, kwargs) -> Tensor:
        """Adding a constant (bias parameters, positional tables) to an input-dependent tensor: a shift."""
        a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
        func = IN_PLACE.get(func, func)  # x += c: computed out of place (the caller rebinds x)
        rest, kw = args[2:], {k: v for k, v in kwargs.items() if k != "other"}
        out = func(a, b, *rest, **kw)
        if _grad(a) and _grad(b):
            return out
        x_is_a = _grad(a)
        with torch.no_grad():
            zero = torch.zeros_like(a if x_is_a else b)
            const = func(*((zero, b) if x_is_a else (a, zero)), *rest, **kw)
        if not isinstance(const, Tensor) or not bool((const != 0).any()):
            return out
        part = func(*((a, torch.zeros_like(const)) if x_is_a else (torch.zeros_like(const), b)), *rest, **kw)
        return self._shift(part, out, "constant")

    def _sdpa(self, func, args, kwargs) -> Tensor:
        """scaled_dot_product_attention decomposed: q k^T (50/50), softmax rule, A v (50/50)."""
        q, k, v = args[:3]
        mask = _arg(args, kwargs, 3, "attn_mask")
        dropout = _arg(args, kwargs, 4, "dropout_p", 0.0)
        causal = _arg(args, kwargs, 5, "is_causal", False)
        scale = kwargs.get("scale") or 1.0 / math.sqrt(q.shape[-1])
        if dropout:
            raise RuntimeError("AttnLRP needs the model in eval mode (attention dropout is active)")
        exact = func(*args, **kwargs)
        scores = self._product(torch.matmul, (q, k.transpose(-2, -1)), {}) * scale
        if causal:
            L, S = scores.shape[-2:]
            mask = torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        attn = self._softmax(torch.softmax, (scores, -1), {})
        out = self._product(torch.matmul, (attn, v), {})
        return _exact(out, exact)


# ----------------------------------------------------------------------------------------------- driver


@contextmanager
def frozen(model: nn.Module):
    """Eval mode and parameters without grad for the duration (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        for m, t in modes:
            m.training = t


def attnlrp(forward: Callable[[Tensor], Tensor], x: Tensor, model: nn.Module, cfg: LRPConfig = LRPConfig()) -> LRPResult:
    """Relevance of ``x`` for the outputs ``forward(x)`` (shape (B,), one scalar per batch item, each explained).

    ``model`` is every module ``forward`` runs (frozen during the call). Raises if the hooked forward
    differs from the plain one (an op the rules changed by mistake).
    """
    ledger = Ledger()
    with frozen(model):
        xin = x.detach().clone().requires_grad_(True)
        mode = LRPMode(cfg, ledger)
        with mode:
            out = forward(xin)
        if out.dim() != 1:
            raise ValueError(f"forward must return one scalar per batch item (B,), got shape {tuple(out.shape)}")
        if cfg.check_forward:
            with torch.no_grad():
                ref = forward(x.detach())
            tol = 1e-3 * (1.0 + ref.abs().max().item())
            if not torch.allclose(out.detach(), ref, atol=tol, rtol=0):
                raise RuntimeError(
                    f"AttnLRP forward deviates from the model by {(out.detach() - ref).abs().max().item():.3g}: "
                    "a rule changed an op's value; report the model type"
                )
        (grad,) = torch.autograd.grad(out.sum(), xin)
    return LRPResult(xin.detach() * grad, out.detach(), dict(ledger.totals), tuple(sorted(mode.unhandled)))
