"""Losses on logits: binary segmentation (`loss=bce|dice|bce_dice` differ only in weights) and classification."""

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


class MaskedBCEWithLogits(nn.Module):
    """Classification (binary, multi-label): BCE-with-logits averaged over the label entries that are known.

    Why a mask: CheXpert's `ignore` policy marks uncertain labels -1; they must not count as negatives (plain
    BCE would) nor as positives. `pos_weight` (one value or one per label) up-weights rare positives, as
    torch's BCEWithLogitsLoss does. Soft targets in (0, 1) (the benchmark's U(0.55, 0.85) policy) pass through.
    """

    def __init__(self, pos_weight: float | list[float] | None = None, ignore_value: float = -1.0):
        super().__init__()
        self.ignore_value = float(ignore_value)
        self.register_buffer("pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight).float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float(), target.float().reshape(logits.shape)
        known = target != self.ignore_value
        loss = F.binary_cross_entropy_with_logits(logits, target.clamp(0, 1), reduction="none",
                                                  pos_weight=self.pos_weight)
        return (loss * known).sum() / known.sum().clamp(min=1)


class CrossEntropy(nn.Module):
    """Multi-class classification: softmax cross-entropy on integer class targets (B,)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target.long().reshape(-1), label_smoothing=self.label_smoothing)
