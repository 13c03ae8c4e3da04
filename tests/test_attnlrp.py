"""AttnLRP: each rule against its formula, relevance conservation, and broken rules failing conservation.

Conservation is checked two ways (float32, relative tolerance 1e-4 of the explained logit):
- on bias-free models without attention, sum(input relevance) == logit directly;
- with attention (whose softmax rule is not conservative by design: its Taylor remainder stays behind)
  and with biases, sum(input relevance) + relevance booked as absorbed (biases, constants, ε, softmax
  remainder) == logit; any other rule that creates or destroys relevance breaks this identity.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from baselines.attnlrp import Ledger, LRPConfig, LRPMode, attnlrp, frozen

TOL = 1e-4


def _zero_biases(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    return model


class ConvNet(nn.Module):
    """Conv front end without attention: conv1d (γ=10) - GroupNorm - GELU - conv1d - LayerNorm - linear - GELU - mean - linear."""

    def __init__(self, bias: bool = False):
        super().__init__()
        self.c1 = nn.Conv1d(1, 8, 10, stride=5, bias=bias)
        self.gn = nn.GroupNorm(4, 8)
        self.c2 = nn.Conv1d(8, 8, 3, stride=2, bias=bias)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 16, bias=bias)
        self.out = nn.Linear(16, 1, bias=bias)

    def forward(self, x):
        h = F.gelu(self.gn(self.c1(x.unsqueeze(1))))
        h = self.ln(self.c2(h).transpose(1, 2))
        return self.out(F.gelu(self.fc(h)).mean(1)).squeeze(-1)


class W2V(nn.Module):
    """A tiny torchaudio wav2vec2 (ConvLayerBlock, FeatureProjection, ConvolutionalPositionalEmbedding,
    SelfAttention, FeedForward, LayerNorm/GroupNorm) + mean pooling + linear head."""

    def __init__(self, layer_norm_first: bool, extractor_mode: str = "group_norm", bias: bool = True):
        super().__init__()
        from torchaudio.models import wav2vec2_model

        self.ssl = wav2vec2_model(
            extractor_mode=extractor_mode, extractor_conv_layer_config=[(8, 10, 5), (8, 3, 2), (8, 2, 2)],
            extractor_conv_bias=bias, encoder_embed_dim=16, encoder_projection_dropout=0.0, encoder_pos_conv_kernel=4,
            encoder_pos_conv_groups=2, encoder_num_layers=2, encoder_num_heads=2, encoder_attention_dropout=0.0,
            encoder_ff_interm_features=32, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
            encoder_layer_norm_first=layer_norm_first, encoder_layer_drop=0.0, aux_num_out=None,
        )
        self.head = nn.Linear(16, 1, bias=bias)

    def forward(self, x):
        feats, _ = self.ssl(x)
        return self.head(feats.mean(1)).squeeze(-1)


def _model(cls, seed: int, **kw) -> nn.Module:
    torch.manual_seed(seed)
    m = cls(**kw).eval()
    return m if kw.get("bias", False) else _zero_biases(m)


def _wave(batch: int = 2, n: int = 801, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n, generator=g)


def _explain(model, x, cfg=LRPConfig()):
    res = attnlrp(model, x, model, cfg)
    total_in = float(res.relevance.double().sum())
    return res, total_in, float(res.output.double().sum())


# ----------------------------------------------------------------------------------------------- single rules


def test_softmax_rule_matches_formula():
    """R_in = x (R - s ΣR) with R = s * c the relevance of the softmax outputs; the remainder is booked."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, generator=g).requires_grad_(True)
    c = torch.randn(3, 6, generator=g)
    ledger = Ledger()
    with LRPMode(LRPConfig(), ledger):
        out = (torch.softmax(x, dim=-1) * c).sum()
    (grad,) = torch.autograd.grad(out, x)
    s = torch.softmax(x.detach(), -1)
    r_out = s * c
    expected = x.detach() * (r_out - s * r_out.sum(-1, keepdim=True))
    torch.testing.assert_close(x.detach() * grad, expected, atol=1e-6, rtol=1e-5)
    assert ledger.totals["softmax"] == pytest.approx(float(r_out.sum() - expected.sum()), abs=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 0.1, 10.0])
def test_linear_gamma_rule_matches_formula(gamma):
    """Generalised γ-rule on F.linear with a bias: R_j = Σ_k c'_jk z_k / (Σ_j c'_jk + b'_k)."""
    g = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(2, 5, generator=g), torch.randn(4, 5, generator=g), torch.randn(4, generator=g)
    xin = x.clone().requires_grad_(True)
    with LRPMode(LRPConfig(gamma_linear=gamma), Ledger()):
        out = F.linear(xin, w, b).sum()
    (grad,) = torch.autograd.grad(out, xin)
    c = x[:, :, None] * w.T[None]  # (B, j, k) contributions
    z = c.sum(1) + b
    pos = z > 0
    cp = c + gamma * torch.where(pos[:, None, :], c.clamp(min=0), c.clamp(max=0))
    bp = b + gamma * torch.where(pos, b.clamp(min=0), b.clamp(max=0))
    expected = (cp * (z / (cp.sum(1) + bp))[:, None, :]).sum(-1)
    torch.testing.assert_close(x * grad, expected, atol=1e-4, rtol=1e-3)


