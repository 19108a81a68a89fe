"""ClsMetrics: hand-worked values per label kind, scikit-learn agreement, the degenerate-label rule that
torchmetrics gets wrong, ignored (-1) entries, per-case rows, empty state, input checks, a DDP sync."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    recall_score,
    roc_auc_score,
)
from torchmetrics.functional.classification import multilabel_auroc

from medtransfer.errors import ConfigError
from medtransfer.metrics import CLS_METRIC_DOCS, METRIC_DOCS, ClsMetrics

THRESHOLD_KEYS = ("accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity")


def _compute(m: ClsMetrics) -> dict:
    with warnings.catch_warnings():  # torchmetrics warns when compute() runs before any update()
        warnings.simplefilter("ignore", UserWarning)
        return m.compute()


def _keys(labels):
    return {"auroc", *(f"auroc/{x}" for x in labels), *THRESHOLD_KEYS, "n_cases", "n_labels_auroc"}


def test_binary_hand_worked():
    # positives score 0.9, 0.5, 0.3; negatives 0.5, 0.2, 0.7. At prob >= 0.5 (inclusive: 0.5 is positive):
    # TP = 2 (0.9, 0.5), FN = 1 (0.3), FP = 2 (0.5, 0.7), TN = 1 (0.2).
    # AUROC, pairs won out of 3*3 = 9: 0.9 beats all 3; 0.5 ties 0.5 (1/2), beats 0.2 -> 1.5; 0.3 beats 0.2
    # -> 1; total 5.5/9 = 11/18.
    m = ClsMetrics("binary", ["pneumonia"])
    m.update(torch.tensor([[0.9], [0.5], [0.3]]), torch.tensor([[1], [1], [1]]), ["p1", "p2", "p3"])
    m.update(torch.tensor([0.5, 0.2, 0.7]), torch.tensor([0, 0, 0]), ["n1", "n2", "n3"])  # (N,) also taken
    out = _compute(m)
    assert set(out) == _keys(["pneumonia"])
    assert out["auroc"] == pytest.approx(11 / 18, abs=1e-12)
    assert out["auroc/pneumonia"] == pytest.approx(11 / 18, abs=1e-12)
    assert out["sensitivity"] == pytest.approx(2 / 3)  # TP/(TP+FN) = 2/3
    assert out["specificity"] == pytest.approx(1 / 3)  # TN/(TN+FP) = 1/3
    assert out["accuracy"] == pytest.approx(3 / 6)  # (TP+TN)/6
    assert out["balanced_accuracy"] == pytest.approx(0.5)  # (2/3 + 1/3)/2
    assert out["f1"] == pytest.approx(4 / 7)  # 2TP/(2TP+FP+FN) = 4/(4+2+1)
    assert out["n_cases"] == 6 and out["n_labels_auroc"] == 1


def test_multilabel_hand_worked_with_ignored_entries():
    # label a: targets 1,0,1,-1,0; probs .8,.3,.4,.9,.6 -> case 4 ignored; preds on the rest 1,0,0,1:
    #   TP=1 (.8) FN=1 (.4) FP=1 (.6) TN=1 (.3): sens .5, spec .5, acc .5, bal .5, f1 2/(2+1+1) = .5;
    #   AUROC: pos {.8,.4} vs neg {.3,.6}: .8 wins 2, .4 wins 1 -> 3/4 (the ignored .9 would change it).
    # label b: targets 0,0,-1,1,1; probs .1,.95,.2,.9,.5 -> case 3 ignored; preds 0,1,1,1:
    #   TP=2 FN=0 FP=1 (.95) TN=1 (.1): sens 1, spec .5, acc 3/4, bal .75, f1 4/(4+1) = .8;
    #   AUROC: pos {.9,.5} vs neg {.1,.95}: .9 wins 1, .5 wins 1 -> 2/4.
    probs = torch.tensor([[0.8, 0.1], [0.3, 0.95], [0.4, 0.2], [0.9, 0.9], [0.6, 0.5]])
    targets = torch.tensor([[1, 0], [0, 0], [1, -1], [-1, 1], [0, 1]])
    m = ClsMetrics("multilabel", ["a", "b"])
    m.update(probs, targets, [f"c{i}" for i in range(5)])
    out = _compute(m)
    assert set(out) == _keys(["a", "b"])
    assert out["auroc/a"] == pytest.approx(0.75, abs=1e-12)
    assert out["auroc/b"] == pytest.approx(0.5, abs=1e-12)
    assert out["auroc"] == pytest.approx(0.625)
    assert out["accuracy"] == pytest.approx((0.5 + 0.75) / 2)  # mean of per-label accuracy, not subset acc
    assert out["sensitivity"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["specificity"] == pytest.approx((0.5 + 0.5) / 2)
    assert out["balanced_accuracy"] == pytest.approx((0.5 + 0.75) / 2)
    assert out["f1"] == pytest.approx((0.5 + 0.8) / 2)
    assert out["n_cases"] == 5 and out["n_labels_auroc"] == 2


def test_multiclass_hand_worked():
    # classes x, y, z; rows are softmax outputs, argmax with the first class winning a tie:
    #   c0 [.7,.2,.1] t=x pred x | c1 [.2,.5,.3] t=y pred y | c2 [.4,.4,.2] t=y pred x (tie x/y -> x)
    #   c3 [.1,.3,.6] t=z pred z | c4 [.3,.1,.6] t=x pred z.  top-1 accuracy 3/5.
    # one-vs-rest from the argmax:
    #   x: TP=1 (c0) FP=1 (c2) FN=1 (c4) TN=2 -> sens .5, spec 2/3, f1 2/4
    #   y: TP=1 (c1) FP=0      FN=1 (c2) TN=3 -> sens .5, spec 1,   f1 2/3
    #   z: TP=1 (c3) FP=1 (c4) FN=0      TN=3 -> sens 1,  spec 3/4, f1 2/3
    # AUROC one-vs-rest on each class's column:
    #   x: pos {.7,.3} vs neg {.2,.4,.1}: 3 + 2 = 5/6;  y: pos {.5,.4} vs neg {.2,.1,.3}: 6/6 = 1
    #   z: pos {.6} vs neg {.1,.3,.2,.6}: 3 + tie 1/2 = 3.5/4 = 7/8
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6], [0.3, 0.1, 0.6]])
    m = ClsMetrics("multiclass", ["x", "y", "z"])
    m.update(probs, torch.tensor([0, 1, 1, 2, 0]))
    out = _compute(m)
    assert set(out) == _keys(["x", "y", "z"])
    assert [out[f"auroc/{c}"] for c in "xyz"] == pytest.approx([5 / 6, 1.0, 7 / 8], abs=1e-12)
    assert out["auroc"] == pytest.approx(65 / 72)  # (20 + 24 + 21)/24/3
    assert out["accuracy"] == pytest.approx(3 / 5)
    assert out["sensitivity"] == pytest.approx(2 / 3)  # (.5 + .5 + 1)/3
    assert out["balanced_accuracy"] == pytest.approx(2 / 3)  # mean per-class recall = macro sensitivity
    assert out["specificity"] == pytest.approx(29 / 36)  # (2/3 + 1 + 3/4)/3
    assert out["f1"] == pytest.approx(11 / 18)  # (1/2 + 2/3 + 2/3)/3
    assert out["n_cases"] == 5 and out["n_labels_auroc"] == 3


def _sk_threshold(y: np.ndarray, pred: np.ndarray) -> dict:
    """One binary label's threshold metrics from scikit-learn."""
    sens = recall_score(y, pred, zero_division=np.nan)
    spec = recall_score(y, pred, pos_label=0, zero_division=np.nan)
    return {"accuracy": accuracy_score(y, pred), "balanced_accuracy": balanced_accuracy_score(y, pred),
            "f1": f1_score(y, pred, zero_division=np.nan), "sensitivity": sens, "specificity": spec}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_and_multilabel_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, n_labels = 257, 4
    # scores rounded to 2 decimals: many ties, between and within classes, and some exactly at 0.5
    probs = np.round(rng.random((n, n_labels)), 2)
    targets = (rng.random((n, n_labels)) < probs * 0.6 + 0.2).astype(np.int64)
    targets[rng.random((n, n_labels)) < 0.15] = -1  # CheXpert-style ignored entries
    labels = [f"l{j}" for j in range(n_labels)]
    m = ClsMetrics("multilabel", labels)
    for lo in range(0, n, 64):  # several batches
        m.update(torch.from_numpy(probs[lo:lo + 64]), torch.from_numpy(targets[lo:lo + 64]))
    out = _compute(m)
    aucs, per = [], []
    for j, name in enumerate(labels):
        kept = targets[:, j] != -1
        y, p = targets[kept, j], probs[kept, j]
        aucs.append(roc_auc_score(y, p))
        assert abs(out[f"auroc/{name}"] - aucs[-1]) < 1e-12
        per.append(_sk_threshold(y, (p >= 0.5).astype(int)))
    assert abs(out["auroc"] - np.mean(aucs)) < 1e-12 and out["n_labels_auroc"] == n_labels
    for key in THRESHOLD_KEYS:
        assert out[key] == pytest.approx(np.mean([d[key] for d in per]), abs=1e-12), key
    assert out["n_cases"] == n

    b = ClsMetrics("binary", ["pos"])  # binary: the first label alone, nothing ignored
    y, p = (targets[:, 0] == 1).astype(np.int64), probs[:, 0]
    b.update(torch.from_numpy(p).float(), torch.from_numpy(y))  # float32 input is taken exactly
    bo = _compute(b)
    p32 = torch.from_numpy(p).float().double().numpy()
    assert abs(bo["auroc"] - roc_auc_score(y, p32)) < 1e-12
    for key, value in _sk_threshold(y, (p32 >= 0.5).astype(int)).items():
        assert bo[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, n_classes = 301, 5
    logits = rng.integers(0, 3, (n, n_classes)).astype(np.float64)  # integer logits: ties in scores and argmax
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    targets = rng.integers(0, n_classes, n)
    classes = [f"k{c}" for c in range(n_classes)]
    m = ClsMetrics("multiclass", classes)
    m.update(torch.from_numpy(probs[:150]), torch.from_numpy(targets[:150]))
    m.update(torch.from_numpy(probs[150:]), torch.from_numpy(targets[150:]))
    out = _compute(m)
    aucs = [roc_auc_score(targets == c, probs[:, c]) for c in range(n_classes)]
    for c, name in enumerate(classes):
        assert abs(out[f"auroc/{name}"] - aucs[c]) < 1e-12
    assert abs(out["auroc"] - roc_auc_score(targets, probs, multi_class="ovr", average="macro")) < 1e-12
    pred = probs.argmax(axis=1)
    every = list(range(n_classes))
    assert out["accuracy"] == pytest.approx(accuracy_score(targets, pred), abs=1e-12)
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(targets, pred), abs=1e-12)
    assert out["f1"] == pytest.approx(
        f1_score(targets, pred, labels=every, average="macro", zero_division=np.nan), abs=1e-12)
    assert out["sensitivity"] == pytest.approx(
        recall_score(targets, pred, labels=every, average="macro", zero_division=np.nan), abs=1e-12)
    spec = [recall_score(targets != c, pred != c) for c in every]  # specificity = recall of "not c"
    assert out["specificity"] == pytest.approx(np.mean(spec), abs=1e-12)


