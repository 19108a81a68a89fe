"""The report's ROC curves per condition, on fake classification run directories (results.json + the per-case
test CSV the classification task writes): the figures exist and are listed, and every AUROC they annotate is
scikit-learn's roc_auc_score on the same CSV (ties, ignored -1 targets, one-vs-rest for multi-class)."""

import csv
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medtransfer.report.build import ReportOptions, build_report
from medtransfer.report.roc import roc_curve

LABELS = ["effusion", "nodule"]


def _run(root, pre, seed, rows, task="classification"):
    cond = {"encoder": "r18", "decoder": None, "pretrain": pre, "finetune": "full", "dataset": "toyxray",
            "n_train": None, "fold": None}
    d = root / "cls" / f"enc-r18_pre-{pre}_ft-full_ds-toyxray_n-all" / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "schema": 1, "status": "complete", "study": "cls", "task": task, "condition": cond, "seed": seed,
        "metrics": {"test": {"auroc": 0.5}, "val_history": [{"epoch": 0, "auroc": 0.5}]}}))
    with open(d / "test_per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return d


def _multilabel_rows(rng, n=40):
    rows = []
    for i in range(n):
        row = {"id": f"c{i:03d}"}
        for j, label in enumerate(LABELS):
            target = int(rng.integers(0, 2))
            # rounded to two decimals: ties between cases, which the curve must step over together
            row[f"prob/{label}"] = round(float(np.clip(0.3 * target + rng.random() * 0.7, 0, 1)), 2)
            row[f"target/{label}"] = -1 if (i + j) % 7 == 0 else target  # some ignored (uncertain) entries
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("roc")
    rng = np.random.default_rng(0)
    runs = {(pre, seed): _run(tmp / "runs", pre, seed, _multilabel_rows(rng))
            for pre in ("imagenet", "scratch") for seed in (0, 1, 2)}
    res = build_report([tmp / "runs"], tmp / "out", ReportOptions(baseline="pretrain=scratch"))
    return tmp / "out", runs, res


def test_one_roc_figure_per_condition_listed_in_the_report(report):
    out, _, res = report
    md = (out / "report.md").read_text()
    for pre in ("imagenet", "scratch"):
        fig = out / "figures" / f"roc_{pre}.png"
        assert fig.is_file() and fig.stat().st_size > 1000 and fig in res["files"]
        assert f"![ROC {pre}](figures/roc_{pre}.png)" in md
    assert "## ROC curves" in md and "`roc_auroc.csv`" in md


def test_annotated_auroc_is_sklearns_on_the_same_csv(report):
    out, runs, _ = report
    table = pd.read_csv(out / "roc_auroc.csv")
    assert len(table) == 2 * 3 * len(LABELS)
    for r in table.to_dict("records"):
        cases = pd.read_csv(runs[(r["pretrain"], r["seed"])] / "test_per_image.csv")
        keep = cases[f"target/{r['label']}"] >= 0
        want = roc_auc_score(cases.loc[keep, f"target/{r['label']}"], cases.loc[keep, f"prob/{r['label']}"])
        assert r["auroc"] == pytest.approx(want, abs=1e-12)
        assert r["n_pos"] + r["n_neg"] == int(keep.sum())


def test_multiclass_is_scored_one_vs_rest_and_a_one_class_label_has_no_curve(tmp_path):
    rng = np.random.default_rng(1)
    classes = ["0", "1", "2"]
    rows = []
    for i in range(30):
        p = rng.dirichlet(np.ones(3))
        rows.append({"id": f"c{i}", **{f"prob/{c}": float(p[k]) for k, c in enumerate(classes)},
                     "target": classes[i % 3]})
    d = _run(tmp_path / "runs", "imagenet", 0, rows)
    build_report([tmp_path / "runs"], tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "roc_auroc.csv", dtype={"label": str})
    cases = pd.read_csv(d / "test_per_image.csv", dtype={"target": str})
    for r in table.to_dict("records"):
        assert r["auroc"] == pytest.approx(roc_auc_score(cases["target"] == r["label"], cases[f"prob/{r['label']}"]))
    fpr, tpr, auc = roc_curve([0.2, 0.7], [True, True])  # no negative: no curve, NaN (as the metric is)
    assert fpr.size == tpr.size == 0 and np.isnan(auc)


def test_segmentation_runs_get_no_roc_section(tmp_path):
    _run(tmp_path / "runs", "imagenet", 0, [{"id": "a", "dice": 0.8}], task="segmentation")
    build_report([tmp_path / "runs"], tmp_path / "out", ReportOptions(metrics=["dice_per_image"]))
    assert "## ROC curves" not in (tmp_path / "out" / "report.md").read_text()
    assert not list((tmp_path / "out").rglob("roc_*"))
