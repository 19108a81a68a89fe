"""Folder classification datasets in their official layouts (ChestX-ray14, CheXpert, Shenzhen, an image folder,
a labels.csv): rows, labels, official parts, patient-level val, uncertain labels, the decode-once cache and
one-line errors naming the file and row."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from medtransfer import settings
from medtransfer.data import DATASETS, ClsDataModule, cls_tables, dataset_labels, validate_dataset_cfg
from medtransfer.data.config import data_fingerprint
from medtransfer.errors import ConfigError, DataError
from tests._cls_layouts import (
    NIH,
    make_chestxray14,
    make_chexpert,
    make_csv,
    make_image_folder,
    make_shenzhen,
    save_image,
)
from tests.test_data_medmnist import err  # one-line validation error of a dataset config

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def make_dm(name, root, size=32, augment="none", batch=4, seed=0, **cfg):
    return ClsDataModule({"name": name, "root": str(root), **cfg}, size, augment, batch, 0, seed, MEAN, STD)


def patients_of(ids):
    return {int(i.split("_")[0]) for i in ids}


# -------------------------------------------------------------------------------------- ChestX-ray14
def test_chestxray14_official_test_val_by_patient_and_labels(tmp_path):
    root = make_chestxray14(tmp_path / "nih")
    dm = make_dm("chestxray14", root, val_fraction=0.25)
    assert (dm.label_kind, dm.label_names, dm.num_outputs) == ("multilabel", list(NIH), 14)
    s = dm.split
    assert patients_of(s.test) == set(range(10, 13)) and s.n_test == 6  # test_list.txt
    assert s.n_train + s.n_val == 18 and s.n_val >= 4  # round(0.25 * 18) = 4 images, whole patients
    parts = [patients_of(getattr(s, p)) for p in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert s.source["val_carved_by"] == "patient" and s.source["file"]["name"] == "nih"
    other = make_dm("chestxray14", root, val_fraction=0.25, seed=1).split
    assert other.val != s.val and other.test == s.test  # the run seed draws the val patients
    dm.setup("test")
    b = next(iter(dm.test_dataloader()))
    assert b["image"].shape == (4, 3, 32, 32) and b["label"].shape == (4, 14) and b["label"].dtype == torch.float32
    assert torch.equal(b["image"][:, 0], b["image"][:, 1])  # grey, broadcast to three channels
    by_id = dict(zip(b["id"], b["label"], strict=True))
    # patient 10 image 0: (p + f) % 3 = 9 % 3 = 0 → No Finding; image 1 → 'Effusion|Mass'
    assert by_id["00000010_000"].sum() == 0
    assert by_id["00000010_001"].nonzero().flatten().tolist() == [NIH.index("Effusion"), NIH.index("Mass")]
    picked = make_dm("chestxray14", root, labels=["Mass", "Hernia"])
    assert picked.label_names == ["Mass", "Hernia"] and picked.num_outputs == 2


def test_chestxray14_folds_and_n_train_keep_patients_whole_and_nested(tmp_path):
    root = make_chestxray14(tmp_path / "nih")
    fold = make_dm("chestxray14", root, fold=1, folds=3).split
    assert not patients_of(fold.train) & patients_of(fold.val) and fold.source["folds_by"] == "group"
    small, big = (make_dm("chestxray14", root, n_train=n).split for n in (4, 8))
    assert set(small.train) < set(big.train) and small.val == big.val


def test_chestxray14_errors_name_the_file_and_row(tmp_path):
    root = make_chestxray14(tmp_path / "nih")
    cfg = {"name": "chestxray14", "root": str(root)}
    table = root / "Data_Entry_2017.csv"
    text = table.read_text()
    table.write_text(text.replace("Effusion|Mass", "Efusion", 1))
    msg = err(cfg, DataError)
    assert f"{table}: row 3: unknown finding 'Efusion'" in msg and "Hernia" in msg
    table.write_text(text.replace("Patient ID", "Patient"))
    assert f"{table}: no column 'Patient ID'" in err(cfg, DataError)
    table.write_text(text)
    (root / "images" / "00000002_001.png").unlink()
    msg = err(cfg, DataError)
    assert f"{table}: row 5: image {root / 'images' / '00000002_001.png'} does not exist" in msg
    save_image(root / "images" / "00000002_001.png", False)
    (root / "test_list.txt").write_text((root / "test_list.txt").read_text() + "99999999_000.png\n")
    assert "1 listed image(s) have no row in Data_Entry_2017.csv (first: 99999999_000.png)" in err(cfg, DataError)
    assert "dataset.labels: 'Flu' is not a label of" in err({**cfg, "labels": ["Flu"]})


def test_registered_place_and_missing_root(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.DATA_ROOT, str(tmp_path))
    msg = err({"name": "chestxray14"})
    assert str(tmp_path / "chestxray14") in msg and "Data_Entry_2017.csv" in msg and "dataset.root=PATH" in msg
    assert "dataset.root is required for dataset 'image_folder'" in err({"name": "image_folder"})
    make_chestxray14(tmp_path / "chestxray14")
    validate_dataset_cfg({"name": "chestxray14"})
    assert data_fingerprint({"name": "chestxray14"}) is None
    assert data_fingerprint({"name": "chestxray14", "root": str(tmp_path / "chestxray14")}) is None
    assert "dataset.file='x.npz': chestxray14 is a folder dataset" in err({"name": "chestxray14", "file": "x.npz"})


# ------------------------------------------------------------------------------------------- CheXpert
def test_chexpert_root_is_the_dataset_folder_or_its_parent_and_valid_is_test(tmp_path):
    folder = make_chexpert(tmp_path)
    a, b = make_dm("chexpert", folder), make_dm("chexpert", tmp_path)
    assert a.facts.ids == b.facts.ids and a.facts.path == b.facts.path == folder
    assert a.label_names == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    s = a.split
    assert s.n_test == 8 and all(i.startswith("valid/patient") for i in s.test)
    train_patients = {i.split("/")[1] for i in s.train}
    assert s.n_val > 0 and not train_patients & {i.split("/")[1] for i in s.val}  # by patient
    assert make_dm("chexpert", folder, views="frontal").split.n_test == 4
    assert "unknown dataset.views 'pa'" in err({"name": "chexpert", "root": str(folder), "views": "pa"})
    (tmp_path / "empty").mkdir()
    msg = err({"name": "chexpert", "root": str(tmp_path / "empty")}, DataError)
    assert msg.startswith(f"{tmp_path / 'empty'}: no train.csv (CheXpert layout")


def _targets(dm) -> dict[str, torch.Tensor]:
    dm.setup("fit")
    return {i: dm._targets[r] for i, r in dm._row_of.items()}


def test_chexpert_uncertain_policies_apply_to_training_rows_only(tmp_path):
    folder = make_chexpert(tmp_path)
    dm = make_dm("chexpert", folder, val_fraction=0.3)
    assert dm.cfg["uncertain"] == "soft"  # the benchmark's, by default
    unc = dict(zip(dm.facts.ids, dm.facts.uncertain, strict=True))
    labels = dict(zip(dm.facts.ids, dm.facts.labels, strict=True))
    assert any(u.any() for u in unc.values()) and not any(unc[i].any() for i in dm.split.test)
    train, val = dm.split.train, dm.split.val
    got = {p: _targets(make_dm("chexpert", folder, val_fraction=0.3, uncertain=p))
           for p in ("ignore", "zeros", "ones", "soft")}
    for i in train:
        u = torch.from_numpy(unc[i])
        assert torch.equal(got["ignore"][i][~u], torch.from_numpy(labels[i]).float()[~u])  # empty = 0, 1.0 = 1
        assert (got["ignore"][i][u] == -1).all() and (got["zeros"][i][u] == 0).all()
        assert (got["ones"][i][u] == 1).all()
        assert ((got["soft"][i][u] >= 0.55) & (got["soft"][i][u] <= 0.85)).all()
    for i in val:  # evaluation never guesses
        assert all((got[p][i][torch.from_numpy(unc[i])] == -1).all() for p in got)
    again = _targets(make_dm("chexpert", folder, val_fraction=0.3, uncertain="soft", seed=5, split_seed=0))
    assert all(torch.equal(again[i], got["soft"][i]) for i in train)  # fixed per image
    soft_values = torch.cat([got["soft"][i][torch.from_numpy(unc[i])] for i in train])
    assert len(set(soft_values.tolist())) > 1
    msg = err({"name": "chexpert", "root": str(folder), "uncertain": "maybe"})
    assert "unknown dataset.uncertain 'maybe'; valid choices: ignore, ones, soft, zeros" in msg


def test_ignored_entries_leave_the_loss_and_the_metrics(tmp_path):
    from medtransfer.metrics import ClsMetrics
    from medtransfer.train.losses import MaskedBCEWithLogits

    dm = make_dm("chexpert", make_chexpert(tmp_path), batch=20, uncertain="ignore")
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert (b["label"] == -1).any()
    logits = torch.randn_like(b["label"])
    known = b["label"] != -1
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], b["label"][known])
    assert torch.allclose(MaskedBCEWithLogits()(logits, b["label"]), want)
    m = ClsMetrics("multilabel", dm.label_names)
    m.update(torch.sigmoid(logits), b["label"])
    assert 0 <= m.compute()["auroc"] <= 1


def test_chexpert_bad_cells_name_the_file_row_and_column(tmp_path):
    folder = make_chexpert(tmp_path)
    table = folder / "train.csv"
    lines = table.read_text().splitlines()
    cells = lines[3].split(",")
    cells[5 + 8] = "2.0"  # Atelectasis, the 9th observation column
    table.write_text("\n".join([*lines[:3], ",".join(cells), *lines[4:]]) + "\n")
    msg = err({"name": "chexpert", "root": str(folder)}, DataError)
    assert msg == (f"{table}: row 4, column 'Atelectasis': label '2.0' is not 1, 0, -1 (uncertain) or empty "
                   "(negative)")
    table.write_text("\n".join(lines) + "\n")
    (folder / "train" / "patient00002" / "study1" / "view1_frontal.jpg").unlink()
    msg = err({"name": "chexpert", "root": str(folder)}, DataError)
    assert msg == f"{table}: row 4: image {folder}/train/patient00002/study1/view1_frontal.jpg does not exist"
    (folder / "valid.csv").write_text("Path,Sex,Age,Frontal/Lateral,AP/PA,Edema\n")
    save_image(folder / "train" / "patient00002" / "study1" / "view1_frontal.jpg", False)
    msg = err({"name": "chexpert", "root": str(folder)}, DataError)
    assert msg == f"{folder / 'valid.csv'}: no column 'Atelectasis'; columns: Path, Sex, Age, Frontal/Lateral, AP/PA, Edema"


# ------------------------------------------------------------------------------------------- Shenzhen
def test_shenzhen_binary_from_file_names_with_the_benchmark_split(tmp_path):
    root = make_shenzhen(tmp_path / "sz")
    dm = make_dm("shenzhen", root)
    assert (dm.label_kind, dm.label_names) == ("binary", ["tuberculosis"])
    s = dm.split
    assert (s.name, s.n_train, s.n_val, s.n_test) == ("random_70_10_20", 14, 2, 4)
    assert make_dm("shenzhen", root, split_seed=3).split.test != s.test
    dm.setup("test")
    b = next(iter(dm.test_dataloader()))
    assert [int(x) for x in b["label"][:, 0]] == [int(i[-1]) for i in b["id"]]
    assert "unknown dataset.split for shenzhen 'official'" in err({"name": "shenzhen", "root": str(root),
                                                                    "split": "official"})
    save_image(root / "CHNCXR_0099_2.png", False)
    assert f"{root / 'CHNCXR_0099_2.png'}: not a Shenzhen file name" in err({"name": "shenzhen", "root": str(root)},
                                                                           DataError)


# --------------------------------------------------------------------------------------- image folder
def test_image_folder_classes_sorted_multiclass_and_binary(tmp_path):
    root = make_image_folder(tmp_path / "tree", classes=("owl", "cat", "dog"))
    dm = make_dm("image_folder", root)
    assert (dm.label_kind, dm.label_names, dm.num_outputs) == ("multiclass", ["cat", "dog", "owl"], 3)
    assert (dm.split.n_train, dm.split.n_val, dm.split.n_test) == (14, 2, 2)  # no parts: random 80/10/10
    dm.setup("test")
    b = next(iter(dm.test_dataloader()))
    assert b["label"].dtype == torch.int64
    assert [dm.label_names[int(y)] for y in b["label"]] == [i.split("/")[0] for i in b["id"]]
    two = make_image_folder(tmp_path / "two", classes=("normal", "tb"))
    binary = make_dm("image_folder", two, label_kind="binary")
    assert (binary.label_kind, binary.label_names, binary.num_outputs) == ("binary", ["tb"], 1)
    msg = err({"name": "image_folder", "root": str(root), "labels": ["a", "b", "c"]})
    assert "an image folder's classes are its sub-folders, sorted: ['cat', 'dog', 'owl']" in msg
    (root / "emu").mkdir()
    assert f"{root / 'emu'}: class folder without images" in err({"name": "image_folder", "root": str(root)},
                                                                 DataError)


def test_image_folder_official_parts(tmp_path):
    root = make_image_folder(tmp_path / "tree", official=True, n=6)
    s = make_dm("image_folder", root).split
    assert all(i.startswith("test/") for i in s.test) and s.n_test == 9
    assert s.n_train + s.n_val == 18 and s.n_val == 2 and s.source["val_carved_from_train"]
    save_image(root / "test" / "yak" / "x.png", False, rgb=True)
    assert "class 'yak' is not a class of" in err({"name": "image_folder", "root": str(root)}, DataError)


# ------------------------------------------------------------------------------------------------ csv
def test_csv_binary_multilabel_split_column_and_groups(tmp_path):
    one = make_csv(tmp_path / "one", labels=("tb",))
    dm = make_dm("csv", one)
    assert (dm.label_kind, dm.label_names) == ("binary", ["tb"])
    assert (dm.split.n_train, dm.split.n_val, dm.split.n_test) == (16, 2, 2)
    many = make_csv(tmp_path / "many", labels=("a", "b", "c"), split=True, groups=True)
    ml = make_dm("csv", many, group_column="patient")
    assert (ml.label_kind, ml.label_names) == ("multilabel", ["a", "b", "c"])
    assert (ml.split.n_train, ml.split.n_val, ml.split.n_test) == (10, 5, 5)  # the split column
    assert make_dm("csv", many, group_column="patient", labels=["c", "a"]).label_names == ["c", "a"]
    grouped = make_dm("csv", make_csv(tmp_path / "g", groups=True), group_column="patient", split="patient_80_10_10")
    pat = {i: f"p{int(i.split('/')[1][:-4]) // 2}" for i in grouped.facts.ids}
    assert not {pat[i] for i in grouped.split.train} & {pat[i] for i in grouped.split.test}
    msg = err({"name": "csv", "root": str(one), "split": "patient_80_10_10"})
    assert "has no patient ids; set dataset.group_column" in msg
    dm.setup("test")
    assert next(iter(dm.test_dataloader()))["label"].shape == (2, 1)


def test_csv_errors_name_the_file_row_and_column(tmp_path):
    root = make_csv(tmp_path / "c")
    table = root / "labels.csv"
    text = table.read_text()
    cfg = {"name": "csv", "root": str(root)}
    table.write_text(text.replace("img/2.png,0,1", "img/2.png,2,1"))
    assert err(cfg, DataError) == f"{table}: row 4, column 'a': label '2' is not 0 or 1"
    table.write_text(text.replace("img/3.png", "img/nope.png"))
    assert f"{table}: row 5: image img/nope.png does not exist" in err(cfg, DataError)
    table.write_text(text.replace("image,", "file,"))
    assert f"{table}: no column 'image'; columns: file, a, b" in err(cfg, DataError)
    table.write_text(text)
    assert "dataset.labels: 'z' is not a label of" in err({**cfg, "labels": ["z"]})
    assert "unknown dataset.color 'sepia'" in err({**cfg, "color": "sepia"})


# ---------------------------------------------------------------------------------- decode-once cache
def test_decoded_once_into_the_cache_and_reused(tmp_path, monkeypatch):
    root = make_shenzhen(tmp_path / "sz", n=10)
    calls = []
    real = cls_tables.decode_one
    monkeypatch.setattr(cls_tables, "decode_one", lambda *a: calls.append(a[0]) or real(*a))
    validate_dataset_cfg({"name": "shenzhen", "root": str(root)})
    assert calls == []  # validation decodes nothing
    make_dm("shenzhen", root).setup("fit")
    assert len(calls) == 10
    dm = make_dm("shenzhen", root)
    dm.setup("fit")
    assert len(calls) == 10 and isinstance(dm._images, np.memmap) and dm._images.shape == (10, 32, 32)
    make_dm("shenzhen", root, size=48).setup("fit")
    assert len(calls) == 20  # another size: another entry
    save_image(root / "CHNCXR_0001_0.png", True, size=44)
    make_dm("shenzhen", root).setup("fit")
    assert len(calls) == 30  # a changed file: a new entry
    (root / "CHNCXR_0002_1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"CHNCXR_0002_1\.png: cannot decode image"):
        make_dm("shenzhen", root).setup("fit")


def test_fingerprint_names_another_root_and_its_table(tmp_path):
    a, b = make_csv(tmp_path / "a"), make_csv(tmp_path / "b")
    fa, fb = (data_fingerprint({"name": "csv", "root": str(r)}) for r in (a, b))
    assert None not in (fa, fb) and fa != fb
    (a / "labels.csv").write_text((a / "labels.csv").read_text().replace("img/0.png,0,1", "img/0.png,1,1"))
    assert data_fingerprint({"name": "csv", "root": str(a)}) != fa
    tree = make_image_folder(tmp_path / "t")
    ft = data_fingerprint({"name": "image_folder", "root": str(tree)})
    save_image(tree / "cat" / "new.png", False, rgb=True)
    assert data_fingerprint({"name": "image_folder", "root": str(tree)}) not in (None, ft)


def test_split_file_is_tied_to_its_rows(tmp_path):
    root = make_csv(tmp_path / "c")
    dm = make_dm("csv", root, n_train=5)
    path = dm.save_split(tmp_path / "run" / "split.json")
    assert json.loads(path.read_text())["source"]["file"]["name"] == "c"
    assert make_dm("csv", root, split=str(path)).split.train == dm.split.train
    other = make_csv(tmp_path / "d", n=22)
    with pytest.raises(ConfigError, match="made for file 'c'"):
        _ = make_dm("csv", other, split=str(path)).split


@pytest.mark.parametrize("name", ["chestxray14", "chexpert", "shenzhen", "image_folder", "csv"])
def test_yaml_repeats_the_registered_facts(name):
    cfg = OmegaConf.load(settings.PROJECT_ROOT / "conf" / "dataset" / f"{name}.yaml")
    spec = DATASETS[name]
    assert cfg.name == name and cfg.task == "classification" and cfg.label_kind == spec.label_kind
    assert (tuple(cfg.labels) if cfg.labels is not None else None) == spec.labels
    assert cfg.split == spec.default_split and cfg.color == spec.color
    assert cfg.get("uncertain", "ignore") == spec.uncertain


def test_labels_known_at_config_time(tmp_path):
    info = dataset_labels({"name": "csv", "root": str(make_csv(tmp_path / "c", labels=("x", "y", "z")))})
    assert (info.kind, info.names, info.num_outputs) == ("multilabel", ("x", "y", "z"), 3)
