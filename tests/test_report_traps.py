"""Report traps (issue 9): comparisons across test sets, seeds counted twice, default table layout, and grid
cells a sweep marks not applicable. Each case is a handful of synthetic run folders (results.json schema 1).
"""

import json
import os

import pandas as pd
import pytest
from scipy import stats as ss

from medtransfer.errors import ConfigError
from medtransfer.report import cli as report_cli
from medtransfer.report.build import ReportOptions, build_report

BASE = {"encoder": "r50", "decoder": "unet", "pretrain": "imagenet", "finetune": "full", "dataset": "kvasir_seg",
        "n_train": None, "fold": None, "extra": None}


def write_run(root, study, seed, dice=None, status="complete", error=None, split=None, evals=None, mtime=None,
              **cond):
    """One run dir root/<study>/<slug>/seed<k>/ with results.json; returns the dir."""
    c = {**BASE, **cond}
    slug = "_".join(f"{k}-{'all' if v is None else v}" for k, v in c.items() if k not in ("fold", "extra"))
    d = root / study / slug / f"seed{seed}"
    d.mkdir(parents=True)
    rec = {"status": status, "error": error, "study": study, "condition": c, "seed": seed}
    if status == "complete":
        rec["metrics"] = {"test": {"dice_per_image": dice, "n_images": 10}, "val_best": {"dice_per_image": dice},
                          "val_history": [{"epoch": 0, "dice_per_image": dice}]}
    if split:
        rec["split"] = {"name": split}
    for name, value in (evals or {}).items():
        e = d / "eval" / name
        e.mkdir(parents=True)
        ds, sp = name.rsplit("-", 1)
        (e / "summary.json").write_text(json.dumps({"dataset": ds, "split": sp, "condition": c, "seed": seed,
                                                    "metrics": {"dice_per_image": value}}))
    (d / "results.json").write_text(json.dumps(rec))
    if mtime is not None:
        os.utime(d / "results.json", (mtime, mtime))
    return d


# ------------------------------------------------------------------ A: never compare across test sets

TWO_DATASETS = {("kvasir_seg", "imagenet"): [0.80, 0.82, 0.81], ("kvasir_seg", "scratch"): [0.70, 0.73, 0.71],
                ("cvc_clinicdb", "imagenet"): [0.90, 0.91, 0.93], ("cvc_clinicdb", "scratch"): [0.60, 0.62, 0.61]}


@pytest.fixture
def two_datasets(tmp_path):
    ood = {("kvasir_seg", "imagenet"): 0.50, ("kvasir_seg", "scratch"): 0.55,
           ("cvc_clinicdb", "imagenet"): 0.40, ("cvc_clinicdb", "scratch"): 0.45}
    for (ds, pre), values in TWO_DATASETS.items():
        for seed, dice in enumerate(values):
            write_run(tmp_path / "runs", "two", seed, dice, dataset=ds, pretrain=pre,
                      evals={"etis-all": ood[(ds, pre)] + 0.01 * seed})
    return tmp_path / "runs"


def test_default_baseline_compares_within_each_dataset(two_datasets, tmp_path):
    build_report([two_datasets], tmp_path / "out")
    tests = pd.read_csv(tmp_path / "out" / "tests.csv")
    got = {(r.pretrain, r.dataset, r.baseline) for r in tests.itertuples()}
    assert got == {("scratch", "kvasir_seg", "imagenet / kvasir_seg"),
                   ("scratch", "cvc_clinicdb", "imagenet / cvc_clinicdb")}
    kv = tests[tests.dataset == "kvasir_seg"].iloc[0]
    expect = ss.ttest_ind(TWO_DATASETS[("kvasir_seg", "scratch")], TWO_DATASETS[("kvasir_seg", "imagenet")],
                          equal_var=False)
    assert kv["p"] == pytest.approx(expect.pvalue)


