"""build_report(): runs → report.md + CSVs + figures/ in one folder; every file written atomically.

Sections appear only when they have something to say (no OOD section without eval summaries), and the
Failures section is always there when a run failed or is incomplete, so a broken cell is never silent. A grid
cell the sweep marked not applicable is neither a failure nor dropped: 'n/a' in the tables, its reason in a
footnote, and in no statistic.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from medtransfer.errors import ConfigError
from medtransfer.files import write_csv, write_text
from medtransfer.report import compare, plots, roc, stats
from medtransfer.report.collect import dedupe, scan
from medtransfer.report.tables import (
    TEST_SET_KEYS,
    aggregate,
    check_test_sets,
    fmt,
    fmt_p,
    frame_markdown,
    group_label,
    layout,
    markdown_table,
    not_applicable_notes,
    pivot_cells,
    runs_frame,
    varying_keys,
)

_TEST_TEXT = {
    "welch": "Welch two-sample t-test over seeds (scipy.stats.ttest_ind, equal_var=False: the two conditions' seed "
             "variances need not match)",
    "student": "Student's two-sample t-test over seeds (scipy.stats.ttest_ind, equal_var=True: pooled variance, "
               "df = n + n_base - 2; paper 004's \"independent two-sample t-test\")",
}


@dataclass
class ReportOptions:
    rows: list[str] | None = None  # None → the varying keys (see tables.layout)
    cols: list[str] | None = None  # None → the last varying key when rows is None too, else none
    metrics: list[str] | None = None  # None → the runs' task's headline metric (dice_per_image | auroc)
    baseline: str | None = "best"
    test: str = "welch"  # welch | student (a study reproducing a paper's Student's t-test asks for it)
    duplicates: str = "error"  # error | newest: the same condition and seed found twice
    scores: str | None = None
    score_column: str | None = None
    correlate: list[str] = field(default_factory=list)  # "metric_a:metric_b"
    tol: float = 0.005
    digits: int = 4


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def build_report(roots: list[str | Path], out: str | Path, opts: ReportOptions | None = None) -> dict:
    """Write the report; returns {"report": path, "files": [...], "counts": {...}, "warnings": [...]}."""
    opts = opts or ReportOptions()
    out = Path(out)
    if opts.test not in _TEST_TEXT:
        raise ConfigError(f"unknown --test {opts.test!r}; valid choices: {', '.join(_TEST_TEXT)}")
    runs, warnings = scan(roots)
    if not runs:
        raise ConfigError(f"no runs (results.json / config.yaml / .hydra) under {', '.join(map(str, roots))}")
    rows, cols = layout(runs, opts.rows, opts.cols)
    keys = rows + cols
    runs, warnings = dedupe(runs, warnings, opts.duplicates, by_study="study" in keys)
    df = runs_frame(runs, tol=opts.tol)
    bad = [k for k in keys if k not in df.columns]
    if bad:
        raise ConfigError(f"--rows/--cols: {', '.join(bad)} not condition keys "
                          f"({', '.join(k for k in df.columns if k not in ('study', 'seed'))[:200]})")
    check_test_sets(df, keys)
    pooled = [k for k in varying_keys(runs) if k not in keys]
    if pooled:
        warnings.append(f"pooled over varying condition key(s) {', '.join(pooled)} (not in --rows/--cols)")
    complete = df[df["status"] == "complete"]
    headlines = sorted({r.headline for r in runs if r.status == "complete"}) or ["dice_per_image"]
    if not opts.metrics and len(headlines) > 1:
        raise ConfigError(f"runs of different tasks (headline metrics {', '.join(headlines)}): give --metric")
    metrics = list(opts.metrics or headlines)
    for m in metrics:
        if m not in df.columns or (not complete.empty and complete[m].isna().all()):
            warnings.append(f"metric {m!r} is missing from every complete run")
            if m not in df.columns:
                df[m] = float("nan")
    files, md = [], []
    fig_dir = out / "figures"

    def rel(p: Path) -> str:
        return p.relative_to(out).as_posix()

    counts = df["status"].value_counts().to_dict()
    statuses = ("complete", "failed", "incomplete") + (("not_applicable",) if counts.get("not_applicable") else ())
    test_sets = [k for k in TEST_SET_KEYS if k in keys]
    md += ["# medtransfer report", "",
           f"Generated {_dt.datetime.now().isoformat(timespec='seconds')} from {', '.join(map(str, roots))}.", "",
           f"Runs: {len(df)} — " + ", ".join(f"{counts.get(s, 0)} {s.replace('_', ' ')}" for s in statuses)
           + f". Studies: {', '.join(sorted({str(s) for s in df['study']}))}. Rows: {', '.join(rows) or '—'}"
           + (f"; columns: {', '.join(cols)}" if cols else "") + ". Cells: mean ± sample std over seeds (ddof=1) "
           "(n runs); ⚠ marks cells with failed or incomplete runs (see Failures); n/a marks grid cells not "
           "applicable (footnote under each table). Tests, ranks and correlations compare groups only within one "
           f"test set ({', '.join(test_sets) + ' is a table key' if test_sets else 'one dataset here'}; eval.py "
           "sets are separate eval.<dataset>-<split> columns).", ""]
    files.append(write_csv(out / "runs.csv", df))
    na_notes = not_applicable_notes(df, keys)

    # ---- tables + bars per metric
    summary = []
    for m in metrics:
        agg = aggregate(df, keys, m)
        summary.append(agg)
        header, body = pivot_cells(agg, rows, cols, opts.digits)
        md += [f"## {m}", "", markdown_table(header, body), ""]
        if na_notes:  # two trailing spaces: a Markdown line break between the notes
            md += [f"{n}  " for n in na_notes] + [""]
        p = plots.bars(df, agg, rows, m, fig_dir / f"bars_{_safe(m)}.png", hue=cols)
        if p:
            files.append(p)
            md += [f"![{m}]({rel(p)})", ""]
    import pandas as pd

    files.append(write_csv(out / "summary.csv", pd.concat(summary, ignore_index=True)))

    # ---- tests against the baseline (primary metric)
    primary = metrics[0]
    tests, note = compare.tests_vs_baseline(df, keys, primary, compare.parse_baseline(opts.baseline), opts.test)
    md += [f"## Tests against the baseline ({primary})", "",
           (f"{_TEST_TEXT[opts.test]}; {note}. p_holm: Holm-adjusted over the comparisons below. Wilcoxon: "
            "signed-rank test on per-image Dice paired by image id (each image averaged over seeds), where both "
            "have test_per_image.csv."), ""]
    if not tests.empty:
        show = tests.drop(columns=["metric", "test"]).copy()
        for c in ("p", "p_holm", "wilcoxon_p"):
            show[c] = [fmt_p(v) for v in show[c]]
        md += [frame_markdown(show, opts.digits), ""]
        files.append(write_csv(out / "tests.csv", tests))
    else:
        md += ["No comparison possible (the baseline group has no complete runs, or there is one group only).", ""]

    # ---- convergence
    conv = compare.convergence_table(df, keys)
    md += ["## Convergence", "",
           (f"Epochs until validation {headlines[0]} is within {opts.tol:.1%} of its best (papers 003/004), recomputed "
            "from each run's val_history."), ""]
    if not conv.empty and conv["n"].sum():
        md += [frame_markdown(conv, 2), ""]
        files.append(write_csv(out / "convergence.csv", conv))
    p = plots.learning_curves(runs, rows + cols, fig_dir / "learning_curves.png", key=headlines[0])
    if p:
        files.append(p)
        md += [f"![learning curves]({rel(p)})", ""]

    # ---- per-image distributions
    images = compare.per_image_dice(df, keys)
    p = plots.per_image_box(images, keys, fig_dir / "per_image_dice.png")
    if p:
        files.append(p)
        md += ["## Per-image Dice", "", f"![per-image Dice]({rel(p)})", ""]

    # ---- ROC curves per condition (classification runs with per-case probabilities)
    roc_rows, roc_md = [], []
    for g, seeds in roc.cases_by_group(runs, keys).items():
        label = group_label(g, keys)
        p, rows_g = plots.roc_curves(seeds, label, fig_dir / f"roc_{_safe(label)}.png")
        roc_rows += [{**dict(zip(keys, g)), **r} for r in rows_g]
        if p:
            files.append(p)
            roc_md += [f"![ROC {label}]({rel(p)})", ""]
    if roc_rows:
        md += ["## ROC curves", "",
               ("Per condition, test ROC curves from each run's per-case probabilities (test_per_image.csv): one "
                "panel per label (multi-class: each class against the rest), one curve per seed with its AUROC; "
                "panel titles: mean ± std over seeds. Values in roc_auroc.csv."), "", *roc_md]
        files.append(write_csv(out / "roc_auroc.csv", pd.DataFrame(roc_rows)))

    # ---- Spearman: user scores, metric pairs
    if opts.scores:
        table, rhos, col = compare.score_correlation(df, opts.scores, primary, opts.score_column)
        md += [f"## Pretraining score vs transfer ({col} vs {primary})", ""]
        md += [f"{_rho_line('Spearman ρ', rho)} (paper 000).  " for rho in rhos]
        md += ["", frame_markdown(table.drop(columns=["spearman_rho", "spearman_p"]), opts.digits), ""]
        files.append(write_csv(out / "scores_spearman.csv", table))
    if opts.correlate:
        corr = []
        for pair in opts.correlate:
            a, _, b = pair.partition(":")
            if not b or a not in df.columns or b not in df.columns:
                raise ConfigError(f"--correlate {pair!r}: expected METRIC_A:METRIC_B, both columns of runs.csv")
            corr += [{"metric_a": a, "metric_b": b, **r} for r in compare.metric_correlation(df, keys, a, b)]
        corr = pd.DataFrame(corr)
        md += ["## Correlations between metrics (Spearman ρ over group means)", "", frame_markdown(corr, 3), ""]
        files.append(write_csv(out / "correlations.csv", corr))

    # ---- ID vs OOD
    for name in compare.eval_sets(df):
        table, rhos = compare.ood_ranks(df, keys, primary, name)
        if table.empty:
            continue
        md += [f"## In-distribution vs {name} ({primary})", "",
               (f"Ranks (1 = best) on the training dataset's test split and on {name} (eval.py), within each "
                "training dataset; rank_shift = id_rank - ood_rank, positive = climbs out of distribution "
                "(paper 002). " + "; ".join(_rho_line("Spearman ρ(ID, OOD)", rho) for rho in rhos) + "."), "",
               frame_markdown(table, opts.digits), ""]
        files.append(write_csv(out / f"ood_{_safe(name)}.csv", table))
        p = plots.rank_slope(table, keys, name, fig_dir / f"rank_shift_{_safe(name)}.png")
        if p:
            files.append(p)
            md += [f"![rank shift {name}]({rel(p)})", ""]

    # ---- failures, warnings
    failed = df[df["status"].isin(["failed", "incomplete"])]
    if not failed.empty:
        md += ["## Failures", "", markdown_table(
            ["status", *keys, "seed", "error", "run dir"],
            [[r["status"], *[r[k] for k in keys], r["seed"], r["error"] or "", r["run_dir"]]
             for r in failed.to_dict("records")]), ""]
    if warnings:
        md += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    md += ["## Files", ""] + [f"- `{rel(Path(f))}`" for f in files] + ["- `report.md`", ""]
    report = write_text(out / "report.md", "\n".join(md))
    return {"report": report, "files": [*files, report], "counts": counts, "warnings": warnings,
            "primary": primary, "significant": int((tests["p"] < 0.05).sum()) if not tests.empty else 0}


def _rho_line(name: str, rho: dict) -> str:
    """'Spearman ρ (dataset=kvasir_seg) = 0.400, p = 0.600, n = 4'; no parenthesis with one test set."""
    where = compare.stratum_label({k: v for k, v in rho.items() if k not in ("rho", "p", "n")})
    return f"{name}{f' ({where})' if where else ''} = {fmt(rho['rho'], 3)}, p = {fmt_p(rho['p'])}, n = {rho['n']}"


__all__ = ["ReportOptions", "build_report", "stats"]
