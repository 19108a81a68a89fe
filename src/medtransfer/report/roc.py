"""ROC curves of classification runs, from each run's per-case test probabilities (test_per_image.csv, written by
the classification task: `prob/<label>` and `target/<label>` per case, target -1 = ignored for that label;
multi-class: `prob/<class>` and one `target` column holding the class name, scored one-vs-rest).

What the report draws (plots.roc_curves): one figure per condition; one panel per label (binary: one;
multi-label: each label; multi-class: each class against the rest); in a panel one curve per seed, its AUROC
in the legend, the mean ± std over seeds in the title. Why per-seed curves and not one mean curve: averaging
ROC curves needs an interpolation choice (vertical or threshold averaging) whose area is not the mean of the
seeds' AUROCs, while the per-seed curves show the spread and each annotated number is exactly that seed's
test AUROC (the run's `auroc/<label>`, sklearn's roc_auc_score on the same cases).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medtransfer.report.collect import Run, condition_value

NAN = float("nan")


def roc_curve(scores, positive) -> tuple[np.ndarray, np.ndarray, float]:
    """(false positive rates, true positive rates, area) of the empirical ROC curve: one point per distinct
    score (tied cases move together: a diagonal step), from (0, 0) to (1, 1); the trapezoid area equals
    sklearn.metrics.roc_auc_score. Empty arrays and NaN when the cases hold no positive or no negative."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(positive, dtype=bool)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.array([]), np.array([]), NAN
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # the last case of each distinct score
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def read_cases(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """label → (scores, positive) from a per-case CSV, ignored cases (target -1, empty) left out."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    labels = [c[len("prob/"):] for c in rows[0] if c.startswith("prob/")]
    out = {}
    for label in labels:
        if f"target/{label}" in rows[0]:
            pairs = [(r[f"prob/{label}"], r[f"target/{label}"]) for r in rows]
            pairs = [(float(p), int(float(t))) for p, t in pairs if p not in ("", None) and t not in ("", None)]
            pairs = [(p, t) for p, t in pairs if t in (0, 1)]
        elif "target" in rows[0]:  # multi-class: this class against the rest
            pairs = [(float(r[f"prob/{label}"]), int(r["target"] == label)) for r in rows if r["target"]]
        else:
            continue
        out[label] = (np.array([p for p, _ in pairs], dtype=float), np.array([t for _, t in pairs], dtype=bool))
    return out


def cases_by_group(runs: Sequence[Run], keys: Sequence[str]) -> dict[tuple, list[tuple[int | None, Path, dict]]]:
    """group (values of `keys`) → [(seed, per-case CSV, label → (scores, positive))] of the complete
    classification runs that have a per-case CSV, seeds in order."""
    groups: dict[tuple, list] = {}
    for r in runs:
        if r.status != "complete" or r.task != "classification" or r.per_image_csv is None:
            continue
        cases = read_cases(r.per_image_csv)
        if cases:
            g = tuple(condition_value(r.condition.get(k)) for k in keys)
            groups.setdefault(g, []).append((r.seed, r.per_image_csv, cases))
    return {g: sorted(v, key=lambda x: (x[0] is None, x[0] or 0)) for g, v in sorted(groups.items())}
