"""LR schedules as Lightning `lr_scheduler` dicts. Config files bind the shape; the run supplies the length.

Each factory is called as `factory(optimizer, total_steps=..., monitor=...)` by the LightningModule, so
the step-based schedules know the run's length (epochs × steps per epoch) without the user computing it.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau


def _per_step(optimizer: Optimizer, fn) -> dict:
    return {"scheduler": LambdaLR(optimizer, fn), "interval": "step", "frequency": 1}


def _poly_factor(total_steps: int, power: float, floor: float):
    return lambda s: (1 - min(s, total_steps) / total_steps) ** power * (1 - floor) + floor


def poly(optimizer: Optimizer, total_steps: int, power: float = 0.9, min_lr: float = 0.0, **_) -> dict:
    """MMSeg PolyLR: (base - min) × (1 - t/T)^power + min, per step; min_lr is absolute as in MMSeg."""
    bases = [g["lr"] for g in optimizer.param_groups]
    # LambdaLR multiplies each group's base LR, so express min_lr relative to each group's base
    fns = [_poly_factor(total_steps, power, floor=min(min_lr / b, 1.0)) for b in bases]
    return {"scheduler": LambdaLR(optimizer, fns), "interval": "step", "frequency": 1}


def cosine(optimizer: Optimizer, total_steps: int, min_lr_factor: float = 0.0, warmup_fraction: float = 0.0,
           **_) -> dict:
    """Cosine from 1 to min_lr_factor over the run, after an optional linear warm-up."""
    warmup = int(round(warmup_fraction * total_steps))

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_factor + (1 - min_lr_factor) * 0.5 * (1 + math.cos(math.pi * t))

    return _per_step(optimizer, fn)


def constant(optimizer: Optimizer, total_steps: int = 0, **_) -> dict:
    return _per_step(optimizer, lambda step: 1.0)


def plateau(optimizer: Optimizer, total_steps: int = 0, monitor: str = "val/dice_per_image", factor: float = 0.5,
            patience: int = 5, mode: str = "max", **_) -> dict:
    return {"scheduler": ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience),
            "interval": "epoch", "frequency": 1, "monitor": monitor}
