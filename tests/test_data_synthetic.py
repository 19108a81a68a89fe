"""synthetic: deterministic, non-empty binary masks, generated once into the cache dir."""

import numpy as np
from PIL import Image

from medtransfer import settings
from medtransfer.data.datasets import synthetic_root
from medtransfer.data.synthetic import generate, make_pair


def test_generation_is_deterministic_and_seeded(tmp_path):
    cfg = {"n_images": 10, "native_size": 48, "data_seed": 0}
    a, b = generate(tmp_path / "a", cfg), generate(tmp_path / "b", cfg)
    c = generate(tmp_path / "c", {**cfg, "data_seed": 1})
    names = sorted(p.name for p in (a / "images").iterdir())
    assert len(names) == 10 and names == sorted(p.name for p in (a / "masks").iterdir())
    for n in names:
        assert (a / "images" / n).read_bytes() == (b / "images" / n).read_bytes()
        m = np.asarray(Image.open(a / "masks" / n))
        assert set(np.unique(m)) == {0, 255} and 0.005 < (m > 0).mean() < 0.6
    assert (a / "images" / names[0]).read_bytes() != (c / "images" / names[0]).read_bytes()


def test_root_is_in_cache_dir_and_keyed_by_params():
    r1 = synthetic_root({"n_images": 10, "native_size": 48})
    assert r1.parent == settings.cache_dir() / "synthetic"
    assert r1 != synthetic_root({"n_images": 11, "native_size": 48})
    assert r1 == synthetic_root({"n_images": 10, "native_size": 48, "data_seed": 0})


def test_polyp_differs_from_background():
    """Learnable: foreground and background colours are separated on average (a tiny U-Net gets it)."""
    diffs = []
    for i in range(8):
        img, m = make_pair(np.random.default_rng([0, i]), 96)
        fg, bg = img[m > 0].astype(float).mean(0), img[m == 0].astype(float).mean(0)
        diffs.append(np.abs(fg - bg).sum())
    assert np.mean(diffs) > 40
