"""Decoder heads smp does not have."""

from __future__ import annotations

import torch
from torch import nn


class FCNHead(nn.Module):
    """MMSeg ``FCNHead`` (``concat_input=False``): ``num_convs`` × (3×3 conv, BN, ReLU) on the deepest feature,
    then dropout. The 1×1 classifier and the upsampling to the input size are the model's common head.

    Takes smp-convention feature lists (uses ``features[-1]``), so it slots in where smp's decoders do.
    """

    def __init__(self, in_channels: int, channels: int = 512, num_convs: int = 2, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers += [
                nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*layers) if layers else nn.Identity()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.out_channels = channels if num_convs else in_channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.dropout(self.convs(features[-1]))
