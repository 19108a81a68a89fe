"""VolumeDataModule: 3D splits (random_70_30, nested n_train, splits_final.json), patches, whole volumes."""

import json
import pickle

import numpy as np
import pytest
import torch

from medtransfer.data import preprocess3d as p3
from medtransfer.data.volume_datamodule import (
    VolumeDataModule,
    patch_transform,
    read_splits_final,
    validate_volume_cfg,
)
from medtransfer.data.volumes import list_source, read_label
from medtransfer.errors import ConfigError, DataError
from tests import _volume_layouts as lay


@pytest.fixture(scope="module")
def msd20(tmp_path_factory):
    return lay.msd(tmp_path_factory.mktemp("vol") / "Task99_Tiny", n=20)


def _dm(root, seed=0, patch=(8, 8, 8), **cfg):
    kw = {k: cfg.pop(k) for k in ("augment", "fg_oversample", "batch_size", "patches_per_epoch") if k in cfg}
    dataset = {"name": "tiny", "root": str(root), "layout": "msd",
               "preprocessing": {"intensity": "mr_std", "spacing": [1.0, 1.5, 1.5]}, **cfg}
    return VolumeDataModule(dataset, list(patch), kw.pop("batch_size", 2), 0, seed, **kw)


def test_random_70_30_is_seeded_and_n_train_subsets_are_nested(msd20):
    a, b, c = _dm(msd20).split, _dm(msd20).split, _dm(msd20, seed=1).split
    assert (a.n_test, a.n_val, a.n_train) == (6, 1, 13)
    assert a.to_dict() == b.to_dict() and a.test != c.test
    subsets = {n: _dm(msd20, n_train=n).split for n in (3, 5, 6)}
    assert set(subsets[3].train) < set(subsets[5].train) < set(subsets[6].train) < set(a.train)
    assert all(s.test == a.test and s.val == a.val for s in subsets.values())
    with pytest.raises(ConfigError, match="n_train=15 exceeds the 13 training"):
        _dm(msd20, n_train=15)


def test_splits_final_json_written_then_read_back(msd20, tmp_path):
    path = tmp_path / "splits_final.json"
    s0 = _dm(msd20, fold=1, splits_final=str(path)).split
    folds = read_splits_final(path)
    assert len(folds) == 5 and folds[1]["val"] == s0.val and sorted(folds[1]["train"]) == sorted(s0.train)
    pool = set(s0.train) | set(s0.val)
    assert all(set(f["train"]) | set(f["val"]) == pool for f in folds)
    assert set().union(*(set(f["val"]) for f in folds)) == pool  # each case validated exactly once
    # a file written by someone else (nnU-Net) is what the folds are: swap two folds' roles
    folds[1], folds[2] = folds[2], folds[1]
    path.write_text(json.dumps(folds))
    s1 = _dm(msd20, fold=1, splits_final=str(path)).split
    assert s1.val == sorted(folds[1]["val"]) and s1.val != s0.val and s1.test == s0.test
    assert s1.source["splits_final"]["path"] == str(path)
    with pytest.raises(ConfigError, match="dataset.folds=3: .* holds 5 folds"):
        _dm(msd20, fold=0, folds=3, splits_final=str(path))
    folds[0]["val"] = folds[0]["val"][1:]  # one case in no part of fold 0
    path.write_text(json.dumps(folds))
    with pytest.raises(DataError, match=rf"{path}: fold 0 does not split"):
        _dm(msd20, fold=0, splits_final=str(path))


def test_train_patches_and_whole_volume_batches(msd20):
    dm = _dm(msd20, n_train=5, batch_size=2)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (2, 1, 8, 8, 8) and b["image"].dtype == torch.float32
    assert b["label"].shape == (2, 1, 8, 8, 8) and b["label"].dtype == torch.int64
    assert set(b["id"]) <= set(dm.split.train) and len(dm.train_dataloader()) == 2  # 5 patches: no batch of 1
    v = next(iter(dm.val_dataloader()))
    assert v["image"].shape == (1, 1, 12, 10, 16) and v["label"].shape == (1, 1, 12, 10, 16)
    assert v["id"] == dm.split.val and v["meta"][0]["orig_shape"] == list(lay.SHAPE)
    back = p3.to_original(v["label"][0, 0].numpy(), v["meta"][0])
    original = read_label(list_source(msd20, "msd").case(v["id"][0]))[0][0]
    np.testing.assert_array_equal(back, original)
    assert len(dm.test_dataloader()) == dm.split.n_test


