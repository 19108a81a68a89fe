"""validate_dataset_cfg: cheap, one-line ConfigErrors naming the option and the valid choices."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from medtransfer import settings
from medtransfer.data import DATASETS, metrics_region, validate_dataset_cfg
from medtransfer.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"


def err(cfg) -> str:
    with pytest.raises(ConfigError) as e:
        validate_dataset_cfg(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_unknown_name_lists_valid_names():
    msg = err({"name": "kvasir"})
    assert "dataset.name" in msg and "'kvasir'" in msg
    for name in ("breastmnist", "cvc_clinicdb", "drive", "folder", "kvasir_seg", "medmnist", "pneumoniamnist",
                 "synthetic"):
        assert name in msg


def test_unknown_split_lists_valid_splits():
    msg = err({"name": "synthetic", "split": "official"})
    assert "dataset.split" in msg and "random_80_20" in msg and "all" in msg
    msg = err({"name": "kvasir_seg", "split": "sequence"})
    assert "medico2020" in msg and "pranet" in msg and "random_80_10_10" in msg


def test_missing_root_names_env_var_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.DATA_ROOT, str(tmp_path))
    msg = err({"name": "kvasir_seg"})
    assert settings.DATA_ROOT in msg and str(tmp_path / "kvasir_seg") in msg
    msg = err({"name": "folder"})
    assert "dataset.root is required" in msg
    msg = err({"name": "folder", "root": str(tmp_path / "nope")})
    assert "dataset.root" in msg and "nope" in msg


def test_incomplete_layout_and_missing_list_file(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.DATA_ROOT, str(tmp_path))
    (tmp_path / "kvasir_seg" / "images").mkdir(parents=True)
    assert "masks not found" in err({"name": "kvasir_seg"})
    (tmp_path / "kvasir_seg" / "masks").mkdir()
    msg = err({"name": "kvasir_seg", "split": "pranet"})
    assert "pranet_train.txt" in msg and "does not exist" in msg
    validate_dataset_cfg({"name": "kvasir_seg", "split": "random_80_20"})  # generic splits need no files


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"n_train": 0}, "dataset.n_train"),
        ({"n_train": "10"}, "dataset.n_train"),
        ({"n_train": 1000}, "exceeds dataset.n_images"),
        ({"val_fraction": 1.5}, "dataset.val_fraction"),
        ({"num_classes": 3}, "dataset.num_classes"),
        ({"n_images": 2}, "dataset.n_images"),
        ({"metrics_in_fov": "yes"}, "dataset.metrics_in_fov='yes': expected true or false"),
        ({"metrics_in_fov": True}, "synthetic has no field-of-view masks; datasets with them: drive"),
        ({"mask_foreground": "auto"}, "dataset.mask_foreground='auto': expected binary, nonzero or a non-empty"),
        ({"mask_foreground": []}, "dataset.mask_foreground=[]: expected binary, nonzero"),
        ({"mask_foreground": [1, -2]}, "dataset.mask_foreground=[1, -2]: expected binary, nonzero"),
        ({"jpeg_draft": "yes"}, "dataset.jpeg_draft='yes': expected true or false"),
    ],
)
def test_bad_numbers(bad, match):
    assert match in err({"name": "synthetic", **bad})


def test_decode_options_validate():
    for fg in ("binary", "nonzero", [2], [1, 2]):
        validate_dataset_cfg({"name": "synthetic", "mask_foreground": fg, "jpeg_draft": True})
    validate_dataset_cfg(OmegaConf.create({"name": "synthetic", "mask_foreground": [255]}))  # a ListConfig


def test_conf_files_match_registry_and_validate(tmp_path):
    files = sorted(CONF.glob("*.yaml"))
    assert {f.stem for f in files} == set(DATASETS)
    for f in files:
        cfg = OmegaConf.load(f)
        spec = DATASETS[f.stem]
        assert cfg.name == f.stem and cfg.split in spec.all_splits
        # 2D yamls set their working size; 3D ones their patch size (volumes keep their own grid)
        assert ("patch_size" if spec.task == "segmentation3d" else "image_size") in cfg
        # segmentation yamls leave `task` out; classification and 3D ones say it
        assert cfg.get("task", "segmentation") == spec.task
        if spec.task == "segmentation3d":
            assert cfg.layout == spec.layout and metrics_region(cfg) == "image"
            continue
        if spec.task == "classification":
            labels = list(spec.labels) if spec.labels is not None else None
            # where the data are: a file (MedMNIST .npz) or a folder (cls_tables: ChestX-ray14, csv, ...)
            assert ("file" in cfg or "root" in cfg) and cfg.label_kind == spec.label_kind and cfg.labels == labels
            assert metrics_region(cfg) == "image"
            continue
        assert cfg.num_classes == 1
        if cfg.name == "synthetic":
            validate_dataset_cfg(cfg)  # a DictConfig is fine
        if cfg.name == "folder":
            (tmp_path / "images").mkdir()
            (tmp_path / "masks").mkdir()
            cfg.root = str(tmp_path)
            validate_dataset_cfg(cfg)
        # DRIVE is scored inside its field of view, as its results are reported; the rest on every pixel
        assert metrics_region(cfg) == ("fov" if cfg.name == "drive" else "image")


def test_real_data_configs_validate(shared_data):
    for name in ("kvasir_seg", "cvc_clinicdb"):
        cfg = OmegaConf.load(CONF / f"{name}.yaml")
        validate_dataset_cfg(cfg)
        for split in DATASETS[name].all_splits:
            validate_dataset_cfg({**OmegaConf.to_container(cfg), "split": split})
