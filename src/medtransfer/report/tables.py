"""Runs → one pandas row per run → paper-style tables (mean ± std over seeds, n, missing/failed marked).

Column naming of the runs table (runs.csv) is the vocabulary of `--metric`: condition keys as they are
(encoder, pretrain, ...), test metrics by their own names (dice_per_image, hd95, ...), `val_best.<k>`,
`eval.<dataset>-<split>.<k>` (eval.py summaries), and run facts (epochs, converge_epoch, epochs_to_converge,
epochs_to_converge_recorded, wall_time_s, ...). Condition values are strings ("all" for n_train=None), so
`--baseline n_train=all` and `pretrain=scratch` both match what the tables show. `split` is the recorded split
scheme (which test part was scored); it is a run fact, not a condition key.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from medtransfer.errors import ConfigError
from medtransfer.report import stats
from medtransfer.report.collect import Run, condition_value
from medtransfer.runs import convergence_epoch

RUN_COLS = ["study", "seed", "status", "error", "split", "run_dir"]
# Condition keys that decide which test set a run was scored on: a table key whenever they vary, never pooled,
# and every comparison (tests, ranks, correlations) stays inside one of their values (compare.strata).
TEST_SET_KEYS = ("dataset",)


def condition_keys(runs: Sequence[Run]) -> list[str]:
    keys = []
    for r in runs:
        keys += [k for k in r.condition if k not in keys]
    return keys


def varying_keys(runs: Sequence[Run]) -> list[str]:
    """Condition keys that take more than one value (the default table rows)."""
    return [k for k in condition_keys(runs)
            if len({condition_value(r.condition.get(k)) for r in runs}) > 1]


def layout(runs: Sequence[Run], rows: Sequence[str] | None, cols: Sequence[str] | None) -> tuple[list, list]:
    """The table's row and column keys. Only keys that vary become groups (a constant encoder is no group);
    with neither given, the last varying key is the columns and the others the rows, so encoder × pretrain
    is the papers' grid (encoders down, sources across) and a one-axis study is one column."""
    vary = varying_keys(runs)
    if rows is None and cols is None:
        return (vary[:-1], vary[-1:]) if len(vary) > 1 else (vary, [])
    cols = list(cols or [])
    return (list(rows) if rows is not None else [k for k in vary if k not in cols]), cols


def check_test_sets(df, keys: Sequence[str]) -> None:
    """A ConfigError when the table would pool runs scored on different test sets: a varying test-set key left
    out of --rows/--cols, or one dataset's runs recorded with different split schemes (different test parts)."""
    for k in TEST_SET_KEYS:
        values = sorted(set(df[k])) if k in df else []
        if len(values) > 1 and k not in keys:
            raise ConfigError(f"--rows/--cols would pool different test sets: {k} takes {', '.join(values)}; "
                              f"add {k} to --rows or --cols (a metric is only comparable on one test set)")
    if "dataset" in df and "split" in df:
        for ds, sub in df.groupby("dataset"):
            splits = sorted(set(sub["split"].dropna().astype(str)))
            if len(splits) > 1:
                raise ConfigError(f"dataset {ds}: runs were scored on different test splits ({', '.join(splits)}); "
                                  "report them separately")


def runs_frame(runs: Sequence[Run], tol: float = 0.005):
    import pandas as pd

    keys = condition_keys(runs)
    rows = []
    for r in runs:
        row = {k: condition_value(r.condition.get(k)) for k in keys}
        row.update(study=r.study, seed=r.seed, status=r.status, error=r.error, split=r.split, run_dir=str(r.run_dir))
        row.update({k: v for k, v in r.test.items() if isinstance(v, (int, float)) or v is None})
        row.update({f"val_best.{k}": v for k, v in r.val_best.items()})
        for name, rec in r.evals.items():
            row.update({f"eval.{name}.{k}": v for k, v in rec["metrics"].items() if isinstance(v, (int, float))})
        row.update({k: v for k, v in r.info.items() if k != "epochs_to_converge"})
        row["epochs_to_converge_recorded"] = r.info.get("epochs_to_converge")
        epoch, n_epochs = convergence_epoch(r.val_history, key=r.headline, tol=tol)
        row.update(converge_epoch=epoch, epochs_to_converge=n_epochs)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=keys + RUN_COLS)
    for c in df.columns:
        if c not in keys and c not in RUN_COLS:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def group_label(values: Sequence, keys: Sequence[str]) -> str:
    """'r50 / imagenet' for a row tuple (keys are the table header; labels stay short in plots)."""
    return " / ".join(str(v) for v in values) if keys else "all runs"