def test_patch_larger_than_volume_is_padded_and_augmentation_is_seeded(msd20):
    def first(seed):
        dm = _dm(msd20, seed=seed, patch=(16, 16, 16), n_train=3)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))

    a, b, c = first(0), first(0), first(1)
    assert a["image"].shape == (2, 1, 16, 16, 16)
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])


def test_foreground_oversampling_rate():
    """24³ volume with one foreground voxel, 8³ patches: a uniform crop holds it with q = (3/17)³ ≈ 0.5 %."""
    img = torch.zeros(1, 24, 24, 24)
    lab = torch.zeros(1, 24, 24, 24, dtype=torch.int64)
    lab[0, 2, 2, 2] = 1
    q = (3 / 17) ** 3

    def rate(p, n=600):
        t = patch_transform((8, 8, 8), p, "none")
        t.set_random_state(seed=0)
        hits = 0
        for _ in range(n):
            out = t({"image": img, "label": lab})
            out = out[0] if isinstance(out, list) else out
            hits += int(out["label"].sum() > 0)
        return hits / n

    assert rate(1.0) == 1.0
    assert rate(0.0) < q + 0.02
    expected = 1 / 3 + 2 / 3 * q
    assert abs(rate(1 / 3) - expected) < 4 * np.sqrt(expected * (1 - expected) / 600)


@pytest.mark.parametrize("kw, err, match", [
    ({"patch": (8, 8)}, ConfigError, "patch_size"),
    ({"augment": "heavy"}, ConfigError, "valid choices: none, paper003"),
    ({"fg_oversample": 1.5}, ConfigError, "fg_oversample"),
    ({"split": "official"}, ConfigError, "random_70_30"),
    ({"spacing_mm": 1}, ConfigError, "dataset.spacing_mm: unknown option"),
    ({"layout": "nnunet"}, DataError, "dataset.json"),
])
def test_bad_config_is_one_line(msd20, kw, err, match):
    with pytest.raises(err, match=match) as e:
        _dm(msd20, **kw)
    assert "\n" not in str(e.value)


def test_validate_reads_headers_only(msd20, monkeypatch):
    import nibabel as nib

    monkeypatch.setattr(nib.Nifti1Image, "get_fdata", lambda *a, **k: pytest.fail("voxels read"))
    _cfg, _src, headers = validate_volume_cfg({"name": "tiny", "root": str(msd20), "layout": "msd"})
    assert len(headers) == 20 and headers["case_000"].shape == lay.SHAPE


def test_validate_checks_the_split_without_writing_splits_final(msd20, tmp_path):
    cfg = {"name": "tiny", "root": str(msd20), "layout": "msd"}
    with pytest.raises(ConfigError, match="n_train=14 exceeds the 13 training"):
        validate_volume_cfg({**cfg, "n_train": 14})
    path = tmp_path / "splits_final.json"
    validate_volume_cfg({**cfg, "fold": 4, "splits_final": str(path)})
    assert not path.exists()
    with pytest.raises(ConfigError, match="dataset.fold=5: expected 0..4"):
        validate_volume_cfg({**cfg, "fold": 5})


def test_workers_load_entries_by_path(msd20):
    dm = _dm(msd20, n_train=4, batch_size=2)
    dm.setup("fit")
    entry = dm.entries[dm.split.train[0]]
    assert len(pickle.dumps(entry)) < 1000  # the path, not the voxels
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(entry)).image, entry.image)
    dm.num_workers = 1
    batches = list(dm.train_dataloader())
    assert [b["image"].shape for b in batches] == [(2, 1, 8, 8, 8)] * 2


def test_real_msd_hippocampus_two_cases(shared_data):
    root = shared_data / "msd_hippocampus" / "Task04_Hippocampus"
    if not (root / "dataset.json").is_file():
        pytest.skip(f"{root} not available")
    src = list_source(root, "msd")
    assert len(src.cases) == 260 and src.channels == ("MRI",)
    assert src.labels == ((0, "background"), (1, "Anterior"), (2, "Posterior"))
    res = p3.Resolved(p3.Preprocessing(intensity="mr_std"), (1.0, 1.0, 1.0))
    for case in src.cases[:2]:
        e = p3.load_or_build(case, src, res, "hippocampus")
        assert e.image.shape[0] == 1 and e.image.shape[1:] == e.label.shape[1:]
        lo, hi = (31, 40, 24), (43, 59, 47)  # PROVENANCE.md: training shapes
        assert all(a <= s <= b for s, a, b in zip(e.image.shape[1:], lo, hi, strict=True))
        assert set(np.unique(e.label)) <= {0, 1, 2} and (np.asarray(e.label) > 0).any()
        assert abs(float(np.std(e.image)) - 1.0) < 1e-3