def test_rows_that_pool_test_sets_are_an_error(two_datasets, tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.*cvc_clinicdb.*kvasir_seg") as e:
        build_report([two_datasets], tmp_path / "out", ReportOptions(rows=["pretrain"], cols=[]))
    assert "\n" not in str(e.value)


def test_baseline_across_test_sets_is_an_error(two_datasets, tmp_path):
    with pytest.raises(ConfigError, match="test set"):
        build_report([two_datasets], tmp_path / "out", ReportOptions(baseline="dataset=kvasir_seg"))


def test_ood_ranks_and_correlations_stay_within_a_training_dataset(two_datasets, tmp_path):
    scores = tmp_path / "scores.csv"
    scores.write_text("pretrain,score\nimagenet,80\nscratch,10\n")
    build_report([two_datasets], tmp_path / "out", ReportOptions(scores=str(scores), correlate=[
        "dice_per_image:eval.etis-all.dice_per_image"]))
    ood = pd.read_csv(tmp_path / "out" / "ood_etis-all.csv")
    for ds in ("kvasir_seg", "cvc_clinicdb"):
        sub = ood[ood.dataset == ds].set_index("pretrain")
        # within each dataset imagenet wins in distribution and scratch out of it
        assert (sub.loc["imagenet", "id_rank"], sub.loc["scratch", "id_rank"]) == (1, 2)
        assert (sub.loc["imagenet", "rank_shift"], sub.loc["scratch", "rank_shift"]) == (-1, 1)
    sp = pd.read_csv(tmp_path / "out" / "scores_spearman.csv")
    assert set(sp["dataset"]) == {"kvasir_seg", "cvc_clinicdb"} and len(sp) == 4
    corr = pd.read_csv(tmp_path / "out" / "correlations.csv")
    assert sorted(corr["dataset"]) == ["cvc_clinicdb", "kvasir_seg"] and (corr["n"] == 2).all()


def test_eval_sets_are_never_pooled(tmp_path):
    for seed in range(2):
        for pre, v in (("imagenet", 0.5), ("scratch", 0.4)):
            write_run(tmp_path / "runs", "e", seed, 0.8, pretrain=pre, evals={"etis-all": v, "etis-test": v + 0.3})
    build_report([tmp_path / "runs"], tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert {"eval.etis-all.dice_per_image", "eval.etis-test.dice_per_image"} <= set(runs.columns)
    means = {n: pd.read_csv(tmp_path / "out" / f"ood_{n}.csv").set_index("pretrain")["ood_mean"]
             for n in ("etis-all", "etis-test")}
    assert means["etis-all"]["imagenet"] == pytest.approx(0.5) and means["etis-test"]["imagenet"] == pytest.approx(0.8)


def test_different_test_splits_of_one_dataset_are_an_error(tmp_path):
    for seed, (pre, split) in enumerate([("imagenet", "medico2020"), ("scratch", "random_80_10_10")]):
        write_run(tmp_path / "runs", "s", seed, 0.8, pretrain=pre, split=split)
    with pytest.raises(ConfigError, match="random_80_10_10"):
        build_report([tmp_path / "runs"], tmp_path / "out")


# ------------------------------------------------------------------ A: a seed counted twice

@pytest.fixture
def two_studies(tmp_path):
    """The same condition in two study folders: seeds 0,1,2 and 0,3 (seed 0 twice)."""
    dirs = {}
    for study, seeds, t in (("a", [0, 1, 2], 1_000_000), ("b", [0, 3], 2_000_000)):
        for s in seeds:
            dirs[(study, s)] = write_run(tmp_path / "runs", study, s, 0.7 + 0.01 * s + (study == "b") * 0.05,
                                         mtime=t)
            write_run(tmp_path / "runs", study, s, 0.6 + 0.003 * s, pretrain="scratch", mtime=t)
    return tmp_path / "runs", dirs


def test_duplicate_condition_and_seed_is_an_error_naming_both_dirs(two_studies, tmp_path):
    runs, dirs = two_studies
    with pytest.raises(ConfigError) as e:
        build_report([runs / "a", runs / "b"], tmp_path / "out")
    msg = str(e.value)
    assert str(dirs[("a", 0)]) in msg and str(dirs[("b", 0)]) in msg and "\n" not in msg
    assert "--duplicates newest" in msg


def test_duplicates_newest_keeps_one_and_warns(two_studies, tmp_path):
    runs, dirs = two_studies
    res = build_report([runs], tmp_path / "out", ReportOptions(duplicates="newest"))
    summary = pd.read_csv(tmp_path / "out" / "summary.csv", dtype={"seeds": str})
    row = summary[summary.pretrain == "imagenet"].iloc[0]
    assert row["n"] == 4 and row["seeds"] == "0,1,2,3"
    runs_csv = pd.read_csv(tmp_path / "out" / "runs.csv")
    kept = runs_csv[(runs_csv.pretrain == "imagenet") & (runs_csv.seed == 0)]
    assert list(kept["run_dir"]) == [str(dirs[("b", 0)])]  # the newer one
    assert any(str(dirs[("a", 0)]) in w for w in res["warnings"])


def test_study_as_a_table_key_keeps_both_studies(two_studies, tmp_path):
    runs, _ = two_studies
    build_report([runs], tmp_path / "out", ReportOptions(rows=["study"], cols=["pretrain"]))
    summary = pd.read_csv(tmp_path / "out" / "summary.csv", dtype={"seeds": str})
    assert summary.set_index(["study", "pretrain"]).loc[("a", "imagenet"), "seeds"] == "0,1,2"


def test_cli_duplicates_and_test_options(two_studies, tmp_path):
    import argparse

    runs, _ = two_studies
    parser = argparse.ArgumentParser()
    report_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", str(runs), "--out", str(tmp_path / "o"), "--duplicates", "newest",
                              "--test", "student"])
    assert (args.duplicates, args.test) == ("newest", "student")
    assert args.func(args) == 0
    assert set(pd.read_csv(tmp_path / "o" / "tests.csv")["test"]) == {"student"}
    default = parser.parse_args(["report", str(runs), "--out", str(tmp_path / "o2")])
    assert default.func(default) == 2


