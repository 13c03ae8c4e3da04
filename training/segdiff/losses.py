"""The supervised segmentation loss the U-Net and SegDiff's ``logit`` parameterisation share."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_dice(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, pos_weight: float, dice_weight: float,
             world=None) -> torch.Tensor:
    """Mean BCE over valid bins (foreground weighted ``pos_weight``) + ``dice_weight`` x soft Dice loss over the batch.

    ``valid`` (B, 1, L, 1) is 0 on the padding past an utterance's end. ``world`` (``training.distributed.World``):
    the inputs are this rank's part of the global batch; the BCE is rescaled and the Dice sums all-reduced (with
    gradients), so DDP's average over ranks is the 1-process loss of the whole batch."""
    w = valid.expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=w, pos_weight=torch.tensor(pos_weight, device=logits.device), reduction="sum")
    bce = bce / w.sum().clamp_min(1.0)
    p = torch.sigmoid(logits) * w
    sums = torch.stack([(p * target).sum(), p.sum() + (target * w).sum()])
    if world is not None and world.size > 1:
        from torch.distributed.nn.functional import all_reduce

        bce, sums = bce * world.share(w.sum()), all_reduce(sums)
    dice = 1.0 - (2.0 * sums[0] + 1.0) / (sums[1] + 1.0)
    return bce + dice_weight * dice
