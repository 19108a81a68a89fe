"""Report statistics against hand-worked values (formulas written out here, not SciPy called twice)."""

import math

import numpy as np
import pytest

from medtransfer.report import stats
from medtransfer.runs import convergence_epoch


def test_welch_matches_the_formula_worked_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    # means 2.5 and 4; sample variances 5/3 and 4; s²/n: 5/12 and 4/3 (sum 1.75)
    va, vb = (5 / 3) / 4, 4 / 3
    t = (2.5 - 4.0) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    res = stats.welch(a, b)
    assert res["t"] == pytest.approx(t) == pytest.approx(-1.5 / math.sqrt(1.75))
    assert res["df"] == pytest.approx(df) == pytest.approx(3.0625 / (0.0578704 + 0.8888889), abs=1e-5)
    assert res["diff"] == pytest.approx(-1.5)
    assert (res["n_a"], res["n_b"]) == (4, 3)
    # two-sided p from the t distribution with the Welch df (independent of ttest_ind)
    from scipy.stats import t as tdist

    assert res["p"] == pytest.approx(2 * tdist.sf(abs(t), df))
    assert 0.3 < res["p"] < 0.4


def test_welch_is_not_the_pooled_test():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    pooled_sp2 = (3 * 5 / 3 + 2 * 4) / 5
    t_pooled = -1.5 / math.sqrt(pooled_sp2 * (1 / 4 + 1 / 3))
    assert stats.welch(a, b)["t"] != pytest.approx(t_pooled)


def test_welch_undefined_cases_give_nan_not_errors():
    assert math.isnan(stats.welch([0.5], [0.1, 0.2])["p"])
    assert math.isnan(stats.welch([0.5, 0.5], [0.1, 0.1])["p"])
    res = stats.welch([0.5, float("nan"), 0.7], [0.1, 0.2, 0.3])
    assert res["n_a"] == 2 and res["mean_a"] == pytest.approx(0.6)


def test_spearman_reproduces_paper_000_decoder_case():
    # four decoders, one adjacent swap: Σd² = 2 → ρ = 1 - 6·2/(4·15) = 0.8; t = ρ√(2/(1-ρ²)),
    # and for 2 degrees of freedom P(|T| > t) = 1 - t/√(2 + t²) = 0.2: "ρ = 0.800 at p = 0.200"
    pretrain_score = [70.0, 72.0, 74.0, 75.0]
    transfer = [0.80, 0.82, 0.81, 0.85]
    res = stats.spearman(pretrain_score, transfer)
    t = 0.8 * math.sqrt(2 / (1 - 0.64))
    assert res["rho"] == pytest.approx(0.8)
    assert res["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t)) == pytest.approx(0.2)
    assert res["n"] == 4


def test_spearman_perfect_and_reversed_and_nan_pairs():
    assert stats.spearman([1, 2, 3], [10, 20, 30])["rho"] == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1])["rho"] == pytest.approx(-1.0)
    res = stats.spearman([1, 2, float("nan"), 4], [1, 2, 3, 4])
    assert res["n"] == 3
    assert math.isnan(stats.spearman([1, 1, 1], [1, 2, 3])["rho"])


def test_ranks_and_rank_shift_on_a_designed_case():
    # model:          A     B     C     D
    id_dice = [0.90, 0.85, 0.80, 0.70]  # ranks 1 2 3 4
    ood_dice = [0.60, 0.70, 0.65, 0.50]  # ranks 3 1 2 4
    rows = stats.rank_shift(id_dice, ood_dice)
    assert [r["id_rank"] for r in rows] == [1, 2, 3, 4]
    assert [r["ood_rank"] for r in rows] == [3, 1, 2, 4]
    assert [r["rank_shift"] for r in rows] == [-2, 1, 1, 0]  # A drops two places, B and C climb one


def test_ranks_lower_is_better_and_ties():
    assert stats.ranks([5.0, 2.0, 9.0], higher_better=False) == [2, 1, 3]
    assert stats.ranks([0.9, 0.8, 0.8, 0.7]) == [1, 2, 2, 4]
    assert not stats.higher_is_better("hd95") and stats.higher_is_better("dice_per_image")
    assert not stats.higher_is_better("eval.cvc-all.assd")


def test_convergence_epoch_on_a_designed_history():
    history = [{"epoch": 0, "dice_per_image": 0.50}, {"epoch": 1, "dice_per_image": 0.79},
               {"epoch": 2, "dice_per_image": 0.797}, {"epoch": 3, "dice_per_image": 0.80},
               {"epoch": 4, "dice_per_image": 0.75}]
    # best 0.80; within 0.5 %: ≥ 0.796 → epoch 2 (0.79 is 1.25 % short)
    assert convergence_epoch(history) == (2, 3)
    assert convergence_epoch(history, tol=0.02) == (1, 2)
    assert convergence_epoch(history, tol=0.0) == (3, 4)


def test_convergence_uses_logged_epochs_and_skips_missing():
    history = [{"epoch": 1, "dice_per_image": 0.4}, {"epoch": 3, "dice_per_image": None},
               {"epoch": 5, "dice_per_image": 0.9}]
    assert convergence_epoch(history) == (5, 6)
    assert convergence_epoch([]) == (None, None)


def test_paired_wilcoxon_pairs_by_id():
    a = {f"i{k}": 0.5 + 0.01 * k for k in range(10)}
    b = {f"i{k}": 0.5 + 0.01 * k - 0.05 for k in range(10)}
    b["extra"] = 0.1  # not in a: ignored
    res = stats.paired_wilcoxon(a, b)
    assert res["n"] == 10 and res["median_diff"] == pytest.approx(0.05)
    # all ten differences positive: exact two-sided p = 2 / 2^10
    assert res["p"] == pytest.approx(2 / 1024)
    assert math.isnan(stats.paired_wilcoxon(a, dict(a))["p"])  # identical: nothing to test


def test_holm_adjustment_by_hand():
    # sorted p: 0.01, 0.02, 0.04 → ×3, ×2, ×1 = 0.03, 0.04, 0.04 (monotone)
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    out = stats.holm([0.5, float("nan"), 0.6])
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1])


def test_mean_std_uses_sample_std():
    m, s, n = stats.mean_std([0.7, 0.8, 0.9, float("nan")])
    assert (m, n) == (pytest.approx(0.8), 3)
    assert s == pytest.approx(np.sqrt(((0.1**2) * 2) / 2))
    assert math.isnan(stats.mean_std([0.7])[1])


def test_student_is_the_pooled_variance_test_and_matches_scipy():
    from scipy.stats import t as tdist
    from scipy.stats import ttest_ind

    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    sp2 = (3 * 5 / 3 + 2 * 4) / 5  # pooled variance: ((n_a-1)s_a² + (n_b-1)s_b²) / (n_a+n_b-2) = 2.6
    t = -1.5 / math.sqrt(sp2 * (1 / 4 + 1 / 3))
    res = stats.student(a, b)
    assert res["t"] == pytest.approx(t) and res["df"] == 5
    assert res["p"] == pytest.approx(2 * tdist.sf(abs(t), 5))
    ref = ttest_ind(a, b, equal_var=True)
    assert res["t"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)
    assert res["p"] != pytest.approx(stats.welch(a, b)["p"])
    assert stats.t_test(a, b, "student") == res and stats.t_test(a, b, "welch") == stats.welch(a, b)
    with pytest.raises(ValueError, match="welch"):
        stats.t_test(a, b, "paired")
