"""SegDataModule end to end: batch contract, native test masks, DRIVE with FOV, folder, real datasets."""

import os
import shutil

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from medtransfer.data import SegDataModule, load_split
from medtransfer.data.datamodule import SegDataset
from medtransfer.errors import ConfigError, DataError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SYN = {"name": "synthetic", "n_images": 20, "native_size": 64}


def make_dm(cfg, size=32, augment="flip", batch=4, workers=0, seed=0, **kw):
    return SegDataModule(cfg, size, augment, batch, workers, seed, MEAN, STD, **kw)


def check_batch(b, n, size, test=False):
    assert b["image"].shape == (n, 3, size, size) and b["image"].dtype == torch.float32
    assert b["mask"].shape == (n, 1, size, size) and b["mask"].dtype == torch.float32
    assert set(b["mask"].unique().tolist()) <= {0.0, 1.0}
    assert isinstance(b["id"], list) and len(b["id"]) == n and all(isinstance(i, str) for i in b["id"])
    assert b["image"].abs().max() < 10 and b["image"].min() < 0 < b["image"].max()  # normalised
    assert ("mask_native" in b) == test


def test_synthetic_batches_contract():
    dm = make_dm(SYN, augment="strong")
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.split.n_train, dm.split.n_val, dm.split.n_test) == (16, 2, 2)
    train = list(dm.train_dataloader())
    check_batch(train[0], 4, 32)
    assert sum(len(b["id"]) for b in train) == 16
    check_batch(next(iter(dm.val_dataloader())), 2, 32)
    t = next(iter(dm.test_dataloader()))
    check_batch(t, 2, 32, test=True)
    assert [m.shape for m in t["mask_native"]] == [(64, 64)] * 2
    assert all(m.dtype == torch.uint8 and set(m.unique().tolist()) <= {0, 1} for m in t["mask_native"])
    assert t["mask_native"][0].sum() > 0 and t["id"] == dm.split.test
    # evaluation is not augmented: two passes give the same tensors
    again = next(iter(dm.test_dataloader()))
    assert torch.equal(t["image"], again["image"]) and torch.equal(t["mask"], again["mask"])


def test_train_crop_is_a_random_window_of_the_frame_and_eval_sees_it_whole():
    dm = make_dm(SYN, size=32, augment="none", batch=4, train_crop=16)
    dm.setup()
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert next(iter(dm.train_dataloader()))["image"].shape == (4, 3, 16, 16)
    assert next(iter(dm.val_dataloader()))["image"].shape[-2:] == (32, 32)
    offsets = set()
    for k in range(len(train)):
        item = train[k]
        whole = SegDataset(dm._decoded, [train.ids[k]], val.transform)[0]  # the same image, uncropped
        found = [(y, x) for y in range(17) for x in range(17)
                 if torch.equal(whole["image"][:, y:y + 16, x:x + 16], item["image"])
                 and torch.equal(whole["mask"][:, y:y + 16, x:x + 16], item["mask"])]
        assert found, f"train item {k} is not a 16x16 window of its 32x32 frame"
        offsets.add(found[0])
    assert len(offsets) > 1  # random placement, not a fixed centre crop
    with pytest.raises(ConfigError, match="train_crop=40: expected null or an integer in 16..32"):
        make_dm(SYN, size=32, train_crop=40)


def test_train_order_and_augmentation_reproducible_with_workers():
    def first_batch(seed):
        dm = make_dm(SYN, augment="strong", workers=2, seed=seed)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert a["id"] == b["id"] and torch.equal(a["image"], b["image"])
    assert a["id"] != c["id"] or not torch.equal(a["image"], c["image"])


def test_save_split_and_reuse(tmp_path):
    dm = make_dm({**SYN, "n_train": 5})
    path = dm.save_split(tmp_path / "split.json")  # before setup: listing only
    assert os.listdir(tmp_path) == ["split.json"]
    s = load_split(path)
    assert s == dm.split and s.n_train == 5
    dm2 = make_dm({**SYN, "split": str(path)}, seed=9)  # a saved split wins over the seed
    assert dm2.split.sha256 == s.sha256


