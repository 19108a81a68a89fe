"""Binary segmentation losses on logits. One class so `loss=bce|dice|bce_dice` differ only in weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BCEDiceLoss(nn.Module):
    """bce_weight × BCE-with-logits + dice_weight × (1 - soft Dice), Dice computed per image then averaged.

    Per-image soft Dice matches the per-image evaluation metric; `smooth` keeps empty masks finite.
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0):
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got bce={bce_weight} dice={dice_weight}")
        self.bce_weight, self.dice_weight, self.smooth = bce_weight, dice_weight, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = target.float()
        loss = logits.new_zeros(())
        if self.bce_weight:
            loss = loss + self.bce_weight * F.binary_cross_entropy_with_logits(logits, target)
        if self.dice_weight:
            probs = torch.sigmoid(logits).flatten(1)
            t = target.flatten(1)
            inter = (probs * t).sum(1)
            dice = (2 * inter + self.smooth) / (probs.sum(1) + t.sum(1) + self.smooth)
            loss = loss + self.dice_weight * (1 - dice).mean()
        return loss
