"""The report's analyses over the runs table: tests against a baseline, convergence, Spearman, rank shift.

Each returns a pandas DataFrame (written as CSV and rendered into report.md) so every number in the
Markdown is also machine-readable. Anything that sets groups against each other (a test, a ranking, a
correlation over group means) runs inside one test set (strata()): CVC-ClinicDB Dice is never tested
against, ranked with or correlated across Kvasir-SEG Dice.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from medtransfer.errors import ConfigError
from medtransfer.report import stats
from medtransfer.report.tables import TEST_SET_KEYS, group_label, sort_frame
from medtransfer.runs import PER_CASE_CSV


def parse_baseline(text: str | None) -> dict | str | None:
    """'pretrain=scratch,encoder=r50' → dict; 'best' → 'best'; None/'none' → None."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    if text.strip().lower() == "best":
        return "best"
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise ConfigError(f"--baseline {text!r}: expected KEY=VALUE[,KEY=VALUE] or 'best'")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _groups(df, keys):
    ok = df[df["status"] == "complete"]
    if not keys:
        return {(): ok}
    return {(k if isinstance(k, tuple) else (k,)): g for k, g in ok.groupby(list(keys), sort=False)}


def strata(df, keys: Sequence[str]) -> list[tuple[dict, object]]:
    """(test set, its runs) for the test-set keys among `keys`; one stratum ({}, df) when there are none."""
    ts = [k for k in keys if k in TEST_SET_KEYS]
    if not ts:
        return [({}, df)]
    return [(dict(zip(ts, v if isinstance(v, tuple) else (v,))), sub) for v, sub in df.groupby(ts, sort=True)]


def stratum_label(stratum: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in stratum.items())


def per_image_dice(df, keys, column: str = "dice") -> dict[tuple, dict]:
    """group → {image id: mean over the group's seeds of the per-image value} from test_per_image.csv.

    Averaging over seeds first makes each image one paired observation (seeds may use different splits,
    so an id present in only some seeds is averaged over those)."""
    import pandas as pd

    out = {}
    for g, sub in _groups(df, keys).items():
        frames = []
        for run_dir in sub["run_dir"]:
            p = Path(run_dir) / PER_CASE_CSV
            if p.is_file():
                f = pd.read_csv(p, dtype={"id": str})
                if "id" in f and column in f:
                    frames.append(f[["id", column]])
        if frames:
            out[g] = pd.concat(frames).groupby("id")[column].mean().to_dict()
    return out


