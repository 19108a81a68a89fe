"""The config-time checks fail closed and in one line: settings that only break when instantiated, typed
values, missing weights offline, unwritable run folders, impossible cells — for one job and for a grid."""

import pytest
from hydra import compose, initialize_config_dir

from medtransfer import settings
from medtransfer.errors import ConfigError, NotApplicable
from medtransfer.train import resolvers  # noqa: F401
from medtransfer.train.sweep import validate_grid
from medtransfer.train.validate import validate

CONF = str(settings.PROJECT_ROOT / "conf")
SCRATCH = ["pretrain=scratch", "dataset=synthetic", "encoder=r18", "decoder=unet"]


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _grid(overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return validate_grid("train", overrides)


def test_an_optimizer_argument_it_does_not_take_is_a_config_error():
    """AdamW inherits SGD's momentum from paper 000's protocol: the check builds the optimizer for real."""
    with pytest.raises(ConfigError, match=r"optimizer \(torch\.optim\.AdamW\) cannot be built: TypeError: .*momentum"):
        validate(_compose([*SCRATCH, "experiment=paper000_decoders", "optimizer=adamw", "optimizer.lr=6e-5",
                           "dataset=synthetic", "pretrain=scratch"]))
    with pytest.raises(ConfigError, match=r"unexpected keyword argument 'lrr'"):
        validate(_compose([*SCRATCH, "+optimizer.lrr=0.1"]))


def test_a_poly_floor_above_the_start_lr_is_a_config_error():
    with pytest.raises(ConfigError, match=r"schedule\.min_lr=0\.0001 must be >= 0 and below the optimizer's lr"):
        validate(_compose([*SCRATCH, "schedule=poly", "schedule.min_lr=1e-4", "optimizer.lr=6e-5"]))


@pytest.mark.parametrize("override, match", [("batch_size=abc", r"batch_size='abc': expected an integer >= 1"),
                                             ("image_size=0", r"image_size=0: expected an integer >= 1"),
                                             ("encoder_lr_factor=fast", r"encoder_lr_factor='fast': expected a number")])
def test_badly_typed_values_are_one_line_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        validate(_compose([*SCRATCH, override]))


def test_paper000_backbones_gives_each_cell_its_protocol():
    """SGD 0.01 + poly (floor 1e-4) for the CNN, AdamW 6e-5 + warm-up + poly to 0 for ViT-B/Swin-B: one grid."""
    cells = {enc: _compose(["experiment=paper000_backbones", f"encoder={enc}", "pretrain=scratch"])
             for enc in ("r50", "vit_b", "swin_b")}
    assert (cells["r50"].optimizer._target_, cells["r50"].optimizer.lr) == ("torch.optim.SGD", 0.01)
    assert cells["r50"].schedule.min_lr == 1e-4 and cells["r50"].optimizer.weight_decay == 0.005
    for enc in ("vit_b", "swin_b"):
        opt, sched = cells[enc].optimizer, cells[enc].schedule
        assert (opt._target_, opt.lr, opt.weight_decay) == ("torch.optim.AdamW", 6e-5, 0.01)
        assert (sched.min_lr, sched.power, sched.warmup_steps) == (0.0, 1.0, 1500)
        assert "momentum" not in opt
    for cfg in cells.values():
        validate(cfg)


def test_an_unwritable_runs_root_is_a_config_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"run directory .* cannot be created: .*a_file is not a writable folder"):
        validate(_compose([*SCRATCH, f"paths.runs_root={blocker / 'runs'}"]))


@pytest.mark.usefixtures("offline_cache")  # a fresh cache: another test may have placed files in the shared one
def test_weights_missing_offline_name_the_file_to_place(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"pretrain=imagenet encoder=r18: weights not cached and HF_HUB_OFFLINE=1; "
                                          r"download https://\S+ and place it at \S+weights/imagenet/r18/"):
        validate(_compose(["encoder=r18", "decoder=unet", "dataset=synthetic", "pretrain=imagenet"]))


def test_an_impossible_cell_is_not_applicable_not_a_typo():
    with pytest.raises(NotApplicable, match="radimagenet.*no ViT weights"):
        validate(_compose(["encoder=vit_b", "pretrain=radimagenet", "dataset=synthetic"]))


def test_grid_fails_closed_on_any_exception(monkeypatch):
    """Hydra turns a callback's exception into a warning and launches the jobs anyway: the check must exit."""
    with pytest.raises(SystemExit, match=r"(?s)sweep rejected before any job ran.*batch_size='abc'"):
        _grid([*SCRATCH, "batch_size=4,abc"])

    def broken(cfg):
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr("medtransfer.train.validate.validate", broken)
    with pytest.raises(SystemExit, match=r"(?s)rejected .*RuntimeError: a bug in a check"):
        _grid([*SCRATCH, "seed=0,1"])


@pytest.mark.usefixtures("offline_cache")
def test_grid_names_every_missing_weights_file_and_every_impossible_cell(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as e:
        _grid(["encoder=r18,r50,vit_b", "pretrain=imagenet,radimagenet", "decoder=unet", "dataset=synthetic",
               "seed=0,1"])
    msg = str(e.value)
    for missing in ("weights/imagenet/r18/", "weights/imagenet/r50/", "weights/imagenet/vit_b/",
                    "weights/radimagenet/r50/"):
        assert missing in msg, missing
    assert "[encoder=vit_b pretrain=radimagenet" in msg and "impossible_cells=not_applicable" in msg
    assert "radimagenet has no weights for encoder=r18" in msg  # RadImageNet has no ResNet-18 either: every cell is named


def test_grid_with_not_applicable_policy_accepts_only_impossible_cells(monkeypatch):
    assert _grid([*SCRATCH, "encoder=r18,vit_s", "decoder=fpn", "impossible_cells=not_applicable"]) == 2
    with pytest.raises(SystemExit, match=r"impossible_cells='maybe'; valid choices: reject, not_applicable"):
        _grid([*SCRATCH, "impossible_cells=maybe"])


def test_a_trainer_option_lightning_does_not_take_is_a_config_error():
    with pytest.raises(ConfigError, match=r"unknown trainer\.max_epoch .*did you mean max_epochs"):
        validate(_compose([*SCRATCH, "+trainer.max_epoch=5"]))
    validate(_compose([*SCRATCH, "trainer.early_stopping_patience=3", "trainer.max_epochs=2"]))


@pytest.mark.parametrize("value", ["[0.5]", "[0.5,-1]", "[a,b]", "3"])
def test_a_malformed_pixel_spacing_is_a_config_error(value):
    with pytest.raises(ConfigError, match=r"dataset\.pixel_spacing=.*expected null or \[row, column\] mm per pixel"):
        validate(_compose([*SCRATCH, f"+dataset.pixel_spacing={value}"]))
