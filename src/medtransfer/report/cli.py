"""`medtransfer report RUN_DIRS... --out DIR`: argparse hook for the `medtransfer` console script.

add_parser() only declares arguments; pandas/scipy/matplotlib are imported when the command runs, so the
console script's startup (and `--help`) stays fast.
"""

from __future__ import annotations

import argparse
import sys


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="tables, tests and plots from one or many sweeps' run directories",
        description="Read every results.json (and failed / incomplete run dirs, and eval/*/summary.json) found "
        "recursively under RUN_DIRS; write report.md, CSVs and PNGs into --out.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="sweep folders, run folders, or any parent")
    p.add_argument("--out", required=True, help="output folder (created; files replaced atomically)")
    p.add_argument("--rows", type=_csv_list, default=None,
                   help="condition keys forming table rows, e.g. encoder,pretrain (default: the keys that vary)")
    p.add_argument("--cols", type=_csv_list, default=None,
                   help="condition keys forming table columns, e.g. pretrain (default: with --rows unset too, the "
                   "last key that varies; else none)")
    p.add_argument("--metric", type=_csv_list, default=None,
                   help="comma list of runs.csv columns (default: the task's headline metric, dice_per_image for "
                   "segmentation, auroc for classification); the first is used for tests, ranks and correlations "
                   "(test metrics by name, val_best.<k>, eval.<dataset>-<split>.<k>, epochs_to_converge, ...)")
    p.add_argument("--baseline", default="best",
                   help="KEY=VALUE[,KEY=VALUE] (e.g. pretrain=scratch: each group vs its scratch counterpart), "
                   "'best' (default: vs the best group) or 'none'")
    p.add_argument("--test", choices=["welch", "student"], default="welch",
                   help="t-test over seeds against the baseline: welch (default; unequal variances) or student "
                   "(pooled variance, e.g. paper 004's independent two-sample t-test)")
    p.add_argument("--duplicates", choices=["error", "newest"], default="error",
                   help="the same condition and seed found twice (two study folders, a copy): error (default, "
                   "naming both directories) or newest (keep the newest complete run, warn about the others)")
    p.add_argument("--scores", default=None,
                   help="CSV of condition key column(s) + a score column (e.g. decoder,score): Spearman ρ of the "
                   "score vs the mean of the first --metric (pretraining score vs transfer, paper 000)")
    p.add_argument("--score-column", default=None, help="score column in --scores (default: 'score' or the last)")
    p.add_argument("--correlate", action="append", default=[], metavar="METRIC_A:METRIC_B",
                   help="Spearman ρ between two metrics' group means (repeatable)")
    p.add_argument("--tol", type=float, default=0.005,
                   help="convergence tolerance relative to the best validation Dice (default 0.005 = 0.5%%)")
    p.add_argument("--digits", type=int, default=4, help="decimals in the Markdown tables")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from medtransfer.errors import MedTransferError
    from medtransfer.report.build import ReportOptions, build_report

    opts = ReportOptions(rows=args.rows, cols=args.cols, metrics=args.metric, baseline=args.baseline,
                         test=args.test, duplicates=args.duplicates, scores=args.scores,
                         score_column=args.score_column, correlate=args.correlate, tol=args.tol, digits=args.digits)
    try:
        res = build_report(args.run_dirs, args.out, opts)
    except MedTransferError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = res["counts"]
    na = f", {c['not_applicable']} not applicable" if c.get("not_applicable") else ""
    print(f"[medtransfer] report: {c.get('complete', 0)} complete, {c.get('failed', 0)} failed, "
          f"{c.get('incomplete', 0)} incomplete{na} runs → {res['report']}")
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0
