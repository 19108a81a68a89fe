"""eval.py on classification checkpoints: labels matched by name between the model and the evaluated dataset,
per-case probabilities + summary under eval/<dataset>-<split>/, one-line errors when nothing can be scored.

The checkpoint is a real one: r18 at 28 px trained one smoke epoch on a multi-label file [a, b, c]."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from medtransfer import settings
from medtransfer.errors import ConfigError
from medtransfer.metrics.classification import roc_auc
from tests.test_train_classification import SMOKE
from tests.test_train_run import _cfg, _cli

N = {"train": 8, "val": 4, "test": 10}


def _npz(path: Path, columns: list[int], seed: int = 0) -> Path:
    """A multi-label MedMNIST-layout file; `columns` picks which of the three base label columns (a, b, c) it
    holds, in that order, over the same images (so [2, 0] is the [a, b, c] file relabelled [c, a])."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for part, n in N.items():
        arrays[f"{part}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        base = np.stack([np.arange(n) % 2, (np.arange(n) // 2) % 2, (np.arange(n) + 1) % 2], axis=1)
        arrays[f"{part}_labels"] = base[:, columns].astype(np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A classifier trained (one smoke epoch) on a file with labels [a, b, c]: its run directory and config."""
    from medtransfer.train.run import run

    tmp = tmp_path_factory.mktemp("cls_eval")
    f = _npz(tmp / "abc.npz", [0, 1, 2])
    os.environ[settings.RUNS_ROOT] = str(tmp / "runs")
    try:
        cfg = _cfg(["dataset=medmnist", f"dataset.file={f}", "dataset.labels=[a,b,c]", *SMOKE, "study=cls_eval",
                    "trainer.max_epochs=1"])
        run_dir = Path(cfg.run_dir)  # resolved while the runs root points into tmp
        record = run(cfg)
    finally:
        os.environ.pop(settings.RUNS_ROOT, None)
    assert record["status"] == "complete" and record["label_kind"] == "multilabel"
    return run_dir, cfg, tmp


def _evaluate(run_dir, dataset: dict):
    from medtransfer.train.evaluate import evaluate

    return evaluate(OmegaConf.create({
        "ckpt": str(run_dir), "dataset": dataset, "split": None, "batch_size": 4, "num_workers": 0,
        "threshold": 0.5, "surface": False, "save_predictions": False, "out_dir": None, "device": "cpu"}))


def _rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def test_labels_are_matched_by_name_not_position(ckpt):
    run_dir, cfg, tmp = ckpt
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    out = run_dir / "eval" / "medmnist-official"
    same = _evaluate(run_dir, dataset)  # the training file: every label scored
    assert same["labels"] == ["a", "b", "c"] and same["labels_not_scored"] == {"model_only": [], "dataset_only": []}
    before = _rows(out / "per_image.csv")
    swapped = _evaluate(run_dir, {**dataset, "file": str(_npz(tmp / "ca.npz", [2, 0])), "labels": ["c", "a"]})
    assert swapped["task"] == "classification" and swapped["labels"] == ["c", "a"]
    assert swapped["labels_not_scored"] == {"model_only": ["b"], "dataset_only": []}
    assert json.loads((out / "summary.json").read_text())["labels"] == ["c", "a"]
    rows = _rows(out / "per_image.csv")
    assert len(rows) == N["test"] and {"prob/c", "prob/a", "target/c", "target/a"} <= set(next(iter(rows.values())))
    assert "prob/b" not in next(iter(rows.values()))
    # same images, relabelled: each label's per-case probabilities and targets are those it had on the
    # [a, b, c] file, and its AUROC is the one of the written probabilities
    for label in ("c", "a"):
        for key in (f"prob/{label}", f"target/{label}"):
            assert [rows[i][key] for i in sorted(rows)] == [before[i][key] for i in sorted(rows)], key
        assert swapped["metrics"][f"auroc/{label}"] == pytest.approx(same["metrics"][f"auroc/{label}"], abs=1e-12)
        probs = np.array([float(r[f"prob/{label}"]) for r in rows.values()])
        targets = np.array([int(r[f"target/{label}"]) for r in rows.values()])
        assert swapped["metrics"][f"auroc/{label}"] == pytest.approx(roc_auc(probs, targets == 1))
    assert swapped["metrics"]["n_labels_auroc"] == 2


def test_eval_cli_on_a_relabelled_file(ckpt):
    """`python eval.py ckpt=<run dir> dataset=medmnist dataset.file=... dataset.labels=[c,a]` end to end."""
    run_dir, _, tmp = ckpt
    f = _npz(tmp / "ca_cli.npz", [2, 0])
    out = tmp / "cli_out"
    p = _cli("eval.py", [f"ckpt={run_dir}", "dataset=medmnist", f"dataset.file={f}", "dataset.labels=[c,a]",
                         "num_workers=0", f"out_dir={out}"], tmp)
    assert "on 2 shared label(s) ['c', 'a'] (not scored: model only: b)" in p.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == ["c", "a"] and summary["metrics"]["n_cases"] == N["test"]
    assert len(_rows(out / "per_image.csv")) == N["test"]


def test_no_shared_label_fails_in_one_line_naming_both_lists(ckpt):
    run_dir, cfg, tmp = ckpt
    dataset = {**OmegaConf.to_container(cfg.dataset, resolve=True), "file": str(_npz(tmp / "xy.npz", [0, 1])),
               "labels": ["x", "y"]}
    with pytest.raises(ConfigError) as e:
        _evaluate(run_dir, dataset)
    msg = str(e.value)
    assert "\n" not in msg and "no label in common" in msg and "['a', 'b', 'c']" in msg and "['x', 'y']" in msg


def test_a_classifier_is_not_evaluated_on_a_segmentation_dataset(ckpt):
    run_dir, _, _ = ckpt
    with pytest.raises(ConfigError, match=r"is a classification checkpoint; dataset=synthetic is a segmentation"):
        _evaluate(run_dir, {"name": "synthetic"})


def test_label_matching_rules():
    from medtransfer.train.evaluate import match_labels

    m = match_labels("binary", ["tb"], "multilabel", ["x", "tb"], "w")
    assert (m["kind"], m["labels"], m["outputs"], m["targets"], m["dataset_only"]) == (
        "multilabel", ["tb"], [0], [1], ["x"])
    m = match_labels("multiclass", ["0", "1", "2"], "multiclass", ["2", "0", "1"], "w")
    assert m["outputs"] == [2, 0, 1] and m["targets"] is None
    with pytest.raises(ConfigError, match="same classes only"):
        match_labels("multiclass", ["0", "1", "2"], "multiclass", ["0", "1"], "w")
    with pytest.raises(ConfigError, match="multiclass models need a multiclass dataset"):
        match_labels("multiclass", ["0", "1"], "binary", ["1"], "w")
