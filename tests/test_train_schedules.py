import math

import pytest
import torch

from medtransfer.train import schedules


def _opt(lrs=(0.01,)):
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs], lr=lrs[0])


def _lrs(sched, opt, steps):
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def test_poly_matches_mmseg_formula_per_group():
    opt = _opt((0.01, 0.001))
    s = schedules.poly(opt, total_steps=10, power=0.9, min_lr=1e-4)
    assert s["interval"] == "step"
    lrs = _lrs(s["scheduler"], opt, 10)
    for step, (a, b) in enumerate(lrs):
        coeff = (1 - step / 10) ** 0.9
        assert a == pytest.approx((0.01 - 1e-4) * coeff + 1e-4)
        assert b == pytest.approx((0.001 - 1e-4) * coeff + 1e-4)


def test_cosine_with_warmup_hits_endpoints():
    opt = _opt()
    s = schedules.cosine(opt, total_steps=20, min_lr_factor=0.1, warmup_fraction=0.25)
    lrs = [x[0] for x in _lrs(s["scheduler"], opt, 21)]
    assert lrs[0] == pytest.approx(0.01 / 5)  # warm-up step 1 of 5
    assert lrs[4] == pytest.approx(0.01)  # warm-up done
    assert lrs[5] == pytest.approx(0.01)  # cosine starts at the top
    assert lrs[20] == pytest.approx(0.001)  # and ends at min_lr_factor
    mid = 5 + 15 // 2
    assert lrs[mid] == pytest.approx(0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * 7 / 15)))


def test_constant_and_plateau():
    opt = _opt()
    assert all(x[0] == 0.01 for x in _lrs(schedules.constant(opt, 5)["scheduler"], opt, 5))
    p = schedules.plateau(opt, monitor="val/dice_per_image", patience=0, factor=0.5)
    assert p["monitor"] == "val/dice_per_image" and p["interval"] == "epoch"
    p["scheduler"].step(0.5)
    p["scheduler"].step(0.4)  # no improvement (mode max) → halve
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)