def tests_vs_baseline(df, keys: Sequence[str], metric: str, baseline, test: str = "welch") -> tuple:
    """t-test over seeds (stats.t_test: welch or student) + paired Wilcoxon (over images) of every group against
    its baseline, always inside the group's test set.

    A dict baseline replaces only its own keys: with rows encoder,pretrain and baseline pretrain=scratch,
    r50/imagenet is compared with r50/scratch (paper 004: each source against the same architecture from
    scratch); it may not name a test-set key (that would compare across test sets). 'best' compares every
    group with the best-mean group of its own test set (paper 004 Fig. 2's bolded best). A baseline cell the
    sweep marked not applicable is labelled '(n/a)' and tested against nothing. Returns (frame, note).
    """
    import pandas as pd

    keys = list(keys)
    groups = _groups(df, keys)
    higher = stats.higher_is_better(metric)
    ts = [i for i, k in enumerate(keys) if k in TEST_SET_KEYS]
    if baseline is None or not groups:
        return pd.DataFrame(), "no baseline chosen (--baseline KEY=VALUE or best)"
    if baseline == "best":
        means = {g: stats.mean_std(sub[metric])[0] for g, sub in groups.items() if metric in sub}
        means = {g: m for g, m in means.items() if not math.isnan(m)}
        if not means:
            return pd.DataFrame(), f"no complete run has {metric}"
        best: dict[tuple, tuple] = {}
        for g in sorted(means, key=means.get, reverse=higher):
            best.setdefault(tuple(g[i] for i in ts), g)
        target = {g: best.get(tuple(g[i] for i in ts), g) for g in groups}
        note = (f"baseline: the best group by mean {metric} within each test set "
                f"({'; '.join(group_label(b, keys) for b in best.values())})")
    else:
        unknown = sorted(set(baseline) - set(keys))
        if unknown:
            raise ConfigError(f"--baseline key(s) {', '.join(unknown)} are not table keys ({', '.join(keys)}); "
                              "add them to --rows/--cols")
        crossing = [k for k in baseline if k in TEST_SET_KEYS]
        if crossing:
            raise ConfigError(f"--baseline {', '.join(crossing)}=...: would compare runs scored on different test "
                              f"sets; baselines are matched within each {', '.join(crossing)}")
        target = {g: tuple(baseline.get(k, v) for k, v in zip(keys, g)) for g in groups}
        note = "baseline: " + ", ".join(f"{k}={v}" for k, v in baseline.items()) + " (other keys matched)"
    na = df[df["status"] == "not_applicable"]
    na = set(na[keys].itertuples(index=False, name=None)) if keys else set()
    images = per_image_dice(df, keys)
    rows = []
    for g, sub in groups.items():
        b = target[g]
        if b == g:
            continue
        base = groups.get(b)
        w = stats.t_test(sub.get(metric, []), base[metric] if base is not None else [], test)
        pw = stats.paired_wilcoxon(images.get(g, {}), images.get(b, {}))
        missing = "" if base is not None else " (n/a)" if b in na else " (none)"
        rows.append({**dict(zip(keys, g)), "baseline": group_label(b, keys) + missing, "metric": metric,
                     "test": test, "n": w["n_a"], "mean": w["mean_a"], "n_base": w["n_b"],
                     "mean_base": w["mean_b"], "diff": w["diff"], "t": w["t"], "df": w["df"], "p": w["p"],
                     "wilcoxon_n_images": pw["n"], "wilcoxon_median_diff": pw["median_diff"],
                     "wilcoxon_p": pw["p"]})
    out = pd.DataFrame(rows)
    if out.empty:
        return out, note
    out.insert(out.columns.get_loc("p") + 1, "p_holm", stats.holm(out["p"].tolist()))
    out.insert(out.columns.get_loc("p_holm") + 1, "sig", [stats.stars(p) for p in out["p"]])
    return sort_frame(out, keys), note


def convergence_table(df, keys: Sequence[str]):
    """Per group: mean ± std of the recomputed convergence epoch and of the epochs trained, n."""
    import pandas as pd

    rows = []
    for g, sub in _groups(df, keys).items():
        c_mean, c_std, n = stats.mean_std(sub["epochs_to_converge"])
        e_mean, e_std, _ = stats.mean_std(sub["epochs"]) if "epochs" in sub else (float("nan"),) * 3
        rows.append({**dict(zip(keys, g)), "n": n, "epochs_to_converge_mean": c_mean,
                     "epochs_to_converge_std": c_std, "epochs_trained_mean": e_mean, "epochs_trained_std": e_std})
    out = pd.DataFrame(rows)
    return sort_frame(out, keys) if keys and not out.empty else out


