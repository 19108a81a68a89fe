"""SegMetrics' MMSeg-style pooled keys (paper 000): a hand-worked 2-image case, an independent NumPy
re-implementation of MMSeg's IoUMetric (ignore_index included), the pooled identity D = 2I/(1+I), and the
one documented difference from MMSeg (0/0).

Expected numbers are written literally from counts worked out by hand, not recomputed by the code under test.
"""

import math

import numpy as np
import pytest
import torch

from medtransfer.metrics import METRIC_DOCS, SegMetrics

MMSEG_KEYS = {
    "accuracy_pooled", "recall_pooled", "specificity_pooled", "iou_background_pooled",
    "dice_background_pooled", "miou_pooled", "mdice_pooled", "macc_pooled",
}  # fmt: skip


def t4(rows):
    """A (1, 1, 4, 4) float tensor from a list of 4 strings of '0'/'1'."""
    return torch.tensor([[float(c) for c in r] for r in rows])[None, None]


# image 1: TP=2 (0,0),(0,1); FP=1 (2,2); FN=1 (1,0); TN=12
# image 2: TP=3 (1,1),(1,2),(2,1); FP=2 (1,3),(3,3); FN=1 (2,2); TN=10
TARGET = torch.cat([t4(["1100", "1000", "0000", "0000"]), t4(["0000", "0110", "0110", "0000"])])
PRED = torch.cat([t4(["1100", "0000", "0010", "0000"]), t4(["0000", "0111", "0100", "0001"])])


def test_hand_worked_two_images():
    """Summed: TP=5, FP=3, FN=2, TN=22 (32 pixels). MMSeg's areas per class (background, foreground):
    intersect (22, 5), prediction (24, 8), label (25, 7), union (27, 10)."""
    m = SegMetrics()
    m.update(PRED, TARGET)
    assert [[r[k] for k in ("tp", "fp", "fn", "tn")] for r in m.per_image()] == [[2, 1, 1, 12], [3, 2, 1, 10]]
    out = m.compute()
    assert out["accuracy_pooled"] == pytest.approx(27 / 32)  # aAcc = 0.84375
    assert out["recall_pooled"] == pytest.approx(5 / 7)  # Acc[polyp] = 0.7143 (paper 000's "OA")
    assert out["specificity_pooled"] == pytest.approx(22 / 25)  # Acc[background] = 0.88
    assert out["iou_pooled"] == pytest.approx(5 / 10)  # IoU[polyp]
    assert out["dice_pooled"] == pytest.approx(10 / 15)  # Dice[polyp] = 2*5 / (8 + 7)
    assert out["iou_background_pooled"] == pytest.approx(22 / 27)
    assert out["dice_background_pooled"] == pytest.approx(44 / 49)  # 2*22 / (24 + 25)
    assert out["miou_pooled"] == pytest.approx((5 / 10 + 22 / 27) / 2)  # 0.6574
    assert out["mdice_pooled"] == pytest.approx((10 / 15 + 44 / 49) / 2)  # 0.7823
    assert out["macc_pooled"] == pytest.approx((5 / 7 + 22 / 25) / 2)  # 0.7971
    # pooled recall is not the per-image mean recall (2/3 + 3/4) / 2 = 0.7083
    assert out["recall"] == pytest.approx((2 / 3 + 3 / 4) / 2)


def mmseg_reference(preds, labels, num_classes=2, ignore_index=255):
    """MMSeg's IoUMetric re-written in NumPy: intersect_and_union per image (ignore_index pixels dropped from
    prediction and label), areas summed over the dataset, then total_area_to_metrics and nanmean."""
    areas = np.zeros((4, num_classes))
    for pred, label in zip(preds, labels):
        keep = label != ignore_index
        p, lab = pred[keep], label[keep]
        inter = np.bincount(p[p == lab], minlength=num_classes)
        area_p, area_l = np.bincount(p, minlength=num_classes), np.bincount(lab, minlength=num_classes)
        areas += [inter, area_p + area_l - inter, area_p, area_l]
    inter, union, area_p, area_l = areas
    with np.errstate(invalid="ignore", divide="ignore"):
        per = {"IoU": inter / union, "Acc": inter / area_l, "Dice": 2 * inter / (area_p + area_l)}
    out = {"aAcc": inter.sum() / area_l.sum(), **{f"m{k}": np.nanmean(v) for k, v in per.items()}}
    return out, per


