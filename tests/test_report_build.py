"""`medtransfer report` end to end on fake run directories (results.json schema 1, docs/architecture.md).

The fixture is a 2 encoders × 2 pretrain × 3 seeds study with one failed run, one incomplete run dir (killed:
config.yaml + metrics.csv, no results.json), per-image CSVs for some runs and eval.py OOD summaries.
"""

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from medtransfer.errors import ConfigError
from medtransfer.report import cli as report_cli
from medtransfer.report.build import ReportOptions, build_report
from medtransfer.report.collect import find_runs, parse_slug

DICE = {  # (encoder, pretrain) → test dice per seed 0, 1, 2 (None = failed / incomplete)
    ("r50", "imagenet"): [0.80, 0.82, 0.84],
    ("r50", "scratch"): [0.70, 0.71, 0.75],
    ("r18", "imagenet"): [0.78, 0.79, None],  # seed 2 failed
    ("r18", "scratch"): [0.60, 0.66, None],  # seed 2 incomplete
}
OOD = {("r50", "imagenet"): 0.55, ("r50", "scratch"): 0.60, ("r18", "imagenet"): 0.65, ("r18", "scratch"): 0.40}


def _condition(enc, pre):
    return {"encoder": enc, "decoder": "unet", "pretrain": pre, "finetune": "full", "dataset": "kvasir_seg",
            "n_train": None, "fold": None}


def _slug(c):
    return f"enc={c['encoder']}_dec=unet_pre={c['pretrain']}_ft=full_ds=kvasir_seg_n=all"


def _history(final, converge_at):
    """Validation Dice rising to `final` at epoch `converge_at` then flat (within 0.5 % from there on)."""
    return [{"epoch": e, "dice_per_image": final * (0.5 + 0.5 * e / converge_at) if e < converge_at else final,
             "loss": 1.0 - e / 10} for e in range(converge_at + 3)]


def make_sweep(root, per_image=True, ood=True):
    """Write the fake study under root/demo/<slug>/seed<k>/ and return root."""
    for (enc, pre), values in DICE.items():
        cond = _condition(enc, pre)
        for seed, dice in enumerate(values):
            d = root / "demo" / _slug(cond) / f"seed{seed}"
            d.mkdir(parents=True)
            (d / "config.yaml").write_text(json.dumps({"study": "demo", "seed": seed, "condition": cond}))
            if dice is None and enc == "r18" and pre == "scratch":  # killed mid-training
                (d / ".hydra").mkdir()
                (d / "metrics.csv").write_text("epoch,step,val/dice_per_image,train/loss\n0,3,0.3,\n0,3,,0.9\n"
                                               "1,7,0.4,\n")
                continue
            rec = {"schema": 1, "status": "complete", "error": None, "study": "demo", "condition": cond,
                   "seed": seed, "config": {"condition": cond, "seed": seed}}
            if dice is None:
                rec.update(status="failed", error="RuntimeError: CUDA out of memory. Tried to allocate 2 GiB",
                           traceback="Traceback ...")
            else:
                hist = _history(dice, converge_at=2 if pre == "imagenet" else 4 + seed)
                rec.update(metrics={"val_best": {"dice_per_image": dice}, "val_history": hist,
                                    "test": {"dice_per_image": dice, "iou_per_image": dice - 0.1,
                                             "hd95": 30 - 10 * dice, "n_images": 10}},
                           epochs=len(hist), best_epoch=len(hist) - 1, epochs_to_converge=99, wall_time_s=60.0)
                if per_image and enc == "r50":
                    with open(d / "test_per_image.csv", "w", newline="") as f:
                        w = csv.writer(f)
                        w.writerow(["id", "dice", "iou", "hd95"])
                        for i in range(10):
                            w.writerow([f"img{i:02d}", dice + 0.01 * (i - 4.5), dice - 0.1, 5.0])
                if ood:
                    e = d / "eval" / "cvc_clinicdb-all"
                    e.mkdir(parents=True)
                    (e / "summary.json").write_text(json.dumps({
                        "dataset": "cvc_clinicdb", "split": "all", "condition": cond, "seed": seed,
                        "metrics": {"dice_per_image": OOD[(enc, pre)] + 0.01 * seed, "n_images": 612}}))
            (d / "results.json").write_text(json.dumps(rec))
    (root / "demo" / "multirun.yaml").write_text("hydra: {}\n")
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return make_sweep(tmp_path_factory.mktemp("sweep") / "runs")