def test_all_split_has_no_train_loader():
    dm = make_dm({**SYN, "split": "all"})
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) == 20
    with pytest.raises(ConfigError, match="has no train images"):
        dm.train_dataloader()


def make_drive(root, n_train=3, n_test=2, hw=(36, 40)):
    rng = np.random.default_rng(0)
    for part, ids in (("training", range(21, 21 + n_train)), ("test", range(1, 1 + n_test))):
        for d in ("images", "1st_manual", "mask"):
            (root / part / d).mkdir(parents=True, exist_ok=True)
        for n in ids:
            tifffile.imwrite(
                root / part / "images" / f"{n:02d}_{part}.tif",
                rng.integers(0, 255, (*hw, 3), dtype=np.uint8),
                photometric="rgb",
            )
            vessels = (rng.random(hw) > 0.85).astype(np.uint8) * 255
            Image.fromarray(vessels).convert("1").save(root / part / "1st_manual" / f"{n:02d}_manual1.gif")
            fov = np.zeros(hw, np.uint8)
            fov[3:-3, 3:-3] = 255
            Image.fromarray(fov).convert("L").save(root / part / "mask" / f"{n:02d}_{part}_mask.gif")
    return root


def test_drive_official_layout_with_fov(tmp_path):
    root = make_drive(tmp_path / "drive")
    dm = make_dm(
        {"name": "drive", "root": str(root), "val_fraction": 0.34}, size=16, augment="strong", batch=2
    )
    dm.setup()
    assert dm.has_fov and dm.split.name == "official"
    assert sorted(dm.split.train + dm.split.val) == ["21_training", "22_training", "23_training"]
    assert dm.split.test == ["01_test", "02_test"] and dm.split.n_val == 1
    b = next(iter(dm.train_dataloader()))
    assert b["fov"].shape == (2, 1, 16, 16) and set(b["fov"].unique().tolist()) <= {0.0, 1.0}
    t = next(iter(dm.test_dataloader()))
    assert t["fov"][0, 0, 0, 0] == 0 and t["fov"][0, 0, 8, 8] == 1
    assert t["mask_native"][0].shape == (36, 40)
    # the FOV at native size too (test metrics count inside it): exactly the drawn rectangle
    drawn = np.zeros((36, 40), np.uint8)
    drawn[3:-3, 3:-3] = 1
    assert len(t["fov_native"]) == 2 and all(np.array_equal(f.numpy(), drawn) for f in t["fov_native"])
    # the same from the decode-once cache entry (a second DataModule loads it instead of decoding)
    again = make_dm({"name": "drive", "root": str(root), "val_fraction": 0.34}, size=16, augment="none", batch=2)
    again.setup()
    assert again._decoded.path == dm._decoded.path is not None
    assert np.array_equal(next(iter(again.test_dataloader()))["fov_native"][1].numpy(), drawn)


def test_drive_missing_annotation_names_it(tmp_path):
    root = make_drive(tmp_path / "drive")
    os.remove(root / "test" / "1st_manual" / "02_manual1.gif")
    with pytest.raises(DataError, match=r"02_test\.tif: image has no manual annotation .*02_manual1"):
        make_dm({"name": "drive", "root": str(root)}).setup()


