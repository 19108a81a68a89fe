"""LR schedules as Lightning `lr_scheduler` dicts. Config files bind the shape; the run supplies the length.

Each factory is called as `factory(optimizer, total_steps=..., monitor=...)` by the LightningModule, so
the step-based schedules know the run's length (epochs × steps per epoch) without the user computing it.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from medtransfer.errors import ConfigError


def _per_step(optimizer: Optimizer, fn) -> dict:
    return {"scheduler": LambdaLR(optimizer, fn), "interval": "step", "frequency": 1}


def _poly_factor(total_steps: int, power: float, floor: float, warmup: int = 0, warmup_ratio: float = 1e-6):
    """Factor of the group's base LR at step s: a linear warm-up from ``warmup_ratio`` (MMSeg's LinearLR
    start_factor) over ``warmup`` steps, then (1 - t/T)^power from 1 down to ``floor`` over the rest."""
    span = max(1, total_steps - warmup)

    def fn(s: int) -> float:
        if s < warmup:
            return warmup_ratio + (1 - warmup_ratio) * s / warmup
        t = min(s - warmup, span) / span
        return (1 - t) ** power * (1 - floor) + floor

    return fn


def poly(optimizer: Optimizer, total_steps: int, power: float = 0.9, min_lr: float = 0.0, warmup_steps: int = 0,
         **_) -> dict:
    """MMSeg PolyLR: (base - min_lr) × (1 - t/T)^power + min_lr, per step; ``min_lr`` is an absolute floor
    reached at the last step, as MMEngine's ``eta_min``.

    Why the checks: a floor at or above the starting LR used to be clamped to the base, so AdamW 6e-5 with
    the SGD protocol's min_lr 1e-4 trained at a constant 6e-5 for the whole run without a word. The top
    group's base LR (the optimizer's ``lr``) must be above ``min_lr`` (a one-line ConfigError otherwise, raised
    when the grid check composes the schedule). A lower group (the encoder under an encoder LR factor) whose
    base is at or below ``min_lr`` decays to the same fraction of its base as the top group does
    (MMEngine would hold it flat or raise it to ``min_lr``); a group above ``min_lr`` follows MMSeg exactly.
    """
    bases = [g["lr"] for g in optimizer.param_groups]
    top = max(bases)
    if min_lr < 0 or min_lr >= top:
        raise ConfigError(f"schedule=poly: schedule.min_lr={min_lr:g} must be >= 0 and below the optimizer's lr "
                          f"({top:g}); it is the floor the LR decays to (MMSeg: 1e-4 for SGD 0.01, 0 for AdamW)")
    fns = [_poly_factor(total_steps, power, floor=(min_lr / b) if b > min_lr else (min_lr / top),
                        warmup=int(warmup_steps)) for b in bases]
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


class WindowedLossPlateau(ReduceLROnPlateau):
    """Paper 003: "reduced by 0.90 after every 2000 training iterations if the loss did not decrease".

    Lightning steps it every iteration with that step's training loss; it keeps the mean over each window of
    ``every`` iterations and multiplies the LR by ``factor`` when a window's mean is not below the best
    earlier window's (ReduceLROnPlateau, mode min, patience 0) — a window mean, because one batch's loss
    against another's would decay the LR on noise. The window state lives in ``__dict__``, so it travels in
    the scheduler's state_dict and a resumed run continues the same window.
    """

    def __init__(self, optimizer: Optimizer, every: int, factor: float):
        super().__init__(optimizer, mode="min", factor=factor, patience=0, threshold=0.0)
        self.every, self.window_sum, self.window_n = int(every), 0.0, 0

    def step(self, metrics, epoch=None):
        self.window_sum += float(metrics)
        self.window_n += 1
        if self.window_n >= self.every:
            mean = self.window_sum / self.window_n
            self.window_sum, self.window_n = 0.0, 0
            super().step(mean)


def loss_plateau(optimizer: Optimizer, total_steps: int = 0, every: int = 2000, factor: float = 0.9, **_) -> dict:
    if int(every) < 1 or not 0 < float(factor) < 1:
        raise ConfigError(f"schedule=loss_plateau: every={every} must be >= 1 and factor={factor} in (0, 1)")
    return {"scheduler": WindowedLossPlateau(optimizer, every, factor), "interval": "step", "frequency": 1,
            "monitor": "train/loss_step"}


def multistep(optimizer: Optimizer, total_steps: int, milestones: tuple[float, ...] = (0.5, 0.75),
              gamma: float = 0.1, **_) -> dict:
    """LR × gamma at each milestone, given as fractions of the run (MedMNIST v2: × 0.1 at epochs 50 and 75 of
    100). Per step, so the milestones hold whatever the epoch length; fractions, so they follow max_epochs."""
    if not milestones or any(not 0 < float(m) < 1 for m in milestones) or not 0 < float(gamma) < 1:
        raise ConfigError(f"schedule=multistep: milestones={list(milestones)} must be fractions in (0, 1) and "
                          f"gamma={gamma} in (0, 1)")
    steps = sorted(int(round(float(m) * total_steps)) for m in milestones)
    return _per_step(optimizer, lambda s: float(gamma) ** sum(s >= m for m in steps))
