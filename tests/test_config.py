"""Every option of every config group composes and resolves; unknown options fail naming the choices."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf, open_dict

from medtransfer import settings
from medtransfer.train import resolvers  # noqa: F401

CONF = settings.PROJECT_ROOT / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in {"hydra", "local", "paths"})
CHOICES = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]


def _compose(overrides, name="train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=True)


def test_every_group_has_choices():
    expected = {"encoder", "decoder", "pretrain", "dataset", "optimizer", "schedule", "loss", "augment", "trainer",
                "logger", "launcher", "experiment"}
    assert expected <= set(GROUPS)
    assert all((CONF / g).glob("*.yaml") for g in GROUPS)


@pytest.mark.parametrize("group,choice", CHOICES, ids=[f"{g}={c}" for g, c in CHOICES])
def test_every_option_composes(group, choice):
    cfg = _compose([f"{group}={choice}"])
    hydra_run_dir = cfg.hydra.run.dir
    with open_dict(cfg):
        cfg.pop("hydra")  # hydra.runtime.* only exists inside a running app
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    if group in {"encoder", "decoder", "pretrain", "dataset", "augment"}:
        assert resolved[group]["name"] == choice
    if "encoder" not in resolved:  # a 3D dataset drops the 2D encoder: the encoder axis names its whole network
        assert resolved["condition"]["encoder"] == resolved["net3d"]["name"]
    elif group == "net3d" and choice != "none":  # a 3D network with the default 2D dataset: an impossible cell
        assert resolved["condition"]["encoder"] == f"{resolved['encoder']['name']}+{choice}"
    else:
        assert resolved["condition"]["encoder"] == resolved["encoder"]["name"]
    assert hydra_run_dir == resolved["run_dir"] and Path(hydra_run_dir).name == f"seed{resolved['seed']}"


def test_unknown_option_names_valid_choices():
    with pytest.raises(MissingConfigException) as e:
        _compose(["encoder=resnet9000"])
    assert "r50" in str(e.value) and "vit_b" in str(e.value)


def test_run_dir_is_deterministic_from_the_condition():
    a = _compose(["encoder=r18", "seed=3", "study=s"])
    b = _compose(["seed=3", "study=s", "encoder=r18"])
    assert a.run_dir == b.run_dir
    assert a.run_dir.endswith("/s/enc-r18_dec-deeplabv3plus_pre-scratch_ft-full_ds-kvasir_seg_n-all/seed3")
    assert a.run_dir.startswith(str(settings.runs_root()))
