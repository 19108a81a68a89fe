"""One place decides the input normalisation (issue 9, defect 4): a `pretrain.mean/std` override wins over
the per-file value (`files.<enc>.mean/std`), which wins over the source's own (`source_mean/std`), which wins
over ImageNet's; the origin comes back with the values so a run can record what it trained with."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from medtransfer import settings
from medtransfer.errors import ConfigError
from medtransfer.pretrain import check_pretrain, normalisation
from medtransfer.pretrain.registry import NORM_ORIGINS, sources_markdown
from medtransfer.train import resolvers
from tests._catalogue import SOURCES

IN_MEAN, IN_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]


def _cfg(name, **override):
    cfg = OmegaConf.create(SOURCES[name])
    for key, value in override.items():
        cfg[key] = value
    return cfg


def _resolved(cfg, encoder):
    from medtransfer.pretrain import resolve_normalisation

    return resolve_normalisation(cfg, encoder)


def test_override_wins_over_the_per_file_value():
    """paper002's header: `pretrain.mean/std=<ImageNet>` on the AugReg ViT must train with ImageNet stats."""
    cfg = _cfg("imagenet", mean=IN_MEAN, std=IN_STD)
    assert normalisation(cfg, "vit_b") == (IN_MEAN, IN_STD)
    assert _resolved(cfg, "vit_b") == (IN_MEAN, IN_STD, "override")
    assert _resolved(_cfg("imagenet", mean=HALF, std=HALF), "vit_s") == (HALF, HALF, "override")


def test_without_override_the_per_file_value_then_the_source_then_imagenet():
    assert _resolved(_cfg("imagenet"), "vit_b") == (HALF, HALF, "file")
    assert _resolved(_cfg("imagenet21k"), "vit_s") == (HALF, HALF, "file")
    assert _resolved(_cfg("imagenet"), "r50") == (IN_MEAN, IN_STD, "source")
    assert _resolved(_cfg("radimagenet"), "r50") == (HALF, HALF, "source")
    assert _resolved(_cfg("simclrv1"), "r50") == ([0.0] * 3, [1.0] * 3, "source")
    assert _resolved(_cfg("mae"), "vit_b") == (IN_MEAN, IN_STD, "default")
    assert NORM_ORIGINS == ("override", "file", "source", "default")  # what results.json may record


def test_override_on_a_source_without_per_file_values():
    assert _resolved(_cfg("mae", mean=HALF, std=[0.25] * 3), "vit_b") == (HALF, [0.25] * 3, "override")
    assert _resolved(_cfg("radimagenet", mean=IN_MEAN, std=IN_STD), "r50") == (IN_MEAN, IN_STD, "override")


def test_half_an_override_is_a_config_error():
    with pytest.raises(ConfigError, match=r"pretrain=imagenet: pretrain.mean is set but pretrain.std is not; set both"):
        normalisation(_cfg("imagenet", mean=IN_MEAN), "vit_b")
    with pytest.raises(ConfigError, match=r"pretrain.std is set but pretrain.mean is not"):
        check_pretrain(_cfg("mae", std=HALF), "vit_b")


def test_every_source_leaves_the_override_keys_to_the_command_line():
    """A source's own values live under source_mean/std; top-level mean/std exist (null) so that
    `pretrain.mean=[...]` needs no `+` for any source."""
    for name, cfg in SOURCES.items():
        assert "mean" in cfg and "std" in cfg, name
        assert cfg["mean"] is None and cfg["std"] is None, name


@pytest.mark.parametrize("source", ["imagenet", "mae"])
def test_command_line_override_is_what_trains_and_what_the_condition_says(source):
    over = [f"pretrain={source}", "encoder=vit_b", f"pretrain.mean={IN_MEAN}", f"pretrain.std={IN_STD}"]
    with initialize_config_dir(config_dir=str(settings.PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=over)
    assert _resolved(cfg.pretrain, cfg.encoder.name) == (IN_MEAN, IN_STD, "override")
    assert resolvers.condition_extra(over) == f"pretrain.mean={IN_MEAN};pretrain.std={IN_STD}"


def test_sources_table_shows_the_real_normalisation():
    rows = {line.split(" | ")[0].strip("| `"): line for line in sources_markdown(SOURCES).splitlines()[2:]}
    assert f"{IN_MEAN} / {IN_STD}; vit_s, vit_b: {HALF} / {HALF}" in rows["imagenet"]
    assert f"{HALF} / {HALF}" in rows["radimagenet"] and "vit" not in rows["radimagenet"].split(" | ")[6]
    assert f"{IN_MEAN} / {IN_STD}" in rows["mae"]
