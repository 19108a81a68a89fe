"""augment: every named pipeline keeps masks binary and aligned; names and parameters are validated."""

from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from medtransfer.data import AUGMENTS, build_transform
from medtransfer.data.augment import parse_augment, reseed
from medtransfer.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf" / "augment"
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def sample(size=48):
    img = np.zeros((size, size, 3), np.uint8)
    img[10:30, 12:36] = (200, 120, 90)
    mask = np.zeros((size, size), np.uint8)
    mask[10:30, 12:36] = 1
    return img, mask


@pytest.mark.parametrize("name", ["none", "flip", "standard", "strong", "hflip_jitter", "flip_rot90_noise",
                                  "rotate_noise_jitter_flips"])
def test_conf_files_build_and_keep_mask_binary(name):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    assert cfg["name"] == name
    t = build_transform(cfg, MEAN, STD, train=True, with_fov=True, seed=0)
    img, mask = sample()
    for _ in range(10):
        out = t(image=img, mask=mask, fov=mask)
        assert out["image"].shape == (3, 48, 48) and str(out["image"].dtype) == "torch.float32"
        assert set(out["mask"].unique().tolist()) <= {0, 1}
        assert (out["mask"] == out["fov"]).all()  # the FOV gets the same geometry as the mask


def test_conf_folder_covers_registry():
    assert {p.stem for p in CONF.glob("*.yaml")} == set(AUGMENTS)


def test_eval_transform_is_deterministic_normalise_only():
    t = build_transform("strong", MEAN, STD, train=False)
    img, mask = sample()
    a, b = t(image=img, mask=mask), t(image=img, mask=mask)
    assert (a["image"] == b["image"]).all() and (a["mask"] == b["mask"]).all()
    np.testing.assert_allclose(a["image"][0, 0, 0].item(), (0 - 0.5) / 0.25, atol=1e-6)
    np.testing.assert_allclose(a["image"][0, 20, 20].item(), (200 / 255 - 0.5) / 0.25, atol=1e-5)


def test_geometry_moves_image_and_mask_together():
    # colour off: a uniform rectangle can be jittered dark as a whole, which says nothing about geometry
    t = build_transform({"name": "strong", "p_color": 0.0, "p_blur": 0.0}, MEAN, STD, train=True, seed=3)
    img, mask = sample()
    moved = 0
    for _ in range(10):
        out = t(image=img, mask=mask)
        bright = out["image"].mean(0) > -1.0  # the coloured rectangle (background normalises to -2)
        m = out["mask"].bool()
        moved += not np.array_equal(m.numpy(), mask.astype(bool))
        if m.sum() > 20:
            assert (bright & m).sum() / m.sum() > 0.8 and (bright & ~m).sum() / bright.sum() < 0.2
    assert moved >= 8


def test_flips_are_independent_and_reseed_reproduces():
    t = build_transform("flip", MEAN, STD, train=True, seed=0)
    img = np.zeros((8, 8, 3), np.uint8)
    img[0, 0] = 255
    corners = {"tl": (0, 0), "tr": (0, 7), "bl": (7, 0), "br": (7, 7)}
    seen = []
    for _ in range(200):
        o = t(image=img, mask=np.zeros((8, 8), np.uint8))["image"][0]
        seen.append(next(k for k, (y, x) in corners.items() if o[y, x] > 0))
    assert {k: seen.count(k) > 20 for k in corners} == dict.fromkeys(corners, True)
    reseed(t, 5)
    a = [t(image=img, mask=np.zeros((8, 8), np.uint8))["image"] for _ in range(5)]
    reseed(t, 5)
    b = [t(image=img, mask=np.zeros((8, 8), np.uint8))["image"] for _ in range(5)]
    assert all((x == y).all() for x, y in zip(a, b, strict=True))


def test_errors():
    with pytest.raises(
        ConfigError, match="unknown augment 'heavy'; valid choices: cls_benchmark, flip, flip_rot90_noise, hflip_jitter, none, "
              "rotate_noise_jitter_flips, standard, strong"
    ):
        parse_augment("heavy")
    with pytest.raises(ConfigError, match="unknown augment.rotate for augment 'flip'"):
        parse_augment({"name": "flip", "rotate": 5})
    with pytest.raises(ConfigError, match="0-1 scale"):
        build_transform("none", (123.7, 116.3, 103.5), (58.4, 57.1, 57.4), train=True)


def _corner_moves(name, n=200, **params):
    """Where a lit top-left pixel lands over n draws (colour and noise off: geometry only)."""
    t = build_transform({"name": name, **params}, MEAN, STD, train=True, seed=1)
    img = np.zeros((8, 8, 3), np.uint8)
    img[0, 1] = 255  # off the diagonal, so a transpose shows
    spots = set()
    for _ in range(n):
        o = t(image=img, mask=np.zeros((8, 8), np.uint8))["image"][0]
        spots.add(tuple(int(v) for v in (o > 0).nonzero()[0]))
    return spots


def test_paper_presets_do_what_the_papers_say():
    """000: horizontal flip only; 003: flips and 90° turns reach all 8 symmetries; 004: + the diagonal flip."""
    assert _corner_moves("hflip_jitter", p_color=0.0) == {(0, 1), (0, 6)}
    assert len(_corner_moves("flip_rot90_noise", p_noise=0.0)) == 8
    assert len(_corner_moves("rotate_noise_jitter_flips", p_rotate=0.0, p_noise=0.0, p_color=0.0)) == 8
    ops = [type(o).__name__ for o in build_transform("hflip_jitter", MEAN, STD, train=True).transforms]
    assert ops == ["HorizontalFlip", "ColorJitter", "Normalize", "ToTensorV2"]
    jitter = build_transform("hflip_jitter", MEAN, STD, train=True).transforms[1]
    assert jitter.hue == (0.0, 0.0)
    noise = [type(o).__name__ for o in build_transform("flip_rot90_noise", MEAN, STD, train=True).transforms]
    assert "GaussNoise" in noise and "RandomRotate90" in noise
