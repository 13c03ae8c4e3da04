"""The supervised segmentation loss the U-Net and SegDiff's ``logit`` parameterisation share."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_dice(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, pos_weight: float, dice_weight: float) -> torch.Tensor:
    """Mean BCE over valid bins (foreground weighted ``pos_weight``) + ``dice_weight`` x soft Dice loss over the batch.

    ``valid`` (B, 1, L, 1) is 0 on the padding past an utterance's end."""
    w = valid.expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=w, pos_weight=torch.tensor(pos_weight, device=logits.device), reduction="sum")
    bce = bce / w.sum().clamp_min(1.0)
    p = torch.sigmoid(logits) * w
    dice = 1.0 - (2.0 * (p * target).sum() + 1.0) / (p.sum() + (target * w).sum() + 1.0)
    return bce + dice_weight * dice
