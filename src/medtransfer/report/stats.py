"""The statistics the five studies report, as small pure functions over numbers (SciPy does the maths).

- two-sample t-test of a condition against a baseline over seeds: Welch's (the report's default, because the
  seed variances of two conditions need not match) or Student's (equal variances: what paper 004's
  "independent two-sample t-test", 10 runs each, means when a paper does not say otherwise);
- Wilcoxon signed-rank on per-image Dice paired by image id (an extra: uses the test images, not only seeds);
- Spearman ρ between two score lists (paper 000: pretraining score vs transfer score, ρ = 0.8 at p = 0.2
  with four decoders), and the in-distribution → out-of-distribution rank shift (paper 002);
- Holm step-down adjustment, because a report tests many conditions against one baseline at once.

Every function drops NaNs, says how many values it used, and returns NaN (never raises) when a test is
undefined (n < 2, zero variance): a report of a half-finished sweep must still be written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

NAN = float("nan")

# Metrics where smaller is better (ranking direction, "best" baseline); matched on the last dotted part.
LOWER_IS_BETTER = {"hd95", "assd", "loss", "fp", "fn", "epochs", "epochs_to_converge", "converge_epoch",
                   "best_epoch", "wall_time_s"}


def higher_is_better(metric: str) -> bool:
    return metric.rsplit(".", 1)[-1] not in LOWER_IS_BETTER


def _clean(values) -> np.ndarray:
    a = np.asarray(list(values), dtype=float).ravel()
    return a[~np.isnan(a)]


def mean_std(values) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n); std is NaN for a single value (one seed says nothing about spread)."""
    a = _clean(values)
    if a.size == 0:
        return NAN, NAN, 0
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else NAN, int(a.size)


T_TESTS = ("welch", "student")


def welch(a, b) -> dict:
    """Welch's t-test of sample a against sample b (scipy.stats.ttest_ind, equal_var=False), two-sided.

    Returns n_a, n_b, mean_a, mean_b, diff (= mean_a - mean_b), t, df (Welch–Satterthwaite), p.
    """
    return _ttest(a, b, equal_var=False)


def student(a, b) -> dict:
    """Student's t-test with pooled variance (ttest_ind, equal_var=True), two-sided; df = n_a + n_b - 2.
    Same keys as welch()."""
    return _ttest(a, b, equal_var=True)


def t_test(a, b, kind: str = "welch") -> dict:
    """welch() or student() by name (the report's --test)."""
    if kind not in T_TESTS:
        raise ValueError(f"unknown t-test {kind!r}; valid choices: {', '.join(T_TESTS)}")
    return _ttest(a, b, equal_var=kind == "student")


def _ttest(a, b, equal_var: bool) -> dict:
    from scipy import stats

    x, y = _clean(a), _clean(b)
    out = {"n_a": int(x.size), "n_b": int(y.size), "mean_a": float(x.mean()) if x.size else NAN,
           "mean_b": float(y.mean()) if y.size else NAN, "t": NAN, "df": NAN, "p": NAN}
    out["diff"] = out["mean_a"] - out["mean_b"]
    if x.size < 2 or y.size < 2:
        return out
    if x.var(ddof=1) == 0 and y.var(ddof=1) == 0:
        return out  # no spread at all: the t statistic is undefined (scipy would warn and give NaN)
    res = stats.ttest_ind(x, y, equal_var=equal_var)
    out.update(t=float(res.statistic), p=float(res.pvalue), df=float(getattr(res, "df", NAN)))
    return out


def paired_wilcoxon(a: Mapping, b: Mapping) -> dict:
    """Wilcoxon signed-rank test on values paired by key (image id): a[k] vs b[k] for the common keys.

    Returns n (pairs used), median_diff (median of a - b), statistic, p. NaN when fewer than 2 pairs or when
    every difference is zero (the test has nothing to rank).
    """
    from scipy import stats

    keys = [k for k in a if k in b and not (_isnan(a[k]) or _isnan(b[k]))]
    x = np.array([float(a[k]) for k in keys])
    y = np.array([float(b[k]) for k in keys])
    out = {"n": len(keys), "median_diff": float(np.median(x - y)) if keys else NAN, "statistic": NAN, "p": NAN}
    if len(keys) < 2 or np.all(x - y == 0):
        return out
    res = stats.wilcoxon(x, y)
    out.update(statistic=float(res.statistic), p=float(res.pvalue))
    return out


def _isnan(v) -> bool:
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def spearman(x: Sequence, y: Sequence) -> dict:
    """Spearman rank correlation (scipy.stats.spearmanr) over the pairs where both values are present.

    Returns rho, p, n. With n = 3 and a perfect ranking SciPy gives p = 0, which is what paper 000 reports
    ("ρ = 1 at p = 0"); an exact permutation p would be 1/3 — small n makes these p-values mostly decorative.
    """
    from scipy import stats

    pairs = [(float(a), float(b)) for a, b in zip(x, y) if not (_isnan(a) or _isnan(b))]
    out = {"rho": NAN, "p": NAN, "n": len(pairs)}
    if len(pairs) < 2:
        return out
    xs, ys = zip(*pairs)
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return out  # a constant list has no ranking
    res = stats.spearmanr(xs, ys)
    out.update(rho=float(res.statistic), p=float(res.pvalue))
    return out


def ranks(values: Sequence, higher_better: bool = True) -> list[float]:
    """Competition ranks, 1 = best (ties share the better rank: 1, 2, 2, 4); NaN stays NaN."""
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=float)
    out = np.full(v.shape, NAN)
    ok = ~np.isnan(v)
    if ok.any():
        out[ok] = rankdata(-v[ok] if higher_better else v[ok], method="min")
    return out.tolist()


def rank_shift(id_scores: Sequence, ood_scores: Sequence, higher_better: bool = True) -> list[dict]:
    """Per model: in-distribution rank, out-of-distribution rank and shift = id_rank - ood_rank.

    Paper 002's reading: a positive shift means the model climbs when tested on the unseen distribution
    (e.g. R50 MoCo v3), a negative one that it drops (most ViT-B models).
    """
    r_id, r_ood = ranks(id_scores, higher_better), ranks(ood_scores, higher_better)
    return [{"id_rank": a, "ood_rank": b, "rank_shift": a - b} for a, b in zip(r_id, r_ood)]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaNs are ignored and kept."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, NAN)
    idx = np.where(~np.isnan(p))[0]
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def stars(p: float) -> str:
    """Conventional markers: *** p<0.001, ** p<0.01, * p<0.05."""
    if _isnan(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""