def read_scores(path: str | Path, score_column: str | None = None) -> tuple[list[str], str, list[dict]]:
    """A user CSV mapping condition → score: key columns (condition keys) + one score column.

    e.g. `decoder,score` with the decoders' Cityscapes mIoU (paper 000 Table 1). The score column is
    --score-column, else 'score', else the last column."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--scores {path}: no such file")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ConfigError(f"--scores {path}: empty")
    cols = list(rows[0])
    col = score_column or ("score" if "score" in cols else cols[-1])
    if col not in cols:
        raise ConfigError(f"--scores {path}: no column {col!r} (columns: {', '.join(cols)})")
    return [c for c in cols if c != col], col, rows


def _varying_test_sets(df) -> list[str]:
    return [k for k in TEST_SET_KEYS if k in df.columns and df[k].nunique() > 1]


def score_correlation(df, scores_path, metric: str, score_column: str | None = None):
    """Spearman ρ between a user-supplied per-condition score and the mean transfer metric per condition,
    one ρ per test set (a scores CSV without a dataset column applies to every dataset).

    Returns (table with spearman_rho / spearman_p per row, [{test-set keys..., rho, p, n}], score column)."""
    import pandas as pd

    keys, col, rows = read_scores(scores_path, score_column)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise ConfigError(f"--scores: column(s) {', '.join(missing)} are not condition keys")
    ts = [k for k in TEST_SET_KEYS if k in keys] + [k for k in _varying_test_sets(df) if k not in keys]
    extra = [k for k in ts if k not in keys]
    levels = sorted(df[extra].drop_duplicates().itertuples(index=False, name=None)) if extra else [()]
    groups = _groups(df, keys + extra)
    table = []
    for level in levels:
        for r in rows:
            g = tuple(str(r[k]).strip() for k in keys) + tuple(level)
            sub = groups.get(g)
            mean, std, n = (stats.mean_std(sub[metric]) if sub is not None and metric in sub
                            else (float("nan"), float("nan"), 0))
            table.append({**dict(zip(keys + extra, g)), col: float(r[col]) if r[col] not in ("", None)
                          else float("nan"), metric: mean, "std": std, "n": n})
    out = pd.DataFrame(table)
    rhos = []
    for stratum, sub in strata(out, ts):
        rho = stats.spearman(sub[col], sub[metric])
        out.loc[sub.index, "spearman_rho"], out.loc[sub.index, "spearman_p"] = rho["rho"], rho["p"]
        rhos.append({**stratum, **rho})
    return out, rhos, col


def metric_correlation(df, keys, metric_a: str, metric_b: str) -> list[dict]:
    """Spearman ρ between two metrics' group means (e.g. dice_per_image vs hd95 across conditions), one per
    test set: [{test-set keys..., rho, p, n}]."""
    out = []
    for stratum, part in strata(df, keys):
        a, b = [], []
        for sub in _groups(part, keys).values():
            a.append(stats.mean_std(sub[metric_a])[0] if metric_a in sub else float("nan"))
            b.append(stats.mean_std(sub[metric_b])[0] if metric_b in sub else float("nan"))
        out.append({**stratum, **stats.spearman(a, b)})
    return out


def eval_sets(df) -> list[str]:
    names = []
    for c in df.columns:
        if c.startswith("eval."):
            name = c[5:].rsplit(".", 1)[0]
            if name not in names:
                names.append(name)
    return sorted(names)


def ood_ranks(df, keys: Sequence[str], metric: str, eval_name: str):
    """In-distribution (test) vs eval-set means per group, their ranks and the rank shift (paper 002).

    Ranked within each training dataset: the in-distribution ranks compare test sets only of one dataset.
    Returns (table, [{test-set keys..., rho, p, n}])."""
    import pandas as pd

    col = f"eval.{eval_name}.{metric}"
    if col not in df.columns:
        return pd.DataFrame(), []
    higher = stats.higher_is_better(metric)
    parts, rhos = [], []
    for stratum, part in strata(df, keys):
        rows = [{**dict(zip(keys, g)), "id_mean": stats.mean_std(sub[metric])[0],
                 "ood_mean": stats.mean_std(sub[col])[0], "n_ood": int(sub[col].notna().sum())}
                for g, sub in _groups(part, keys).items()]
        if not rows:
            continue
        out = pd.DataFrame(rows)
        shifts = stats.rank_shift(out["id_mean"].tolist(), out["ood_mean"].tolist(), higher)
        parts.append(pd.concat([out, pd.DataFrame(shifts).astype("Int64")], axis=1))
        rhos.append({**stratum, **stats.spearman(out["id_mean"], out["ood_mean"])})
    if not parts:
        return pd.DataFrame(), rhos
    out = pd.concat(parts, ignore_index=True)
    order = [k for k in keys if k in TEST_SET_KEYS] + ["id_rank"]
    return out.sort_values(order).reset_index(drop=True), rhos
