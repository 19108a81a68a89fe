"""Classification data (MedMNIST .npz): batch contract, labels, resize, splits, errors; the real files."""

import json

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from medtransfer import settings
from medtransfer.data import (
    DATASETS,
    ClsDataModule,
    dataset_labels,
    dataset_task,
    load_split,
    validate_dataset_cfg,
)
from medtransfer.data.config import data_fingerprint
from medtransfer.errors import ConfigError, DataError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
COUNTS = {"train": 12, "val": 4, "test": 6}


def make_npz(path, kind="binary", size=28, rgb=False, classes=3, columns=3, counts=COUNTS, compressed=True,
             seed=0):
    """A tiny file in the official MedMNIST layout (labels cycle through every value, so all are present)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in counts.items():
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{part}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if kind == "multilabel":
            arrays[f"{part}_labels"] = rng.integers(0, 2, (n, columns), dtype=np.uint8)
        else:
            values = np.arange(n) % (2 if kind == "binary" else classes)
            arrays[f"{part}_labels"] = values.astype(np.uint8)[:, None]
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def make_dm(file, size=28, augment="none", batch=4, seed=0, **cfg):
    cfg = {"name": "medmnist", "file": str(file), **cfg}
    return ClsDataModule(cfg, size, augment, batch, 0, seed, MEAN, STD)


def err(cfg, exc=ConfigError) -> str:
    with pytest.raises(exc) as e:
        validate_dataset_cfg(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def unnormalise(x):
    return x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


# ------------------------------------------------------------------------------------------- contract
def test_binary_batch_contract_normalisation_and_grey_to_rgb(tmp_path):
    f = make_npz(tmp_path / "b.npz", compressed=False)
    dm = make_dm(f)
    assert (dm.label_kind, dm.label_names, dm.num_outputs, dm.native_size) == ("binary", ["1"], 1, 28)
    assert dataset_task({"name": "medmnist"}) == "classification"
    assert dataset_task({"name": "drive"}) == "segmentation"
    dm.setup("fit")
    assert (dm.split.n_train, dm.split.n_val, dm.split.n_test) == (12, 4, 6)
    b = next(iter(dm.test_dataloader()))
    assert b["image"].shape == (4, 3, 28, 28) and b["image"].dtype == torch.float32
    assert b["image"].is_contiguous()
    assert b["label"].shape == (4, 1) and b["label"].dtype == torch.float32
    assert b["id"] == ["test/0", "test/1", "test/2", "test/3"]
    with np.load(f) as d:
        raw, labels = d["test_images"][:4], d["test_labels"][:4]
    rgb = unnormalise(b["image"])
    assert torch.allclose(rgb, torch.from_numpy(raw).float()[:, None].expand(-1, 3, -1, -1) / 255, atol=1e-5)
    assert torch.equal(b["label"], torch.from_numpy(labels).float())
    assert sum(len(x["id"]) for x in dm.train_dataloader()) == 12
    assert len(next(iter(dm.val_dataloader()))["id"]) == 4


def test_multiclass_labels_are_class_indices_and_names_are_checked(tmp_path):
    f = make_npz(tmp_path / "m.npz", kind="multiclass", classes=4)
    dm = make_dm(f)
    assert (dm.label_kind, dm.label_names, dm.num_outputs) == ("multiclass", ["0", "1", "2", "3"], 4)
    info = dataset_labels({"name": "medmnist", "file": str(f)})  # config time, before any DataModule
    assert (info.kind, info.names, info.num_outputs) == ("multiclass", ("0", "1", "2", "3"), 4)
    dm.setup("test")
    b = next(iter(dm.test_dataloader()))
    assert b["label"].dtype == torch.int64 and b["label"].tolist() == [0, 1, 2, 3]
    named = make_dm(f, labels=["a", "b", "c", "d"])
    assert named.label_names == ["a", "b", "c", "d"] and named.num_outputs == 4
    # a 2-class file as a softmax over two classes
    two = make_dm(make_npz(tmp_path / "two.npz"), label_kind="multiclass")
    assert (two.label_kind, two.num_outputs, two.label_names) == ("multiclass", 2, ["0", "1"])


def test_multilabel_and_rgb(tmp_path):
    f = make_npz(tmp_path / "ml.npz", kind="multilabel", columns=5, rgb=True)
    dm = make_dm(f, labels=list("abcde"))
    assert (dm.label_kind, dm.num_outputs) == ("multilabel", 5)
    dm.setup()
    b = next(iter(dm.val_dataloader()))
    assert b["label"].shape == (4, 5) and b["label"].dtype == torch.float32
    with np.load(f) as d:
        raw = torch.from_numpy(d["val_images"][:4]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(unnormalise(b["image"]), raw, atol=1e-5)


@pytest.mark.parametrize("size", [64, 32, 96])
def test_size_read_from_the_file_and_resized_bilinear_once(tmp_path, size):
    f = make_npz(tmp_path / "p64.npz", size=64, rgb=True)
    dm = make_dm(f, size=size)
    assert dm.native_size == 64
    dm.setup()
    b = next(iter(dm.test_dataloader()))
    assert b["image"].shape == (4, 3, size, size)
    with np.load(f) as d:
        want = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_LINEAR)
                         for im in d["test_images"][:4]])
    got = (unnormalise(b["image"]) * 255).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(got - want).max() < 0.01


@pytest.mark.parametrize("augment", ["flip", "standard", "strong", "flip_rot90_noise"])
def test_augmentations_run_on_images_without_masks(tmp_path, augment):
    f = make_npz(tmp_path / "a.npz")
    dm = make_dm(f, augment=augment, batch=12)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (12, 3, 28, 28)
    if augment == "flip":  # each training image is its stored image, possibly flipped
        with np.load(f) as d:
            stored = torch.from_numpy(d["train_images"]).float() / 255
        for img, i in zip(unnormalise(b["image"])[:, 0], b["id"], strict=True):
            src = stored[int(i.split("/")[1])]
            flips = (src, src.flip(0), src.flip(1), src.flip(0, 1))
            assert any(torch.allclose(img, v, atol=1e-5) for v in flips)
    # evaluation is never augmented
    assert torch.equal(next(iter(dm.test_dataloader()))["image"], next(iter(dm.test_dataloader()))["image"])


def test_train_order_and_augmentation_reproducible_with_workers(tmp_path):
    f = make_npz(tmp_path / "a.npz")

    def first_batch(seed):
        dm = ClsDataModule({"name": "medmnist", "file": str(f)}, 28, "standard", 6, 2, seed, MEAN, STD)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert a["id"] == b["id"] and torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert a["id"] != c["id"] or not torch.equal(a["image"], c["image"])


# -------------------------------------------------------------------------------------------- splits
def test_n_train_nested_deterministic_and_recorded(tmp_path):
    f = make_npz(tmp_path / "b.npz")
    full, small, big, again = (make_dm(f, n_train=n).split for n in (None, 3, 6, 3))
    other = make_dm(f, n_train=3, seed=1).split
    assert set(small.train) < set(big.train) < set(full.train) and len(small.train) == 3
    assert small.train == again.train and small.sha256 == again.sha256 and small.train != other.train
    assert small.val == full.val == other.val and small.test == full.test
    assert all(i.startswith("train/") for i in small.train)
    src = small.source
    assert src["n_train"] == 3 and src["train_pool"] == 12 and src["file"]["name"] == "b.npz"
    assert sum(src["label_counts"]["train"]) == 3 and src["label_counts"]["test"] == [3, 3]
    fixed = [make_dm(f, n_train=3, split_seed=7, seed=run_seed).split.train for run_seed in (0, 5)]
    assert fixed[0] == fixed[1]  # split_seed, not the run seed, draws the subset
    msg = err({"name": "medmnist", "file": str(f), "n_train": 13})
    assert "dataset.n_train=13 exceeds the 12 training images" in msg and "1..12" in msg


def test_split_saved_reloaded_and_tied_to_its_file(tmp_path):
    f = make_npz(tmp_path / "b.npz")
    dm = make_dm(f, n_train=5)
    path = dm.save_split(tmp_path / "run" / "split.json")
    d = json.loads(path.read_text())
    assert d["counts"] == {"train": 5, "val": 4, "test": 6} and d["dataset"] == "medmnist"
    assert load_split(path).to_dict() == dm.split.to_dict()
    reused = make_dm(f, split=str(path))
    assert reused.split.train == dm.split.train and reused.split.sha256 == dm.split.sha256
    g = make_npz(tmp_path / "g.npz", seed=1)
    with pytest.raises(ConfigError, match="made for file 'b.npz'"):
        _ = make_dm(g, split=str(path)).split
    hexes = {data_fingerprint({"name": "medmnist", "file": str(x)}) for x in (f, g)}
    assert len(hexes) == 2 and None not in hexes


def test_random_and_kfold_splits_pool_the_official_parts(tmp_path):
    f = make_npz(tmp_path / "b.npz")
    s = make_dm(f, split="random_80_10_10").split
    assert (s.n_train, s.n_val, s.n_test) == (18, 2, 2)
    k = make_dm(f, fold=1).split
    assert k.n_train + k.n_val == 16 and k.test == make_dm(f).split.test and k.source["fold"] == 1


# -------------------------------------------------------------------------------------------- errors
def test_missing_files_name_the_expected_location(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.DATA_ROOT, str(tmp_path))
    msg = err({"name": "pneumoniamnist"})
    assert "$MEDTRANSFER_DATA_ROOT/medmnist/pneumoniamnist.npz" in msg
    assert str(tmp_path / "medmnist" / "pneumoniamnist.npz") in msg and "dataset.file=PATH" in msg
    assert "dataset.file is required for dataset 'medmnist'" in err({"name": "medmnist"})
    msg = err({"name": "medmnist", "file": str(tmp_path / "nope.npz")})
    assert "dataset.file" in msg and "nope.npz does not exist" in msg
    with pytest.raises(ConfigError, match="kvasir_seg is a segmentation dataset; ClsDataModule takes"):
        make_dm("x", name="kvasir_seg")


def test_bad_files_are_data_errors_naming_the_file(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    msg = err({"name": "medmnist", "file": str(tmp_path / "junk.npz")}, DataError)
    assert "junk.npz: not a readable .npz" in msg
    np.savez(tmp_path / "nokey.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    msg = err({"name": "medmnist", "file": str(tmp_path / "nokey.npz")}, DataError)
    assert "no train_labels array" in msg
    arrays = {f"{p}_images": np.zeros((2, 28, 28, 28), np.uint8) for p in COUNTS}
    np.savez(tmp_path / "vol3d.npz", **arrays, **{f"{p}_labels": np.zeros((2, 1), np.uint8) for p in COUNTS})
    msg = err({"name": "medmnist", "file": str(tmp_path / "vol3d.npz")}, DataError)
    assert "a 3D volume per sample" in msg and "(2, 28, 28, 28)" in msg


LABEL_ERRORS = [  # (file kind, config, message; {f} is the file's path)
    ("binary", {"label_kind": "ordinal"}, "unknown dataset.label_kind 'ordinal'; valid choices: binary"),
    ("binary", {"labels": ["normal", "pneumonia"]}, "has 2 names (normal, pneumonia) but a binary"),
    ("binary", {"labels": "pneumonia"}, "dataset.labels='pneumonia': expected null or a list"),
    ("multiclass", {"labels": list("abcd")}, "has 4 names (a, b, c, d) but {f} has 3 classes (labels 0..2)"),
    ("multiclass", {"labels": ["a", "b"]}, "{f}: train_labels holds label value 2, out of range for a multi"),
    ("multiclass", {"label_kind": "binary"}, "{f}: train_labels holds label value 2, out of range for a bin"),
    ("multilabel", {"label_kind": "binary"}, "{f} has 3 labels per image (labels (N, 3)); valid choices: mul"),
    ("multilabel", {"labels": ["a", "b"]}, "dataset.labels has 2 names (a, b) but {f} has 3 label columns"),
    ("binary", {"root": "/data"}, "dataset.root='/data': medmnist is a classification dataset read from"),
    ("binary", {"task": "segmentation"}, "dataset.task='segmentation': medmnist is a classification dataset"),
]


@pytest.mark.parametrize("kind, cfg, match", LABEL_ERRORS)
def test_label_config_errors(tmp_path, kind, cfg, match):
    f = make_npz(tmp_path / "m.npz", kind=kind)
    assert match.format(f=f) in err({"name": "medmnist", "file": str(f), **cfg})


def test_label_value_out_of_range_names_the_split(tmp_path):
    f = make_npz(tmp_path / "b.npz")
    with np.load(f) as d:
        arrays = dict(d)
    arrays["test_labels"][2] = 7
    np.savez(tmp_path / "bad.npz", **arrays)
    msg = err({"name": "pneumoniamnist", "file": str(tmp_path / "bad.npz")})
    assert msg.startswith(f"{tmp_path / 'bad.npz'}: test_labels holds label value 7, out of range for a bin")


# ------------------------------------------------------------------------------------- configs, files
def test_generic_config_composes_with_a_file_and_names_its_data(tmp_path):
    from hydra import compose, initialize_config_dir

    from medtransfer.train import resolvers  # noqa: F401  (registers ${mt.*})

    f = make_npz(tmp_path / "pathmnist_64.npz", size=64, rgb=True, kind="multiclass", classes=9)
    with initialize_config_dir(config_dir=str(settings.PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["dataset=medmnist", f"dataset.file={f}", "dataset.n_train=5"])
    validate_dataset_cfg(cfg.dataset)
    assert cfg.dataset.task == "classification" and cfg.condition.dataset == "medmnist"
    assert f"data={data_fingerprint(cfg.dataset)}" in cfg.condition.extra
    registered = OmegaConf.load(settings.PROJECT_ROOT / "conf/dataset/pneumoniamnist.yaml")
    assert data_fingerprint(registered) is None
    assert ClsDataModule(cfg.dataset, 64, "none", 2, 0, 0, MEAN, STD).num_outputs == 9


REAL = {"pneumoniamnist": ((4708, 524, 624), "pneumonia"),
        "breastmnist": ((546, 78, 156), "normal_or_benign")}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_files(shared_data, name):
    path = shared_data / "medmnist" / f"{name}.npz"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    cfg = OmegaConf.load(settings.PROJECT_ROOT / "conf" / "dataset" / f"{name}.yaml")
    spec = DATASETS[name]
    assert (cfg.label_kind, tuple(cfg.labels)) == (spec.label_kind, spec.labels)
    dm = ClsDataModule(cfg, 28, "none", 256, 0, 0, MEAN, STD)
    sizes, positive = REAL[name]
    assert (dm.split.n_train, dm.split.n_val, dm.split.n_test) == sizes
    assert (dm.label_kind, dm.label_names, dm.native_size) == ("binary", [positive], 28)
    with np.load(path) as d:
        want = {p: np.bincount(d[f"{p}_labels"][:, 0], minlength=2).tolist() for p in COUNTS}
    assert dm.split.source["label_counts"] == want
    dm.setup("test")
    got = torch.cat([b["label"] for b in dm.test_dataloader()])
    assert got.shape == (sizes[2], 1) and int(got.sum()) == want["test"][1]
