"""3D segmentation through train.py end to end: a tiny MSD-layout task → patches → MONAI UNet → sliding-window
test on the original grid → results.json with dice/hd95/assd (mm) per label; bad combinations fail at config
time for the whole grid; a re-run skips complete runs; the real Hippocampus when it is there."""

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from medtransfer import settings
from medtransfer.errors import ConfigError, NotApplicable
from tests import _volume_layouts as lay
from tests.test_train_run import _cfg, _cli

TINY = ["net3d.channels=[4,8,16]", "net3d.strides=[2,2]", "dataset.patch_size=[8,8,8]", "trainer=smoke",
        "logger=csv", "batch_size=2", "trainer.max_epochs=2", "num_workers=0"]


def _msd(tmp_path: Path) -> list[str]:
    return ["dataset=msd", f"dataset.root={lay.msd(tmp_path / 'Task99_Tiny', n=8)}"]


def test_tiny_msd_run_writes_mm_metrics_per_label_and_one_row_per_case(tmp_path, monkeypatch):
    from medtransfer.train.run import run

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    cfg = _cfg([*_msd(tmp_path), *TINY, "study=t3d"])
    assert (cfg.monitor, cfg.loss._target_, cfg.augment.name) == ("val/dice", "monai.losses.DiceCELoss",
                                                                  "flip_rot90_noise")
    slug = Path(cfg.run_dir).parent.name
    assert slug.startswith("enc-unet_pre-scratch_ft-full_ds-msd_n-all_x-data-")  # the network in the enc slot
    record = run(cfg)
    assert record["status"] == "complete" and record["task"] == "segmentation3d"
    assert record["condition"]["encoder"] == "unet" and record["condition"]["decoder"] is None
    assert record["labels"] == ["background", "anterior", "posterior"] and record["patch_size"] == [8, 8, 8]
    test = record["metrics"]["test"]
    assert test["surface_unit"] == "mm" and test["n_cases"] == record["split"]["n_test"] == 2
    for score in ("dice", "hd95", "assd"):
        per_label = [test[f"{score}/anterior"], test[f"{score}/posterior"]]
        assert test[score] == pytest.approx(sum(per_label) / 2)
    assert all(0 <= test[k] <= 1 for k in ("dice", "dice/anterior", "dice/posterior"))
    diagonal = (11**2 + (9 * 1.5) ** 2 + (7 * 3.0) ** 2) ** 0.5  # the one-empty score at the original spacing
    assert all(0 <= test[k] <= diagonal + 1e-6 for k in ("hd95", "assd", "hd95/anterior", "assd/posterior"))
    assert [h["epoch"] for h in record["metrics"]["val_history"]] == [0, 1]
    assert all({"dice", "dice/anterior", "loss"} <= set(h) for h in record["metrics"]["val_history"])
    assert record["epochs_to_converge"] in (1, 2) and record["normalisation"]["origin"] == "dataset.preprocessing"
    with open(Path(cfg.run_dir) / "test_per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and {"id", "dice", "hd95", "assd", "dice/anterior", "hd95/posterior"} <= set(rows[0])
    assert sorted(r["id"] for r in rows) == sorted(json.loads((Path(cfg.run_dir) / "split.json").read_text())
                                                   ["test"])
    # the checkpoint rebuilds its network from the run's own config (what analyze does); eval.py says it is 2D only
    from medtransfer.networks import load_checkpoint
    from medtransfer.train.evaluate import evaluate

    ckpt = load_checkpoint(cfg.run_dir)
    assert ckpt.task == "segmentation3d" and type(ckpt.model).__name__ == "Net3D"
    with torch.no_grad():
        assert ckpt.model(torch.zeros(1, 1, 8, 8, 8)).shape == (1, 3, 8, 8, 8)  # channels and classes from data
    with pytest.raises(ConfigError, match=r"is a 3D segmentation checkpoint: eval.py scores 2D runs only"):
        evaluate(OmegaConf.create({"ckpt": cfg.run_dir, "dataset": None, "split": None, "batch_size": 1,
                                   "num_workers": 0, "threshold": 0.5, "surface": False,
                                   "save_predictions": False, "out_dir": None, "device": "cpu"}))


@pytest.mark.parametrize("extra,error,match", [
    (["encoder=r18"], NotApplicable, r"encoder=r18 with dataset=msd: a 3D dataset takes one 3D network"),
    (["decoder=unet"], NotApplicable, r"decoder=unet with dataset=msd"),
    (["loss=bce_dice"], ConfigError, r"is not a 3D multi-class loss; valid choices: dice_softmax, dice_ce"),
    (["augment=standard"], ConfigError, r"augment=standard has no 3D counterpart; valid choices"),
    (["dataset.patch_size=[8,8,10]"], ConfigError, r"patch_size=\[8, 8, 10\]: every axis must be a multiple of 4"),
    (["dataset.patch_size=[8,8]"], ConfigError, r"expected 3 integers >= 4"),
    (["pretrain=imagenet"], ConfigError, r"pretrain=imagenet: 3D networks start from scratch"),
    (["finetune=frozen"], ConfigError, r"finetune=frozen: a 3D network has no encoder/decoder split"),
    (["net3d.strides=[2]"], ConfigError, r"net3d.strides=\[2\]: expected 2 positive integers"),
])
def test_bad_3d_combinations_fail_at_config_time(tmp_path, extra, error, match):
    from medtransfer.train.validate import validate

    with pytest.raises(error, match=match):
        validate(_cfg([*_msd(tmp_path), *TINY, *extra]))


def test_a_3d_network_with_a_2d_dataset_cannot_exist_and_2d_slugs_do_not_change():
    from medtransfer.train.validate import validate

    with pytest.raises(NotApplicable, match=r"net3d=unet with dataset=synthetic: a 2D dataset takes an encoder"):
        validate(_cfg(["dataset=synthetic", "encoder=r18", "decoder=unet", "pretrain=scratch", "net3d=unet"]))
    cfg = _cfg(["encoder=r18", "decoder=unet", "study=s"])
    assert Path(cfg.run_dir).parent.name == "enc-r18_dec-unet_pre-scratch_ft-full_ds-kvasir_seg_n-all"
    # an impossible cell names both, so its not_applicable record never lands in a valid run's directory
    assert Path(_cfg(["encoder=r18", "net3d=unet"]).run_dir).parent.name.startswith("enc-r18+unet_dec-")


def test_msd_needs_a_root_and_a_3d_network(tmp_path):
    from medtransfer.train.validate import validate

    with pytest.raises(ConfigError, match=r"dataset.root is required for 3D dataset 'msd'"):
        validate(_cfg(["dataset=msd", *TINY]))
    with pytest.raises(ConfigError, match=r"dataset=msd is 3D: choose a 3D network, e.g. net3d=unet"):
        validate(_cfg([*_msd(tmp_path), "net3d=none"]))


@pytest.mark.slow
def test_a_seed_grid_validates_before_any_job_and_skips_when_complete(tmp_path):
    args = ["-m", *_msd(tmp_path), *TINY, "trainer.max_epochs=1", "seed=0,1", "study=grid3d"]
    bad = _cli("train.py", [*args, "dataset.patch_size=[8,8,6]"], tmp_path, check=False)
    assert bad.returncode != 0 and "every axis must be a multiple of 4" in bad.stderr
    assert not (tmp_path / "runs" / "grid3d").exists()
    _cli("train.py", args, tmp_path)
    results = sorted((tmp_path / "runs" / "grid3d").glob("enc-unet_*/seed*/results.json"))
    assert len(results) == 2
    records = [json.loads(r.read_text()) for r in results]
    assert all(r["status"] == "complete" and "hd95/posterior" in r["metrics"]["test"] for r in records)
    again = _cli("train.py", args, tmp_path)
    assert (again.stdout + again.stderr).count("is complete (results.json)") == 2


def test_real_hippocampus_smoke(shared_data, tmp_path, monkeypatch):
    """dataset=hippocampus as configured (MSD Task04 under the data root), 3 training cases, tiny patches."""
    from medtransfer.train.run import run

    if not (shared_data / "msd_hippocampus" / "Task04_Hippocampus" / "dataset.json").is_file():
        pytest.skip("msd_hippocampus/Task04_Hippocampus not under the data root")
    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    cfg = _cfg(["dataset=hippocampus", "dataset.n_train=3", *TINY, "trainer.max_epochs=1", "study=hip"])
    assert Path(cfg.run_dir).parent.name == "enc-unet_pre-scratch_ft-full_ds-hippocampus_n-3"
    record = run(cfg)
    assert record["status"] == "complete" and record["split"]["n_train"] == 3
    assert record["split"]["n_test"] == 78  # paper 003's 30 % of 260
    assert record["labels"] == ["background", "Anterior", "Posterior"]  # as the dataset.json spells them
    test = record["metrics"]["test"]
    assert test["n_cases"] == 2 and test["surface_unit"] == "mm"  # trainer=smoke: two test volumes
    assert 0 <= test["dice/Posterior"] <= 1 and test["hd95/Anterior"] >= 0


def test_a_perfect_prediction_scores_perfectly_on_the_original_grid(tmp_path, monkeypatch):
    """LPS-stored anisotropic volumes (1 × 1.5 × 3 mm) reoriented to RAS and resampled to 1 mm: the test step
    puts the preprocessed label's own one-hot back on the original grid and scores it against the file as
    stored, at its spacing: Dice 1, 0 mm. The geometry round trip loses nothing."""
    from medtransfer.data.volume_datamodule import VolumeDataModule
    from medtransfer.data.volumes import read_label
    from medtransfer.train.module3d import Segmentation3DModule

    root = lay.nifti(tmp_path / "lps", n=6, aff=lay.affine(flip_xy=True))
    dm = VolumeDataModule({"name": "lps", "root": str(root), "layout": "nifti", "labels": ["bg", "box"],
                           "preprocessing": {"spacing": [1.0, 1.0, 1.0]}}, patch_size=[8, 8, 8], batch_size=2,
                          num_workers=0, seed=0)
    dm.prepare_data()
    dm.setup("test")
    source = dm.source
    module = Segmentation3DModule(torch.nn.Identity(), None, None, None, labels=source.labels, patch_size=[8, 8, 8],
                                  original_label=lambda i: read_label(source.case(i), source.label_values)[0][0])
    seen = {}
    monkeypatch.setattr(module, "infer", lambda image: torch.nn.functional.one_hot(
        seen["label"][:, 0], 2).permute(0, 4, 1, 2, 3).float())
    for batch in dm.test_dataloader():
        assert batch["image"].shape[2:] != lay.SHAPE  # resampled: not the stored grid
        seen["label"] = batch["label"]
        module.test_step(batch, 0)
    assert len(module.test_rows) == len(dm.split.test) > 0
    assert all(r["dice"] == 1.0 and r["hd95"] == 0.0 and r["assd"] == 0.0 for r in module.test_rows)