def test_degenerate_label_left_out_where_torchmetrics_scores_zero():
    # label c has no positive case: no ROC curve. torchmetrics 1.9.0 scores it 0.0 and keeps it in the
    # macro mean; we leave it out, as the mean of scikit-learn's per-label values over the valid labels does.
    probs = torch.tensor([[0.9, 0.2, 0.3], [0.4, 0.8, 0.1], [0.6, 0.3, 0.7], [0.2, 0.6, 0.4], [0.7, 0.5, 0.2]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    m = ClsMetrics("multilabel", ["a", "b", "c"])
    m.update(probs, targets)
    out = _compute(m)
    valid = [roc_auc_score(targets[:, j].numpy(), probs[:, j].numpy()) for j in (0, 1)]
    assert math.isnan(out["auroc/c"]) and out["n_labels_auroc"] == 2
    assert abs(out["auroc"] - np.mean(valid)) < 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tm = multilabel_auroc(probs, targets, num_labels=3, average="macro").item()
    assert tm == pytest.approx(sum(valid) / 3, abs=1e-6)  # label c entered as 0.0
    assert abs(tm - out["auroc"]) > 0.1
    # the same rule for threshold metrics: c's sensitivity is 0/0 (no positives), left out of the mean
    sens_ab = [recall_score(targets[:, j], probs[:, j] >= 0.5) for j in (0, 1)]
    assert out["sensitivity"] == pytest.approx(np.mean(sens_ab))
    assert out["f1"] == pytest.approx(np.mean(  # c has predicted positives (0.7 >= 0.5): F1 = 0, kept
        [f1_score(targets[:, j], probs[:, j] >= 0.5) for j in (0, 1, 2)]))

    every_bad = ClsMetrics("multilabel", ["a", "b"])  # a: all positive; b: all ignored
    every_bad.update(torch.tensor([[0.3, 0.5], [0.6, 0.5]]), torch.tensor([[1, -1], [1, -1]]))
    out = _compute(every_bad)
    assert math.isnan(out["auroc"]) and out["n_labels_auroc"] == 0 and out["n_cases"] == 2
    assert out["sensitivity"] == 0.5 and math.isnan(out["specificity"])  # only label a has a sensitivity
    assert math.isnan(out["balanced_accuracy"])


def test_ignored_entries_are_left_out_per_label():
    # the ignored entries' probabilities cannot change anything; torchmetrics' ignore_index=-1 agrees
    rng = np.random.default_rng(7)
    probs = rng.random((40, 3))
    targets = rng.integers(0, 2, (40, 3))
    targets[::3, 1] = -1
    targets[5:9, 2] = -1
    m1, m2 = ClsMetrics("multilabel", list("abc")), ClsMetrics("multilabel", list("abc"))
    m1.update(torch.from_numpy(probs), torch.from_numpy(targets))
    flipped = np.where(targets == -1, 1 - probs, probs)
    m2.update(torch.from_numpy(flipped), torch.from_numpy(targets))
    o1, o2 = _compute(m1), _compute(m2)
    assert o1 == o2
    tm = multilabel_auroc(torch.from_numpy(probs), torch.from_numpy(targets), num_labels=3, average=None,
                          ignore_index=-1)
    assert [o1[f"auroc/{x}"] for x in "abc"] == pytest.approx(tm.tolist(), abs=1e-6)
    with pytest.raises(ValueError, match="values in"):  # -1 means nothing in a binary task
        ClsMetrics("binary", ["a"]).update(torch.tensor([0.2, 0.4]), torch.tensor([1, -1]))


def test_per_case_rows():
    ml = ClsMetrics("multilabel", ["effusion", "edema"])
    ml.update(torch.tensor([[0.25, 0.5]]), torch.tensor([[1, -1]]), ["img1"])
    ml.update(torch.tensor([[0.75, 0.125]]), torch.tensor([[0.0, 1.0]]), ["img2"])  # float 0/1 targets taken
    assert ml.per_case() == [
        {"id": "img1", "prob/effusion": 0.25, "prob/edema": 0.5, "target/effusion": 1, "target/edema": -1},
        {"id": "img2", "prob/effusion": 0.75, "prob/edema": 0.125, "target/effusion": 0, "target/edema": 1},
    ]
    mc = ClsMetrics("multiclass", ["benign", "malignant", "normal"])
    mc.update(torch.tensor([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0]]), torch.tensor([1, 2]))
    assert mc.per_case() == [
        {"id": None, "prob/benign": 0.5, "prob/malignant": 0.25, "prob/normal": 0.25, "target": "malignant"},
        {"id": None, "prob/benign": 0.0, "prob/malignant": 0.0, "prob/normal": 1.0, "target": "normal"},
    ]
    b = ClsMetrics("binary", ["tb"])
    b.update(torch.tensor([[0.5]], dtype=torch.bfloat16), torch.tensor([[True]]), ["x"])
    assert b.per_case() == [{"id": "x", "prob/tb": 0.5, "target/tb": 1}]


def test_empty_state_and_reset():
    for kind, labels in (("binary", ["a"]), ("multilabel", ["a", "b"]), ("multiclass", ["a", "b"])):
        m = ClsMetrics(kind, labels)
        out = _compute(m)
        assert set(out) == _keys(labels)
        assert out["n_cases"] == 0 and out["n_labels_auroc"] == 0
        assert all(math.isnan(v) for k, v in out.items() if not k.startswith("n_")), kind
        assert m.per_case() == []
        probs = torch.tensor([[0.75], [0.25]]) if kind == "binary" else torch.tensor([[0.75, 0.25], [0.25, 0.75]])
        targets = torch.tensor([0, 1]) if kind == "multiclass" else (probs > 0.5).long()
        m.update(probs, targets)
        assert _compute(m)["auroc"] == 1.0
        m.reset()
        assert _compute(m)["n_cases"] == 0 and m.per_case() == []


@pytest.mark.parametrize("kind, labels", [("bogus", ["a"]), ("binary", []), ("multilabel", []),
                                          ("binary", ["a", "b"]), ("multiclass", ["a"]),
                                          ("multilabel", ["a", "a"]), ("multilabel", "ab")])
def test_config_errors(kind, labels):
    with pytest.raises(ConfigError):
        ClsMetrics(kind, labels)


def test_threshold_and_bad_inputs():
    with pytest.raises(ConfigError, match="threshold"):
        ClsMetrics("binary", ["a"], threshold=1.5)
    m = ClsMetrics("binary", ["a"], threshold=0.8)
    m.update(torch.tensor([0.7, 0.8, 0.9, 0.1]), torch.tensor([1, 1, 0, 0]))
    assert _compute(m)["sensitivity"] == 0.5  # 0.7 < 0.8 is negative, 0.8 >= 0.8 positive
    ml = ClsMetrics("multilabel", ["a", "b"])
    bad = [
        (torch.tensor([[2.0, 0.1]]), torch.tensor([[1, 0]]), "lie in"),  # logits
        (torch.tensor([[float("nan"), 0.1]]), torch.tensor([[1, 0]]), "lie in"),
        (torch.tensor([[1, 0]]), torch.tensor([[1, 0]]), "floating"),
        (torch.tensor([[0.2, 0.1, 0.3]]), torch.tensor([[1, 0, 0]]), r"\(N, 2\)"),
        (torch.tensor([[0.2, 0.1]]), torch.tensor([[1, 0], [0, 0]]), "shape"),
        (torch.tensor([[0.2, 0.1]]), torch.tensor([[0.7, 0.0]]), "values in"),  # soft targets
    ]
    for probs, targets, msg in bad:
        with pytest.raises(ValueError, match=msg):
            ml.update(probs, targets)
    with pytest.raises(ValueError, match="ids"):
        ml.update(torch.tensor([[0.2, 0.1]]), torch.tensor([[1, 0]]), ["one", "two"])
    mc = ClsMetrics("multiclass", ["a", "b", "c"])
    p = torch.tensor([[0.2, 0.3, 0.5]])
    for targets, msg in ((torch.tensor([3]), r"\[0, 3\)"), (torch.tensor([1.0]), "integer"),
                         (torch.tensor([[1]]), "integer")):
        with pytest.raises(ValueError, match=msg):
            mc.update(p, targets)
    with pytest.raises(ValueError, match="sum to 1"):  # per-class sigmoids instead of a softmax
        mc.update(torch.tensor([[0.9, 0.8, 0.1]]), torch.tensor([0]))
    assert ml.per_case() == [] and mc.per_case() == []  # nothing half-appended by a rejected batch


def test_every_key_documented():
    m = ClsMetrics("multilabel", ["a", "b"])
    m.update(torch.tensor([[0.2, 0.9], [0.7, 0.1]]), torch.tensor([[0, 1], [1, 0]]))
    documented = {("auroc/<label>" if k.startswith("auroc/") else k) for k in _compute(m)}
    assert documented == set(CLS_METRIC_DOCS)
    assert documented - {"accuracy"} <= set(METRIC_DOCS)  # "accuracy" there is segmentation's
    assert all(">= 0.5" in CLS_METRIC_DOCS[k] for k in THRESHOLD_KEYS)
    assert "left out" in CLS_METRIC_DOCS["auroc"] and "NaN" in CLS_METRIC_DOCS["sensitivity"]


def test_ddp_sync_single_process(tmp_path):
    """compute() and per_case() go through the DDP gather (gloo, world size 1) and give the local result."""
    local = ClsMetrics("multiclass", ["a", "b"])
    synced = ClsMetrics("multiclass", ["a", "b"])
    probs, targets = torch.tensor([[0.75, 0.25], [0.5, 0.5], [0.0, 1.0]]), torch.tensor([0, 1, 1])
    for m in (local, synced):
        m.update(probs[:2], targets[:2], ["i0", "i1"])
        m.update(probs[2:], targets[2:], ["i2"])
    expected, expected_rows = _compute(local), local.per_case()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert _compute(synced) == expected
        assert synced.per_case() == expected_rows
    finally:
        dist.destroy_process_group()
