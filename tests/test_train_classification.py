"""Classification through the task seam, end to end: a MedMNIST-layout file → train.py → results.json with
the pinned classification metrics, per-case probabilities, no decoder axis; bad combinations fail at config
time for the whole grid."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medtransfer import settings
from medtransfer.errors import ConfigError, NotApplicable
from tests.test_train_run import _cfg, _cli


def make_npz(path: Path, n=(24, 8, 8), size=28, classes=2, seed=0) -> Path:
    """An official-layout MedMNIST file: {train,val,test}_{images,labels}, grey uint8, labels (N, 1);
    the class shows in the image (brighter centre) so a model can learn it."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, k in zip(("train", "val", "test"), n, strict=True):
        labels = np.arange(k) % classes
        images = rng.integers(0, 80, (k, size, size), dtype=np.uint8)
        c = size // 4
        images[:, c:-c, c:-c] += (labels * (120 // max(1, classes - 1))).astype(np.uint8)[:, None, None]
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = images, labels.reshape(-1, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


SMOKE = ["encoder=r18", "pretrain=scratch", "trainer=smoke", "logger=csv", "batch_size=8", "trainer.max_epochs=2"]


def test_binary_classification_run_records_pinned_metrics_and_per_case_probabilities(tmp_path, monkeypatch):
    from medtransfer.train.run import run

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    f = make_npz(tmp_path / "toy.npz")
    cfg = _cfg(["dataset=medmnist", f"dataset.file={f}", "dataset.labels=[bright]", *SMOKE, "study=cls"])
    assert (cfg.decoder.name, cfg.loss._target_, cfg.monitor) == (
        "none", "medtransfer.train.losses.MaskedBCEWithLogits", "val/auroc")
    record = run(cfg)
    assert record["status"] == "complete" and record["task"] == "classification"
    assert record["condition"]["decoder"] is None and "_dec-" not in Path(cfg.run_dir).parent.name
    assert (record["labels"], record["label_kind"]) == (["bright"], "binary")
    test = record["metrics"]["test"]
    for key in ("auroc", "auroc/bright", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity"):
        assert 0 <= test[key] <= 1, key
    assert test["n_cases"] == 8 and record["split"]["n_test"] == 8
    assert [h["epoch"] for h in record["metrics"]["val_history"]] == [0, 1]
    assert all("auroc" in h and "loss" in h for h in record["metrics"]["val_history"])
    with open(Path(cfg.run_dir) / "test_per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {"id", "prob/bright", "target/bright"} <= set(rows[0])
    assert all(0 <= float(r["prob/bright"]) <= 1 for r in rows)
    assert record["pretrain"]["source"] == "scratch" and record["params"]["total"] > 11_000_000


def test_multiclass_needs_cross_entropy_and_trains_with_it(tmp_path, monkeypatch):
    from medtransfer.train.run import run
    from medtransfer.train.validate import validate

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    f = make_npz(tmp_path / "three.npz", classes=3)
    base = ["dataset=medmnist", f"dataset.file={f}", *SMOKE, "trainer.max_epochs=1"]
    with pytest.raises(ConfigError, match=r"does not fit dataset=medmnist \(multiclass labels\); use loss=cross_entropy"):
        validate(_cfg(base))
    record = run(_cfg([*base, "loss=cross_entropy"]))
    assert record["label_kind"] == "multiclass" and record["labels"] == ["0", "1", "2"]
    assert {k for k in record["metrics"]["test"] if k.startswith("auroc/")} == {"auroc/0", "auroc/1", "auroc/2"}


def test_a_decoder_with_a_classification_dataset_cannot_exist(tmp_path):
    from medtransfer.train.validate import validate

    f = make_npz(tmp_path / "toy.npz")
    with pytest.raises(NotApplicable, match=r"decoder=unet with dataset=medmnist: a classification dataset takes no"):
        validate(_cfg(["dataset=medmnist", f"dataset.file={f}", "decoder=unet", "encoder=r18", "pretrain=scratch"]))
    with pytest.raises(ConfigError, match=r"decoder=none is for classification datasets"):
        validate(_cfg(["dataset=synthetic", "decoder=none", "encoder=r18", "pretrain=scratch"]))


@pytest.mark.slow
def test_a_grid_over_encoders_and_sources_validates_before_any_job_and_skips_when_complete(tmp_path):
    f = make_npz(tmp_path / "toy.npz")
    args = ["-m", "dataset=medmnist", f"dataset.file={f}", "encoder=r18", "pretrain=scratch", "seed=0,1",
            "trainer=smoke", "logger=wandb", "trainer.max_epochs=1", "study=clsgrid"]
    bad = _cli("train.py", [*args, "decoder=unet"], tmp_path, check=False)
    assert bad.returncode != 0 and "decoder=unet with dataset=medmnist" in bad.stderr
    assert not (tmp_path / "runs" / "clsgrid").exists()
    _cli("train.py", args, tmp_path)
    results = sorted((tmp_path / "runs" / "clsgrid").glob("*/seed*/results.json"))
    assert len(results) == 2 and all(json.loads(r.read_text())["status"] == "complete" for r in results)
    again = _cli("train.py", args, tmp_path)
    assert (again.stdout + again.stderr).count("is complete (results.json)") == 2  # both skipped


def test_the_file_enters_the_condition_as_a_fingerprint_not_a_path(tmp_path):
    """Two MedMNIST files are two runs; the slug holds data=<hex>, never the path."""
    from medtransfer.train.resolvers import condition_extra

    a, b = make_npz(tmp_path / "a.npz"), make_npz(tmp_path / "b.npz", seed=1)
    dirs = {str(f): _cfg(["dataset=medmnist", f"dataset.file={f}"]).run_dir for f in (a, b)}
    assert len(set(dirs.values())) == 2 and all("_x-data-" in d and str(tmp_path) not in Path(d).parent.name
                                                 for d in dirs.values())
    assert condition_extra([f"dataset.file={a}"]) is None


def test_classification_only_augment_options_fail_at_config_time(tmp_path):
    """test_resize / ten_crop are checked with the grid, not when a job builds its DataModule."""
    from medtransfer.train.validate import validate

    f = make_npz(tmp_path / "toy.npz")
    cls = ["dataset=medmnist", f"dataset.file={f}", "encoder=r18", "pretrain=scratch", "image_size=32",
           "augment=cls_benchmark"]
    validate(_cfg([*cls, "augment.test_resize=36"]))
    with pytest.raises(ConfigError, match=r"augment\.test_resize=24: expected an integer >= image_size=32"):
        validate(_cfg([*cls, "augment.test_resize=24"]))
    with pytest.raises(ConfigError, match=r"augment=cls_benchmark \(augment\.ten_crop, augment\.test_resize\) is "
                                          r"classification-only"):
        validate(_cfg(["dataset=synthetic", "encoder=r18", "decoder=unet", "pretrain=scratch", "augment=cls_benchmark"]))


def test_a_classification_dataset_is_refused_where_masks_are_needed(tmp_path):
    from medtransfer.data import SegDataModule
    from medtransfer.train.validate import validate

    f = make_npz(tmp_path / "toy.npz")
    with pytest.raises(ConfigError, match=r"dataset=medmnist is a classification dataset: it has no masks"):
        SegDataModule({"name": "medmnist", "task": "classification", "file": str(f)}, 28, "none", 4, 0, 0,
                      (0.5,) * 3, (0.5,) * 3)
    # (a classification dataset's defaults also switch the run's loss to bce_logits: refused either way)
    with pytest.raises(ConfigError, match=r"test_also\.toy: extra test sets are scored as eval\.py does"):
        validate(_cfg(["dataset=synthetic", "encoder=r18", "decoder=unet", "pretrain=scratch", "loss=bce_dice",
                       "+dataset@test_also.toy=medmnist", f"test_also.toy.file={f}"]))


# ---------------------------------------------------------------------- folder datasets, official layouts
def _layouts():
    from tests import _cls_layouts as lay

    return {  # dataset → (builder(tmp) → root, extra overrides, label kind, labels)
        "chestxray14": (lambda t: lay.make_chestxray14(t / "nih"), ["augment.test_resize=40"], "multilabel",
                        list(lay.NIH)),
        "chexpert": (lambda t: lay.make_chexpert(t), ["dataset.uncertain=soft", "augment=none"], "multilabel",
                     ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]),
        "shenzhen": (lambda t: lay.make_shenzhen(t / "sz"), ["augment=flip"], "binary", ["tuberculosis"]),
        "image_folder": (lambda t: lay.make_image_folder(t / "tree"), [], "multiclass", ["cat", "dog", "owl"]),
        "csv": (lambda t: lay.make_csv(t / "c", labels=("a", "b", "c")), [], "multilabel", ["a", "b", "c"]),
    }


@pytest.mark.parametrize("name", ["chestxray14", "chexpert", "shenzhen", "image_folder", "csv"])
def test_folder_dataset_smoke_run(tmp_path, monkeypatch, name):
    """train.py's run on a tiny copy of each source's official layout: r18 at 32 px, one epoch."""
    from medtransfer.train.run import run

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    build, extra, kind, labels = _layouts()[name]
    root = build(tmp_path)
    cfg = _cfg([f"dataset={name}", f"dataset.root={root}", "dataset.image_size=32", *SMOKE, "trainer.max_epochs=1",
                "batch_size=4", *extra, "study=folders"])
    assert "_x-data-" in Path(cfg.run_dir).parent.name  # another root than the registered place: data=<hex>
    record = run(cfg)
    assert record["status"] == "complete" and (record["label_kind"], record["labels"]) == (kind, labels)
    test = record["metrics"]["test"]
    assert test["n_cases"] == min(record["split"]["n_test"], 8) > 0  # trainer=smoke: 2 test batches of 4
    split = json.loads((Path(cfg.run_dir) / "split.json").read_text())
    assert split["dataset"] == name and split["counts"]["test"] == record["split"]["n_test"]
    with open(Path(cfg.run_dir) / "test_per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == test["n_cases"] and all(0 <= float(r[f"prob/{labels[0]}"]) <= 1 for r in rows)