@pytest.fixture(scope="module")
def by_condition(sweep, tmp_path_factory):
    """One report with rows encoder,pretrain, the best group as baseline and a pretraining-score CSV."""
    d = tmp_path_factory.mktemp("by_condition")
    scores = d / "scores.csv"
    scores.write_text("encoder,pretrain,score\nr50,imagenet,80\nr18,imagenet,75\nr50,scratch,50\nr18,scratch,40\n")
    build_report([sweep], d / "out", ReportOptions(rows=["encoder", "pretrain"], baseline="best", scores=str(scores)))
    return d / "out"


def test_collect_finds_complete_failed_and_incomplete(sweep):
    runs, warnings = find_runs([sweep])
    status = {(r.condition["encoder"], r.condition["pretrain"], r.seed): r.status for r in runs}
    assert len(runs) == 12 and not warnings
    assert status[("r18", "imagenet", 2)] == "failed"
    assert status[("r18", "scratch", 2)] == "incomplete"
    assert sum(s == "complete" for s in status.values()) == 10
    inc = next(r for r in runs if r.status == "incomplete")
    assert [h["epoch"] for h in inc.val_history] == [0, 1] and "2 validation epochs" in inc.error


def test_duplicates_are_an_error_or_counted_once_and_warned(sweep, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sweep / "demo" / _slug(_condition("r50", "imagenet")), copy)
    with pytest.raises(ConfigError, match="duplicate"):
        find_runs([sweep, copy])  # the default: a seed found twice is an error, not a silent choice
    runs, warnings = find_runs([sweep, copy], duplicates="newest")
    assert len(runs) == 12
    assert sum("duplicate" in w for w in warnings) == 3


def test_slug_parse_keeps_underscored_values():
    c = parse_slug("enc=r50_dec=unet_pre=imagenet_ft=full_ds=kvasir_seg_n=15")
    assert c == {"encoder": "r50", "decoder": "unet", "pretrain": "imagenet", "finetune": "full",
                 "dataset": "kvasir_seg", "n_train": "15"}
    c = parse_slug("enc-vit_b_dec-dpt_pre-moco-v3_ft-full_ds-cvc_clinicdb_n-all_fold-2")
    assert c == {"encoder": "vit_b", "decoder": "dpt", "pretrain": "moco-v3", "finetune": "full",
                 "dataset": "cvc_clinicdb", "n_train": None, "fold": "2"}