@pytest.mark.parametrize("seed", range(3))
def test_matches_numpy_reimplementation_of_mmseg_with_ignore_index(seed):
    gen = torch.Generator().manual_seed(seed)
    probs = torch.rand(5, 1, 12, 10, generator=gen)
    target = (torch.rand(5, 1, 12, 10, generator=gen) < 0.3).float()
    valid = (torch.rand(5, 1, 12, 10, generator=gen) < 0.8).float()  # MMSeg: label 255 outside
    m = SegMetrics()
    m.update(probs[:2], target[:2], valid=valid[:2])
    m.update(probs[2:], target[2:], valid=valid[2:])
    out = m.compute()
    labels = np.where(valid[:, 0].numpy() > 0, target[:, 0].numpy(), 255).astype(np.int64)
    ref, per = mmseg_reference((probs[:, 0].numpy() >= 0.5).astype(np.int64), labels)
    expected = {
        "accuracy_pooled": ref["aAcc"], "miou_pooled": ref["mIoU"], "mdice_pooled": ref["mDice"],
        "macc_pooled": ref["mAcc"], "recall_pooled": per["Acc"][1], "specificity_pooled": per["Acc"][0],
        "iou_pooled": per["IoU"][1], "iou_background_pooled": per["IoU"][0],
        "dice_pooled": per["Dice"][1], "dice_background_pooled": per["Dice"][0],
    }  # fmt: skip
    for k, v in expected.items():
        assert out[k] == pytest.approx(float(v), rel=1e-12), k


def test_pooled_dice_is_2i_over_1_plus_i_but_per_image_means_are_not():
    """Pooled over the dataset, Dice = 2I/(1+I) exactly for each class (paper 000: I = 74.78 -> D = 85.57);
    a mean of per-image values need not satisfy it."""
    gen = torch.Generator().manual_seed(7)
    m = SegMetrics()
    m.update(torch.rand(6, 1, 16, 16, generator=gen), (torch.rand(6, 1, 16, 16, generator=gen) < 0.4).float())
    out = m.compute()
    for dice, iou in (("dice_pooled", "iou_pooled"), ("dice_background_pooled", "iou_background_pooled")):
        assert out[dice] == pytest.approx(2 * out[iou] / (1 + out[iou]), rel=1e-12)
    two = SegMetrics()
    two.update(PRED[:1], TARGET[:1])  # Dice 2/3, IoU 1/2
    two.update(TARGET[:1], TARGET[:1])  # Dice = IoU = 1
    per = two.compute()
    i = per["iou_per_image"]  # (1/2 + 1) / 2 = 3/4 -> 2I/(1+I) = 6/7 = 0.857
    assert i == pytest.approx(3 / 4) and per["dice_per_image"] == pytest.approx(5 / 6)  # 0.833 != 0.857


def test_zero_over_zero_follows_our_policy_where_mmseg_gives_nan():
    """The one documented difference. No polyp pixel in any target: MMSeg's Acc[1] is 0/0 = NaN (dropped by
    nanmean); ours is 1 without false positives, else 0 (and then counts in macc)."""
    z = torch.zeros(2, 1, 4, 4)
    clean = SegMetrics()
    clean.update(z, z)
    out = clean.compute()
    assert out["recall_pooled"] == 1.0 and out["iou_pooled"] == 1.0
    ref, per = mmseg_reference(np.zeros((2, 4, 4), np.int64), np.zeros((2, 4, 4), np.int64))
    assert math.isnan(per["Acc"][1]) and math.isnan(per["IoU"][1])
    assert out["miou_pooled"] == ref["mIoU"] == 1.0  # same here: nanmean(1, NaN) == mean(1, 1)
    fp = SegMetrics()
    fp.update(torch.cat([t4(["1000", "0000", "0000", "0000"]), t4(["0000"] * 4)]), z)  # TP=0 FP=1 FN=0 TN=31
    out = fp.compute()
    assert out["recall_pooled"] == 0.0 and out["specificity_pooled"] == pytest.approx(31 / 32)
    assert out["macc_pooled"] == pytest.approx(31 / 64)  # MMSeg: nanmean(31/32, NaN) = 31/32


def test_no_images_gives_nan_and_every_key_is_documented():
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        out = SegMetrics().compute()
    assert all(math.isnan(out[k]) for k in MMSEG_KEYS)
    assert MMSEG_KEYS <= set(out) and MMSEG_KEYS <= set(METRIC_DOCS)
    assert "OA" in METRIC_DOCS["recall_pooled"] and "aAcc" in METRIC_DOCS["accuracy_pooled"]