def aggregate(df, keys: Sequence[str], metric: str):
    """One row per group of `keys`: mean, std (ddof=1), n (complete runs with the metric), n_failed,
    n_incomplete, n_not_applicable, seeds. Groups without a complete run still appear (their cell is marked,
    not dropped)."""
    import pandas as pd

    keys = list(keys)
    rows = []
    groups = df.groupby(keys, sort=False, dropna=False) if keys else [((), df)]
    for values, g in groups:
        values = values if isinstance(values, tuple) else (values,)
        ok = g[g["status"] == "complete"]
        vals = ok[metric] if metric in ok else pd.Series(dtype=float)
        mean, std, n = stats.mean_std(vals)
        rows.append({**dict(zip(keys, values)), "metric": metric, "mean": mean, "std": std, "n": n,
                     "n_failed": int((g["status"] == "failed").sum()),
                     "n_incomplete": int((g["status"] == "incomplete").sum()),
                     "n_not_applicable": int((g["status"] == "not_applicable").sum()),
                     "seeds": ",".join(str(int(s)) for s in sorted(ok["seed"].dropna().unique()))})
    out = pd.DataFrame(rows)
    return sort_frame(out, keys) if keys and not out.empty else out


def _natural(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def sort_frame(df, keys: Sequence[str]):
    return df.sort_values(list(keys), key=lambda s: s.map(_natural)).reset_index(drop=True)


def _missing(x) -> bool:
    return x is None or str(x) in ("nan", "<NA>", "NaT")


def fmt(x, digits: int = 4) -> str:
    """Fixed decimals for floats ('—' for missing), tiny non-zero values in general format."""
    if _missing(x):
        return "—"
    if not isinstance(x, float):
        return str(x)
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.{digits}g}"
    return f"{x:.{digits}f}"


def fmt_p(p) -> str:
    if _missing(p):
        return "—"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def cell(row, digits: int = 4) -> str:
    """'0.8123 ± 0.0131 (n=3)', with failures/incomplete noted; '✗ 2 failed' when nothing completed; 'n/a'
    for a cell the sweep marked not applicable (its reason goes in a footnote, see not_applicable_notes)."""
    bad = []
    if row["n_failed"]:
        bad.append(f"{row['n_failed']} failed")
    if row["n_incomplete"]:
        bad.append(f"{row['n_incomplete']} incomplete")
    if row["n"] and row["n_not_applicable"]:  # ran and marked impossible: contradictory, so flagged
        bad.append(f"{row['n_not_applicable']} n/a")
    if row["n"] == 0:
        return f"✗ {', '.join(bad)}" if bad else "n/a" if row["n_not_applicable"] else "— missing"
    s = fmt(row["mean"], digits) + (f" ± {fmt(row['std'], digits)}" if not math.isnan(row["std"]) else "")
    return s + f" (n={row['n']}{'; ' + ', '.join(bad) if bad else ''})" + (" ⚠" if bad else "")


def pivot_cells(agg, rows: Sequence[str], cols: Sequence[str], digits: int = 4) -> tuple[list[str], list[list[str]]]:
    """Rows × cols grid of cells; combinations never run are '— missing' (the factorial is the product of
    the row tuples and column tuples seen)."""
    row_tuples = _unique(agg, rows)
    col_tuples = _unique(agg, cols)
    index = {tuple(r[k] for k in list(rows) + list(cols)): r for r in agg.to_dict("records")}
    header = [" / ".join(rows) or "condition"] + ([group_label(c, cols) for c in col_tuples] if cols
                                                   else [str(agg["metric"].iloc[0]) if len(agg) else "value"])
    body = []
    for rt in row_tuples:
        line = [group_label(rt, rows)]
        for ct in col_tuples:
            r = index.get(tuple(rt) + tuple(ct))
            line.append(cell(r, digits) if r is not None else "— missing")
        body.append(line)
    return header, body


def not_applicable_notes(df, keys: Sequence[str]) -> list[str]:
    """Footnote lines for the 'n/a' cells: each reason once, with the cells it covers."""
    na = df[df["status"] == "not_applicable"]
    cells: dict[str, list[str]] = {}
    for r in na.to_dict("records"):
        label = group_label(tuple(r[k] for k in keys), keys)
        labels = cells.setdefault(r["error"] or "no reason recorded", [])
        if label not in labels:
            labels.append(label)
    return [f"n/a (not applicable, not run): {', '.join(labels)} — {reason}" for reason, labels in cells.items()]


def _unique(agg, keys) -> list[tuple]:
    if not keys:
        return [()]
    seen = []
    for t in itertools.chain(agg[list(keys)].itertuples(index=False, name=None)):
        if t not in seen:
            seen.append(t)
    return sorted(seen, key=lambda t: [_natural(v) for v in t])


def markdown_table(header: Sequence[str], body: Sequence[Sequence]) -> str:
    def esc(v):
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in body]
    return "\n".join(lines)


def frame_markdown(df, digits: int = 4) -> str:
    return markdown_table(list(df.columns), [[fmt(v, digits) if isinstance(v, float) else v for v in row]
                                             for row in df.itertuples(index=False, name=None)])
