"""The U-Net: per level two (3x3 conv, GroupNorm, SiLU) blocks; max-pool down, nearest up, skip concatenation.

Tensors are ``(B, 1, frames, freq)`` time-first; any frame count works (both axes are zero-padded to the
down-sampling factor inside :meth:`UNet.forward` and the output cropped back). The output is a logit map.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.segdiff.model import pad_to

from .config import ModelConfig


def conv_block(cin: int, cout: int, groups: int) -> nn.Sequential:
    """Two (3x3 conv -> GroupNorm -> SiLU)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
    )


class UNet(nn.Module):
    """Encoder ``widths[0] .. widths[-1]`` (the last level is the bottleneck), mirrored decoder, 1x1 logit head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.down = nn.ModuleList(conv_block(1 if i == 0 else w[i - 1], w[i], cfg.groups) for i in range(len(w)))
        self.up = nn.ModuleList(conv_block(w[i + 1] + w[i], w[i], cfg.groups) for i in reversed(range(len(w) - 1)))
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, frames, freq)`` of an input of the same shape."""
        frames, n_freq = x.shape[-2:]
        h = pad_to(x, self.cfg.down_factor)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h if i == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            h = block(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skip], dim=1))
        return self.head(h)[..., :frames, :n_freq]