def test_report_tables_tests_and_files(sweep, tmp_path):
    out = tmp_path / "report"
    res = build_report([sweep], out, ReportOptions(rows=["encoder"], cols=["pretrain"],
                                                   metrics=["dice_per_image", "hd95"], baseline="pretrain=scratch"))
    names = {p.relative_to(out).as_posix() for p in res["files"]}
    assert {"report.md", "runs.csv", "summary.csv", "tests.csv", "convergence.csv", "ood_cvc_clinicdb-all.csv",
            "figures/bars_dice_per_image.png", "figures/bars_hd95.png", "figures/learning_curves.png",
            "figures/per_image_dice.png", "figures/rank_shift_cvc_clinicdb-all.png"} <= names
    for p in res["files"]:
        assert p.stat().st_size > 0
    assert not list(out.rglob("*.tmp"))

    summary = pd.read_csv(out / "summary.csv")
    row = summary[(summary.metric == "dice_per_image") & (summary.encoder == "r18") & (summary.pretrain == "imagenet")]
    assert row["n"].item() == 2 and row["n_failed"].item() == 1
    assert row["mean"].item() == pytest.approx(0.785) and row["std"].item() == pytest.approx(math.sqrt(5e-5))

    tests = pd.read_csv(out / "tests.csv")
    assert len(tests) == 2 and set(tests["pretrain"]) == {"imagenet"}  # each encoder vs its own scratch
    r50 = tests[tests.encoder == "r50"].iloc[0]
    expect = ss.ttest_ind([0.80, 0.82, 0.84], [0.70, 0.71, 0.75], equal_var=False)
    assert r50["p"] == pytest.approx(expect.pvalue) and r50["t"] == pytest.approx(expect.statistic)
    assert set(tests["test"]) == {"welch"}  # the default, named in the CSV
    assert r50["wilcoxon_n_images"] == 10 and r50["wilcoxon_p"] == pytest.approx(2 / 1024)
    assert math.isnan(tests[tests.encoder == "r18"].iloc[0]["wilcoxon_p"])  # r18 has no per-image CSVs

    md = (out / "report.md").read_text()
    assert "| encoder | imagenet | scratch |" in md
    assert "0.7850 ± 0.0071 (n=2; 1 failed) ⚠" in md
    assert "## Failures" in md and "CUDA out of memory" in md and "incomplete" in md
    assert "![dice_per_image](figures/bars_dice_per_image.png)" in md


def test_student_option_is_used_and_named_in_report_and_csv(sweep, tmp_path):
    out = tmp_path / "student"
    build_report([sweep], out, ReportOptions(rows=["encoder"], cols=["pretrain"], baseline="pretrain=scratch",
                                             test="student"))
    tests = pd.read_csv(out / "tests.csv")
    assert set(tests["test"]) == {"student"}
    r50 = tests[tests.encoder == "r50"].iloc[0]
    expect = ss.ttest_ind([0.80, 0.82, 0.84], [0.70, 0.71, 0.75], equal_var=True)
    assert r50["p"] == pytest.approx(expect.pvalue) and r50["t"] == pytest.approx(expect.statistic)
    assert r50["df"] == 4  # n_a + n_b - 2
    md = (out / "report.md").read_text()
    assert "Student's two-sample t-test" in md and "equal_var=True" in md and "Welch" not in md
    with pytest.raises(ConfigError, match="welch, student"):
        build_report([sweep], tmp_path / "bad", ReportOptions(test="mann-whitney"))


def test_std_is_the_sample_std_and_the_report_says_so(by_condition):
    summary = pd.read_csv(by_condition / "summary.csv")
    for (enc, pre), values in DICE.items():
        done = [v for v in values if v is not None]
        row = summary[(summary.metric == "dice_per_image") & (summary.encoder == enc) & (summary.pretrain == pre)]
        assert row["std"].item() == pytest.approx(np.std(done, ddof=1))
        assert row["std"].item() != pytest.approx(np.std(done, ddof=0))
    md = (by_condition / "report.md").read_text()
    assert "sample std over seeds (ddof=1)" in md


def test_convergence_is_recomputed_from_history(by_condition):
    out = by_condition
    runs = pd.read_csv(out / "runs.csv")
    r = runs[(runs.encoder == "r50") & (runs.pretrain == "scratch") & (runs.seed == 1)].iloc[0]
    assert r["converge_epoch"] == 5 and r["epochs_to_converge"] == 6 and r["epochs_to_converge_recorded"] == 99
    conv = pd.read_csv(out / "convergence.csv")
    c = conv[(conv.encoder == "r50") & (conv.pretrain == "scratch")].iloc[0]
    assert c["epochs_to_converge_mean"] == pytest.approx(6.0) and c["epochs_to_converge_std"] == pytest.approx(1.0)
    assert conv[(conv.encoder == "r50") & (conv.pretrain == "imagenet")].iloc[0]["epochs_to_converge_mean"] == 3


