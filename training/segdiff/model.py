"""The SegDiff network: a UNet on the noisy mask plus an RRDB conditioning encoder.

Tensors are ``(B, C, frames, freq)`` (time-first, like the dataset). Both spatial axes are padded
internally to a multiple of the UNet's down-sampling factor and cropped back, so any length works.
The encoder's full-resolution output is ADDED to the UNet's first conv output (SegDiff, Amit et al. 2021).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


def group_norm(ch: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``ch`` (small widths)."""
    g = max(d for d in range(1, min(groups, ch) + 1) if ch % d == 0)
    return nn.GroupNorm(g, ch)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps ``t`` (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def pad_to(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Zero-pad the last two axes up to multiples of ``factor``."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % factor, 0, (-h) % factor))


class ResBlock(nn.Module):
    """GN-SiLU-conv, + time embedding, GN-SiLU-dropout-conv, with a 1x1 skip when widths differ."""

    def __init__(self, cin: int, cout: int, temb: int, groups: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2, self.conv2 = group_norm(cout, groups), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Multi-head self-attention over all positions of a (low-resolution) feature map."""

    def __init__(self, ch: int, groups: int, heads: int):
        super().__init__()
        self.norm = group_norm(ch, groups)
        self.heads = heads if ch % heads == 0 else 1
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class DenseBlock(nn.Module):
    """ESRGAN residual dense block: 5 convs, each seeing all earlier outputs; residual scale 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, padding=1) for i in range(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            y = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(F.leaky_relu(y, 0.2))
        return x + 0.2 * y


class RRDB(nn.Module):
    """Residual-in-residual dense block: 3 dense blocks, outer residual scale 0.2."""

    def __init__(self, nf: int, gc: int):
        super().__init__()
        self.blocks = nn.Sequential(*(DenseBlock(nf, gc) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)


class RRDBEncoder(nn.Module):
    """conv -> n RRDBs -> conv (+ long skip) -> conv to the UNet width: the full-resolution condition."""

    def __init__(self, cin: int, nf: int, gc: int, n_blocks: int, cout: int):
        super().__init__()
        self.first = nn.Conv2d(cin, nf, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(nf, gc) for _ in range(n_blocks)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.out = nn.Conv2d(nf, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.first(x)
        fea = fea + self.trunk_conv(self.trunk(fea))
        return self.out(F.leaky_relu(fea, 0.2))


def frame_positions(frames: int, n_features: int, hop: int, stride: int, field: int) -> torch.Tensor:
    """Fractional detector-frame index under each STFT frame's centre (``j * hop`` samples; centred STFT),
    detector frame k covering samples [k * stride, k * stride + field): k = (j * hop - field / 2) / stride."""
    pos = (torch.arange(frames, dtype=torch.float32) * hop - field / 2) / stride
    return pos.clamp(0, max(n_features - 1, 0))


class LayerProjector(nn.Module):
    """ADDSegDiff: each detector layer (B, T', D) -> LayerNorm -> 2-layer MLP -> (B, T', P) -> an image on the grid.

    Time: each STFT frame reads the detector frame under its centre (linear interpolation between the two
    nearest; the detector's frames are ``stride`` samples apart with a ``field``-sample receptive field).
    Frequency: the MLP's P outputs are resized to ``n_freq`` bins."""

    def __init__(self, n_layers: int, dim: int, proj: int, hop: int = 128, stride: int = 320, field: int = 400):
        super().__init__()
        self.hop, self.stride, self.field = hop, stride, field
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, proj), nn.GELU(), nn.Linear(proj, proj)) for _ in range(n_layers)
        )

    def forward(self, layers: torch.Tensor, frames: int, n_freq: int) -> torch.Tensor:
        """``layers`` (B, L, T', D) -> (B, L, frames, n_freq)."""
        if layers.shape[1] != len(self.mlps):
            raise ValueError(f"expected {len(self.mlps)} detector layers, got {layers.shape[1]}")
        img = torch.stack([mlp(layers[:, i]) for i, mlp in enumerate(self.mlps)], 1)  # (B, L, T', P)
        pos = frame_positions(frames, img.shape[2], self.hop, self.stride, self.field).to(img.device)
        lo = pos.floor().long()
        hi = (lo + 1).clamp(max=img.shape[2] - 1)
        w = (pos - lo)[None, None, :, None]
        img = img[:, :, lo] * (1 - w) + img[:, :, hi] * w  # (B, L, frames, P)
        return F.interpolate(img, size=(frames, n_freq), mode="bilinear", align_corners=False)


class SegDiffUNet(nn.Module):
    """UNet on the noisy mask x_t (predicting eps or x0), conditioned by an additive RRDB feature map."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w, g, temb = cfg.width, cfg.groups, cfg.width * 4
        self.time_mlp = nn.Sequential(nn.Linear(w, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.projector = (
            LayerProjector(len(cfg.detector_layers), cfg.detector_dim, cfg.layer_proj, cfg.hop_length, cfg.detector_stride,
                           cfg.detector_field) if cfg.condition == "detector" else None
        )
        self.encoder = RRDBEncoder(cfg.cond_channels, cfg.rrdb_width, cfg.rrdb_growth, cfg.rrdb_blocks, w)
        self.inp = nn.Conv2d(1, w, 3, padding=1)

        self.down = nn.ModuleList()
        chans, ch = [w], w
        for lvl, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                blocks = [ResBlock(ch, w * mult, temb, g, cfg.dropout)]
                ch = w * mult
                if lvl in cfg.attention_levels:
                    blocks.append(AttnBlock(ch, g, cfg.heads))
                self.down.append(nn.ModuleList(blocks))
                chans.append(ch)
            if lvl < len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                chans.append(ch)
        mid_attn = [AttnBlock(ch, g, cfg.heads)] if cfg.mid_attention else []
        self.mid = nn.ModuleList([ResBlock(ch, ch, temb, g, cfg.dropout), *mid_attn, ResBlock(ch, ch, temb, g, cfg.dropout)])
        self.up = nn.ModuleList()
        for lvl, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                blocks = [ResBlock(ch + chans.pop(), w * mult, temb, g, cfg.dropout)]
                ch = w * mult
                if lvl in cfg.attention_levels:
                    blocks.append(AttnBlock(ch, g, cfg.heads))
                if lvl > 0 and i == cfg.num_res_blocks:
                    blocks.append(Upsample(ch))
                self.up.append(nn.ModuleList(blocks))
        self.out_norm = group_norm(ch, g)
        self.out = nn.Conv2d(ch, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def encode_condition(self, cond: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """The conditioning feature map at the padded grid; depends only on the input, so cache it.

        ``cond``: spec -> (B, 1, frames, n_freq) normalised log-magnitude; detector -> (B, L, T', D)
        layer outputs (``frames`` required: the grid they are resampled onto).
        """
        if self.projector is not None:
            if frames is None:
                raise ValueError("detector conditioning needs the number of spectrogram frames")
            cond = self.projector(cond, frames, self.cfg.n_freq)
        return self.encoder(pad_to(cond, self.cfg.down_factor))

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond_feats: torch.Tensor) -> torch.Tensor:
        """Predict eps (or x0) for ``x`` (B, 1, frames, freq) at steps ``t`` given cached ``cond_feats``.

        ``t`` is (B,) or (1,) (one step shared by the batch: its embedding is computed once and
        broadcast); ``cond_feats`` has batch B or 1 (broadcast over the samples of one crop).
        """
        frames, nf = x.shape[-2:]
        emb = self.time_mlp(timestep_embedding(t, self.cfg.width))
        h = self.inp(pad_to(x, self.cfg.down_factor))
        if cond_feats.shape[-2:] != h.shape[-2:]:
            raise ValueError(f"condition grid {tuple(cond_feats.shape[-2:])} does not match mask grid {tuple(h.shape[-2:])}")
        h = h + cond_feats
        hs = [h]
        for blocks in self.down:
            for blk in blocks:
                h = blk(h, emb) if isinstance(blk, (ResBlock, AttnBlock)) else blk(h)
            hs.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        for blocks in self.up:
            h = torch.cat([h, hs.pop()], 1)
            for blk in blocks:
                h = blk(h, emb) if isinstance(blk, (ResBlock, AttnBlock)) else blk(h)
        out = self.out(F.silu(self.out_norm(h)))
        return out[..., :frames, :nf]

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Uncached path: encode the condition then denoise (training)."""
        return self.denoise(x, t, self.encode_condition(cond, frames=x.shape[-2]))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