def test_product_rule_splits_half_and_half():
    a = torch.tensor([[2.0, -1.0]], requires_grad=True)
    b = torch.tensor([[3.0, 4.0]], requires_grad=True)
    with LRPMode(LRPConfig(), Ledger()):
        out = (a * b).sum()
    ga, gb = torch.autograd.grad(out, (a, b))
    torch.testing.assert_close(a.detach() * ga, 0.5 * (a * b).detach())
    torch.testing.assert_close(b.detach() * gb, 0.5 * (a * b).detach())


# ----------------------------------------------------------------------------------------------- conservation


def test_conservation_bias_free_without_attention():
    model = _model(ConvNet, 0)
    res, total_in, total_out = _explain(model, _wave())
    assert abs(total_out) > 1e-3
    assert abs(total_in - total_out) <= TOL * abs(total_out), (total_in, total_out)
    assert sum(abs(v) for v in res.absorbed.values()) <= TOL * abs(total_out)
    assert res.unhandled == ()


@pytest.mark.parametrize("layer_norm_first,mode", [(False, "group_norm"), (True, "layer_norm")])
def test_conservation_wav2vec2_bias_free(layer_norm_first, mode):
    """Bias-free torchaudio wav2vec2: only the softmax remainder is absorbed; everything else is conserved."""
    model = _model(W2V, 2, layer_norm_first=layer_norm_first, extractor_mode=mode, bias=False)
    model = _zero_biases(model)
    res, total_in, total_out = _explain(model, _wave(seed=1))
    soft = res.absorbed.get("softmax", 0.0)
    others = {k: v for k, v in res.absorbed.items() if k != "softmax"}
    assert abs(total_out) > 1e-3
    assert abs(total_in + soft - total_out) <= TOL * abs(total_out), (total_in, soft, total_out)
    assert sum(abs(v) for v in others.values()) <= TOL * abs(total_out), others
    assert res.unhandled == ()
    print(f"bias-free wav2vec2 (norm first={layer_norm_first}): sum R / logit = {total_in / total_out:.3f}")


def test_conservation_ledger_with_biases():
    model = _model(W2V, 3, layer_norm_first=False, bias=True)
    res, total_in, total_out = _explain(model, _wave(seed=2))
    assert abs(total_in + sum(res.absorbed.values()) - total_out) <= TOL * max(1.0, abs(total_out))
    assert abs(res.absorbed["linear"]) > TOL  # biases do absorb relevance here: the ledger is not trivially empty


@pytest.mark.parametrize("broken", [dict(matmul_rule="gradient"), dict(norm_rule="gradient"), dict(act_rule="gradient")])
def test_broken_rule_fails_conservation(broken):
    """Plain gradients through a product (double counting), a norm layer (scale invariance: relevance
    vanishes) or GELU (x f'(x) instead of f(x)) break the identity the correct rules satisfy."""
    model = _model(W2V, 2, layer_norm_first=False, bias=False)
    x = _wave(seed=1)
    _, ok_in, ok_out = _explain(model, x)
    res, total_in, total_out = _explain(model, x, replace(LRPConfig(), **broken))
    booked = sum(res.absorbed.values())
    assert total_out == pytest.approx(ok_out, rel=1e-5)  # same forward, only the backward differs
    assert abs(total_in + booked - total_out) > 0.05 * abs(total_out), (broken, total_in, booked, total_out)


def test_attnlrp_on_the_detector_through_rawwrapper():
    """The real detector architecture (tiny config) through RawWrapper: forward reproduced, every op known,
    relevance accounted for, one map per window."""
    from baselines.rawwrapper import RawWrapper, make_windows, spectrogram
    from test_rawwrapper import tiny_detector

    det = tiny_detector()
    x = np.random.default_rng(0).standard_normal(12001).astype(np.float32) * 0.1
    win = make_windows(x, det.config.crop)
    logmag, phase = spectrogram(win.crops)
    wrapper = RawWrapper(det, det.config.crop)
    res = attnlrp(lambda m: wrapper.from_magnitude(m, phase)[:, 1], logmag.exp(), wrapper)
    assert res.relevance.shape == logmag.shape and torch.isfinite(res.relevance).all()
    assert res.unhandled == ()
    total_out = float(res.output.double().sum())
    assert abs(float(res.relevance.double().sum()) + sum(res.absorbed.values()) - total_out) <= TOL * max(1.0, abs(total_out))
    with torch.no_grad():
        torch.testing.assert_close(res.output, wrapper(logmag, phase)[:, 1], atol=1e-4, rtol=1e-4)
    assert all(p.requires_grad for p in det.parameters())  # frozen() restored the flags


def test_frozen_restores_flags_and_mode():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    m[1].eval()  # a wrapper in train mode around an eval submodule (RawWrapper around a detector)
    m[0].bias.requires_grad_(False)
    with frozen(m):
        assert not m.training and not m[1].training and not any(p.requires_grad for p in m.parameters())
    assert m.training and m[0].training and not m[1].training
    assert m[0].weight.requires_grad and not m[0].bias.requires_grad