def test_rank_shift_and_spearman_from_eval_summaries(by_condition):
    out = by_condition
    ood = pd.read_csv(out / "ood_cvc_clinicdb-all.csv")
    shift = {(r.encoder, r.pretrain): (r.id_rank, r.ood_rank, r.rank_shift) for r in ood.itertuples()}
    # ID means: r50/in .82 > r18/in .785 > r50/sc .72 > r18/sc .63; OOD: r18/in .655 > r50/sc .61 > r50/in .56
    assert shift[("r50", "imagenet")] == (1, 3, -2)
    assert shift[("r18", "imagenet")] == (2, 1, 1)
    assert shift[("r50", "scratch")] == (3, 2, 1)
    assert shift[("r18", "scratch")] == (4, 4, 0)
    md = (out / "report.md").read_text()
    assert "Spearman ρ(ID, OOD) = 0.400" in md  # Σd² = 4+1+1+0 = 6 → 1 - 36/60


def test_scores_csv_spearman_and_best_baseline(by_condition):
    t = pd.read_csv(by_condition / "scores_spearman.csv")
    assert t["spearman_rho"].iloc[0] == pytest.approx(1.0) and t["n"].sum() == 10
    tests = pd.read_csv(by_condition / "tests.csv")
    assert len(tests) == 3 and set(tests["baseline"]) == {"r50 / imagenet"}  # best mean: 0.82


def test_cli_hook_runs_and_reports_bad_keys(sweep, tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    report_cli.add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli"
    args = parser.parse_args(["report", str(sweep), "--out", str(out), "--rows", "encoder,pretrain",
                              "--metric", "dice_per_image", "--baseline", "pretrain=scratch",
                              "--correlate", "dice_per_image:hd95"])
    assert args.func(args) == 0
    assert (out / "report.md").is_file() and (out / "correlations.csv").is_file()
    assert pd.read_csv(out / "correlations.csv")["rho"].item() == pytest.approx(-1.0)
    bad = parser.parse_args(["report", str(sweep), "--out", str(out), "--rows", "nope"])
    assert bad.func(bad) == 2 and "nope" in capsys.readouterr().err


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no runs"):
        build_report([tmp_path], tmp_path / "out")


def test_classification_runs_are_reported_on_auroc_by_default(tmp_path):
    """The headline metric follows the runs' task: auroc for classification (tables, tests, convergence)."""
    aucs = {"imagenet": [0.90, 0.92, 0.91], "scratch": [0.80, 0.83, 0.81]}
    for pre, values in aucs.items():
        cond = {"encoder": "r18", "decoder": None, "pretrain": pre, "finetune": "full", "dataset": "breastmnist",
                "n_train": None, "fold": None}
        for seed, auc in enumerate(values):
            d = tmp_path / "runs" / "cls" / f"enc-r18_pre-{pre}_ft-full_ds-breastmnist_n-all" / f"seed{seed}"
            d.mkdir(parents=True)
            hist = [{"epoch": e, "auroc": auc * (0.6 + 0.2 * e) if e < 2 else auc, "loss": 0.5} for e in range(4)]
            (d / "results.json").write_text(json.dumps({
                "schema": 1, "status": "complete", "study": "cls", "task": "classification", "condition": cond,
                "seed": seed, "metrics": {"test": {"auroc": auc, "accuracy": auc - 0.1}, "val_history": hist}}))
    build_report([tmp_path / "runs"], tmp_path / "out", ReportOptions(baseline="pretrain=scratch"))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## auroc" in md and "## dice_per_image" not in md and "Tests against the baseline (auroc)" in md
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert set(runs["epochs_to_converge"]) == {3}  # from the auroc history: within 0.5 % of the best at epoch 2
