"""cache: decode once (a second setup decodes nothing), key follows file contents, native masks survive."""

import pickle

import numpy as np
import pytest
from PIL import Image

from medtransfer import settings
from medtransfer.data import SegDataModule, readers
from medtransfer.data import cache as cache_mod
from medtransfer.data.datasets import pair_by_stem

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_folder(root, n=6, size=(20, 24)):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        m = np.zeros(size, np.uint8)
        m[2 : 5 + i, 3 : 9 + i] = 255
        Image.fromarray(m).save(root / "masks" / f"im{i}.png")
    return root


def dm_for(root, **kw):
    cfg = {"name": "folder", "root": str(root), "split": "random_80_20", **kw}
    return SegDataModule(cfg, 16, "flip", 2, 0, 0, MEAN, STD)


def _forbid_decoding(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("decoded a file on a cached setup")

    monkeypatch.setattr(readers, "decode_image", boom)
    monkeypatch.setattr(readers, "read_mask", boom)


def test_second_setup_decodes_nothing(tmp_path, monkeypatch):
    dm = SegDataModule(
        {"name": "synthetic", "n_images": 12, "native_size": 48}, 32, "none", 4, 0, 0, MEAN, STD
    )
    dm.prepare_data()
    dm.setup("fit")
    first = next(iter(dm.val_dataloader()))
    _forbid_decoding(monkeypatch)
    dm2 = SegDataModule(
        {"name": "synthetic", "n_images": 12, "native_size": 48}, 32, "none", 4, 0, 0, MEAN, STD
    )
    dm2.prepare_data()
    dm2.setup("test")
    again = next(iter(dm2.val_dataloader()))
    assert first["id"] == again["id"] and np.array_equal(first["image"], again["image"])
    assert next(iter(dm2.test_dataloader()))["mask_native"][0].shape == (48, 48)
    # ...while a different working size is a different entry and must decode
    dm3 = SegDataModule(
        {"name": "synthetic", "n_images": 12, "native_size": 48}, 16, "none", 4, 0, 0, MEAN, STD
    )
    with pytest.raises(AssertionError, match="decoded a file"):
        dm3.setup("fit")


def test_key_changes_when_a_file_changes(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "ds")
    samples = pair_by_stem(root)
    k1 = cache_mod.cache_key("folder", 16, samples)
    assert k1 == cache_mod.cache_key("folder", 16, pair_by_stem(root))
    assert k1 != cache_mod.cache_key("folder", 32, samples)
    dm_for(root).setup()
    m = np.zeros((20, 24), np.uint8)
    m[10:, 10:] = 255
    Image.fromarray(m).save(root / "masks" / "im3.png")  # same name and size, new content
    k2 = cache_mod.cache_key("folder", 16, pair_by_stem(root))
    assert k2 != k1
    dm = dm_for(root)
    dm.setup()
    row = dm._decoded.row["im3"]
    assert dm._decoded.native_mask(row)[15, 15] == 1 and dm._decoded.native_mask(row)[3, 4] == 0
    entries = sorted(
        p.name for p in (settings.cache_dir() / "decoded").iterdir() if p.name.startswith("folder-16")
    )
    assert len(entries) >= 2 and not any(e.startswith(".") for e in entries)


def test_cache_contents_and_layout(tmp_path):
    root = make_folder(tmp_path / "ds", n=4, size=(30, 20))
    samples = pair_by_stem(root)
    d = cache_mod.load_or_build("folder", 16, samples)
    assert d.path.parent == settings.cache_dir() / "decoded" and d.path.name.startswith("folder-16-")
    assert {p.name for p in d.path.iterdir()} == {
        "images.npy",
        "masks.npy",
        "native_bits.npy",
        "native_offsets.npy",
        "native_shapes.npy",
        "meta.json",
    }
    assert isinstance(d.images, np.memmap) and d.images.shape == (4, 16, 16, 3) and d.images.dtype == np.uint8
    assert d.masks.shape == (4, 16, 16) and set(np.unique(d.masks)) <= {0, 1}
    for k, s in enumerate(samples):
        np.testing.assert_array_equal(d.native_mask(k), readers.read_mask(s.mask))
    state = pickle.dumps(d)  # spawn workers get the path, not the arrays
    assert len(state) < 2000 and np.array_equal(pickle.loads(state).masks, d.masks)


def test_cache_false_decodes_in_memory_only(tmp_path):
    root = make_folder(tmp_path / "ds")
    cfg = {"name": "folder", "root": str(root), "split": "random_80_20"}
    dm = SegDataModule(cfg, 16, "none", 2, 0, 0, MEAN, STD, cache=False)
    before = (
        set((settings.cache_dir() / "decoded").glob("*"))
        if (settings.cache_dir() / "decoded").is_dir()
        else set()
    )
    dm.prepare_data()
    dm.setup()
    after = (
        set((settings.cache_dir() / "decoded").glob("*"))
        if (settings.cache_dir() / "decoded").is_dir()
        else set()
    )
    assert before == after and dm._decoded.path is None
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 16, 16)