# ------------------------------------------------------------------ A: default layout

def test_default_layout_single_axis(tmp_path):
    for seed in range(2):
        for pre, dice in (("imagenet", 0.8), ("scratch", 0.7), ("mocov3", 0.75)):
            write_run(tmp_path / "runs", "one", seed, dice + 0.01 * seed, pretrain=pre)
    build_report([tmp_path / "runs"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| pretrain | dice_per_image |" in md and "| mocov3 | 0.7550 ± 0.0071 (n=2) |" in md
    assert list(pd.read_csv(tmp_path / "out" / "summary.csv").columns[:2]) == ["pretrain", "metric"]


def test_default_layout_two_axes_is_a_grid(tmp_path):
    for seed in range(2):
        for enc in ("r18", "r50"):
            for pre in ("imagenet", "scratch"):
                write_run(tmp_path / "runs", "two", seed, 0.7 + 0.01 * seed, encoder=enc, pretrain=pre)
    build_report([tmp_path / "runs"], tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| encoder | imagenet | scratch |" in md
    assert "decoder" not in md.split("## dice_per_image", 1)[1].split("##", 1)[0]  # constant axes are no group


# ------------------------------------------------------------------ C: not-applicable grid cells

REASON = "pretrain=radimagenet has no weights for encoder=vit_b"


@pytest.fixture
def grid_with_na(tmp_path):
    for seed in range(3):
        for enc in ("r50", "vit_b"):
            for pre in ("imagenet", "radimagenet"):
                if (enc, pre) == ("vit_b", "radimagenet"):
                    write_run(tmp_path / "runs", "g", seed, status="not_applicable", error=REASON,
                              encoder=enc, pretrain=pre)
                else:
                    write_run(tmp_path / "runs", "g", seed, 0.7 + 0.02 * seed + (pre == "imagenet") * 0.05,
                              encoder=enc, pretrain=pre)
    return tmp_path / "runs"


def test_not_applicable_cells_are_na_with_a_footnote(grid_with_na, tmp_path):
    out = tmp_path / "out"
    res = build_report([grid_with_na], out, ReportOptions(baseline="pretrain=radimagenet"))
    assert res["counts"].get("not_applicable") == 3 and not res["counts"].get("incomplete")
    md = (out / "report.md").read_text()
    table = md.split("## dice_per_image", 1)[1].split("##", 1)[0]
    assert "| vit_b | 0.7700 ± 0.0200 (n=3) | n/a |" in table
    assert REASON in table and "vit_b / radimagenet" in table  # the footnote under the table
    assert "## Failures" not in md and "3 not applicable" in md
    summary = pd.read_csv(out / "summary.csv").set_index(["encoder", "pretrain"])
    assert summary.loc[("vit_b", "radimagenet"), "n"] == 0
    assert summary.loc[("vit_b", "radimagenet"), "n_not_applicable"] == 3
    assert summary.loc[("vit_b", "radimagenet"), "n_failed"] == 0
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs[(runs.encoder == "vit_b") & (runs.pretrain == "radimagenet")]["status"]) == {"not_applicable"}
    tests = pd.read_csv(out / "tests.csv").set_index("encoder")
    assert tests.loc["vit_b", "n_base"] == 0 and pd.isna(tests.loc["vit_b", "p"])  # never a statistic
    assert tests.loc["vit_b", "baseline"] == "vit_b / radimagenet (n/a)"
    assert tests.loc["r50", "n_base"] == 3