def test_folder_dataset_mixed_formats(tmp_path):
    root = tmp_path / "f"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i, (iext, mext) in enumerate(
        [(".png", ".png"), (".jpg", ".png"), (".bmp", ".gif"), (".tiff", ".jpg")] * 3
    ):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(
            root / "images" / f"x{i}{iext}"
        )
        m = np.zeros((20, 30), np.uint8)
        m[5:15, 5 : 10 + i] = 255
        Image.fromarray(m).save(root / "masks" / f"x{i}{mext}")
    dm = make_dm({"name": "folder", "root": str(root), "split": "random_80_20"}, size=16, batch=3)
    dm.setup()
    assert dm.split.n_train + dm.split.n_val + dm.split.n_test == 12
    check_batch(next(iter(dm.train_dataloader())), 3, 16)
    t = next(iter(dm.test_dataloader()))
    assert {m.shape for m in t["mask_native"]} == {(20, 30)}
    os.remove(root / "masks" / "x4.png")
    with pytest.raises(DataError, match=r"x4\.png: image has no mask"):
        make_dm({"name": "folder", "root": str(root)}).setup()
    Image.fromarray(m).save(root / "masks" / "x4.png")
    Image.fromarray(m).save(root / "masks" / "orphan.png")
    with pytest.raises(DataError, match=r"orphan\.png: mask has no image"):
        make_dm({"name": "folder", "root": str(root)}).split  # noqa: B018


def _subset(src, dst, ids, lists=()):
    """A small copy of a real dataset (symlinks) with its list files filtered to those ids."""
    for d in ("images", "masks"):
        (dst / d).mkdir(parents=True)
        for p in (src / d).iterdir():
            if p.stem in ids:
                os.symlink(p, dst / d / p.name)
    for rel in lists:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        keep = [i for i in (src / rel).read_text().split() if i in ids]
        (dst / rel).write_text("\n".join(keep) + "\n")
    if (src / "sequences.csv").is_file():
        shutil.copy(src / "sequences.csv", dst / "sequences.csv")
    return dst


def test_kvasir_real_subset(shared_data, tmp_path):
    src = shared_data / "kvasir_seg"
    train = (src / "splits/train.txt").read_text().split()[:16]
    test = (src / "splits/val.txt").read_text().split()[:4]
    root = _subset(src, tmp_path / "kvasir_seg", set(train + test), ["splits/train.txt", "splits/val.txt"])
    dm = make_dm({"name": "kvasir_seg", "root": str(root)}, size=32)
    dm.prepare_data()
    dm.setup()
    assert (dm.split.n_train, dm.split.n_val, dm.split.n_test) == (14, 2, 4)
    check_batch(next(iter(dm.train_dataloader())), 4, 32)
    t = next(iter(dm.test_dataloader()))
    check_batch(t, 4, 32, test=True)
    for i, m in zip(t["id"], t["mask_native"], strict=True):
        w, h = Image.open(src / "masks" / f"{i}.jpg").size
        assert m.shape == (h, w) and 0 < m.float().mean() < 1


def test_cvc_real_subset_with_tiffs(shared_data, tmp_path):
    src = shared_data / "cvc_clinicdb"
    ids = {str(n) for n in [*range(1, 9), 32, 33, 63, 64, 94, 125, 156, 187, 218, 249, 280, 311]}
    root = _subset(src, tmp_path / "cvc_clinicdb", ids)
    dm = make_dm({"name": "cvc_clinicdb", "root": str(root)}, size=32, batch=2)
    dm.setup()
    assert dm.split.name == "sequence" and dm.split.n_test > 0
    b = next(iter(dm.test_dataloader()))
    check_batch(b, 2, 32, test=True)
    assert all(m.shape == (288, 384) for m in b["mask_native"])
    row = dm._decoded.row["1"]  # a TIFF frame decoded in colour, not OpenCV's grey
    img = np.asarray(dm._decoded.images[row]).astype(int)
    assert np.abs(img[..., 0] - img[..., 2]).mean() > 10


def test_val_on_test_validates_on_the_test_images_at_working_size():
    """Paper 001's protocol (select=best_on_test): the epoch is chosen on the test part itself."""
    dm = make_dm({**SYN, "split": "random_80_20", "val_fraction": 0.0}, val_on_test=True)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.split.n_val == 0 and dm.split.n_test == 4
    val = next(iter(dm.val_dataloader()))
    check_batch(val, 4, 32)
    assert val["id"] == dm.split.test
