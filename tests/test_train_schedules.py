import itertools
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


def _poly_from_conf(opt, total_steps, **over):
    import hydra
    from omegaconf import OmegaConf

    from medtransfer import settings

    cfg = OmegaConf.merge(OmegaConf.load(settings.PROJECT_ROOT / "conf/schedule/poly.yaml"), over)
    return hydra.utils.instantiate(cfg)(opt, total_steps=total_steps)


@pytest.mark.parametrize("lr", [6e-5, 1e-4])
def test_poly_decays_from_any_start_lr(lr):
    """AdamW 6e-5 (paper 000's transformers) and Adam 1e-4 used to train at a constant LR: the old default
    floor (1e-4) was clamped to the base, so the factor never left 1."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    lrs = [x[0] for x in _lrs(_poly_from_conf(opt, 100)["scheduler"], opt, 101)]
    assert lrs[0] == pytest.approx(lr)
    assert lrs[50] == pytest.approx(lr * 0.5 ** 0.9)
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in itertools.pairwise(lrs[:100]))


def test_poly_floor_at_or_above_the_start_is_refused():
    from medtransfer.errors import ConfigError

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=6e-5)
    with pytest.raises(ConfigError, match=r"schedule\.min_lr=0\.0001 must be >= 0 and below the optimizer's lr"):
        schedules.poly(opt, total_steps=10, min_lr=1e-4)


def test_poly_group_below_the_floor_decays_by_the_same_fraction():
    """Encoder at 0.01 × SGD 0.01 = 1e-4 with MMSeg's floor 1e-4: it ends at 1e-4 × (1e-4 / 1e-2), not flat."""
    opt = _opt((0.01, 1e-4))
    lrs = _lrs(schedules.poly(opt, total_steps=10, power=0.9, min_lr=1e-4)["scheduler"], opt, 11)
    assert lrs[10] == pytest.approx([1e-4, 1e-6])
    assert lrs[5][1] == pytest.approx(1e-4 * ((1 - 1e-2) * 0.5 ** 0.9 + 1e-2))


def test_poly_linear_warmup_then_decay():
    """MMSeg's transformer schedule: LinearLR from 1e-6 × lr over the warm-up, then poly over the rest."""
    opt = _opt((6e-5,))
    lrs = [x[0] for x in _lrs(schedules.poly(opt, total_steps=20, power=1.0, warmup_steps=10)["scheduler"], opt, 21)]
    assert lrs[0] == pytest.approx(6e-5 * 1e-6)
    assert lrs[5] == pytest.approx(6e-5 * (1e-6 + (1 - 1e-6) * 0.5))
    assert lrs[10] == pytest.approx(6e-5)
    assert lrs[15] == pytest.approx(3e-5)
    assert lrs[20] == pytest.approx(0.0, abs=1e-12)


def test_loss_plateau_decays_only_after_a_window_without_improvement():
    opt = _opt((1e-4,))
    s = schedules.loss_plateau(opt, every=3, factor=0.9)
    assert (s["interval"], s["monitor"]) == ("step", "train/loss_step")
    sched = s["scheduler"]
    losses = [1.0, 1.0, 1.0,   # window 1: mean 1.0 (the first: nothing to compare with)
              0.5, 0.5, 0.5,   # window 2: improved → keep
              0.6, 0.5, 0.7,   # window 3: mean 0.6 > 0.5 → × 0.9
              0.6, 0.6, 0.6,   # window 4: still not below 0.5 → × 0.9 again
              0.1, 0.1, 0.1]   # window 5: improved → keep
    seen = []
    for loss in losses:
        sched.step(loss)
        seen.append(opt.param_groups[0]["lr"])
    assert seen[5] == pytest.approx(1e-4) and seen[8] == pytest.approx(9e-5)
    assert seen[11] == pytest.approx(8.1e-5) and seen[14] == pytest.approx(8.1e-5)
    assert seen[7] == pytest.approx(1e-4)  # never mid-window
    state = sched.state_dict()
    assert (state["window_n"], state["every"]) == (0, 3)


def test_loss_plateau_trains_in_lightning_on_the_logged_step_loss(tmp_path):
    """The monitor key is what the module logs each step (train/loss with on_step and on_epoch)."""
    import lightning as L

    from medtransfer.train.module import SegmentationModule

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1)

        def forward(self, x):
            return self.conv(x)

        def param_groups(self):
            return {"decoder": list(self.parameters())}

    batches = [{"image": torch.randn(2, 3, 8, 8), "mask": (torch.rand(2, 1, 8, 8) > 0.5).float()}] * 4
    module = SegmentationModule(Net(), torch.nn.BCEWithLogitsLoss(),
                                lambda groups: torch.optim.SGD(groups, lr=1.0),
                                lambda opt, **kw: schedules.loss_plateau(opt, every=1, factor=0.5))
    trainer = L.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    sched = trainer.lr_scheduler_configs[0].scheduler
    # Lightning fed it the step loss each iteration: the best window mean is a real BCE value
    assert 0 < sched.best < 10 and sched.window_n == 0


def test_multistep_drops_at_fractions_of_the_run():
    opt = _opt((1e-3,))
    lrs = [x[0] for x in _lrs(schedules.multistep(opt, total_steps=100)["scheduler"], opt, 100)]
    assert lrs[49] == pytest.approx(1e-3) and lrs[50] == pytest.approx(1e-4)
    assert lrs[74] == pytest.approx(1e-4) and lrs[75] == pytest.approx(1e-5) and lrs[99] == pytest.approx(1e-5)
    from medtransfer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"milestones=\[50\] must be fractions in \(0, 1\)"):
        schedules.multistep(opt, total_steps=100, milestones=(50,))
