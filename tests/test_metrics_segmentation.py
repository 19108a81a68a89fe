"""SegMetrics: hand-worked 4x4 cases, the empty-mask policy, the threshold, and two independent references.

The expected numbers are written literally (counted by hand from the drawn masks), not recomputed with the
code under test, so a change of definition fails here.
"""

import math

import pytest
import segmentation_models_pytorch as smp
import torch
from torchmetrics.functional.classification import binary_f1_score

from medtransfer.metrics import METRIC_DOCS, SegMetrics

KEYS = {
    "dice_per_image", "iou_per_image", "precision", "recall", "accuracy",
    "dice_pooled", "iou_pooled", "n_images", "n_empty_target", "n_empty_both",
    # MMSeg-style pooled keys (tests/test_metrics_mmseg.py)
    "accuracy_pooled", "recall_pooled", "specificity_pooled", "iou_background_pooled",
    "dice_background_pooled", "miou_pooled", "mdice_pooled", "macc_pooled",
}  # fmt: skip


def t4(rows):
    """A (1, 1, 4, 4) float tensor from a list of 4 strings of '0'/'1'."""
    return torch.tensor([[float(c) for c in r] for r in rows])[None, None]


# target: 3 pixels; pred hits 2 of them, misses (1,0), adds (2,2) -> TP=2, FP=1, FN=1, TN=12
TARGET_A = t4(["1100", "1000", "0000", "0000"])
PRED_A = t4(["1100", "0000", "0010", "0000"])


def test_hand_worked_single_image():
    m = SegMetrics()
    m.update(PRED_A, TARGET_A, ids=["a"])
    out = m.compute()
    assert set(out) == KEYS
    assert out["dice_per_image"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # 0.6667
    assert out["iou_per_image"] == pytest.approx(2 / (2 + 1 + 1))  # 0.5
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(14 / 16)  # 0.875
    assert out["dice_pooled"] == pytest.approx(4 / 6)
    assert out["iou_pooled"] == pytest.approx(0.5)
    assert (out["n_images"], out["n_empty_target"], out["n_empty_both"]) == (1, 0, 0)
    (row,) = m.per_image()
    assert row["id"] == "a"
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (2, 1, 1, 12)
    assert all(isinstance(row[k], int) for k in ("tp", "fp", "fn", "tn"))
    assert row["dice"] == pytest.approx(0.6666667, abs=1e-6)


def test_region_restricts_every_count_to_it():
    """DRIVE's field of view: only the region's pixels count. Region = the left two columns (8 pixels), drawn
    against TARGET_A / PRED_A: TP (0,0),(0,1); FN (1,0); FP (2,2) lies outside; TN the other 5 inside."""
    fov = t4(["1100", "1100", "1100", "1100"])
    m = SegMetrics()
    m.update(PRED_A, TARGET_A, ids=["a"], valid=fov)
    (row,) = m.per_image()
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (2, 0, 1, 5)
    out = m.compute()
    assert out["dice_per_image"] == pytest.approx(4 / 5) and out["precision"] == pytest.approx(1.0)
    assert out["accuracy"] == pytest.approx(7 / 8)  # 14/16 over the whole image
    everywhere = SegMetrics()
    everywhere.update(PRED_A, TARGET_A, valid=torch.ones_like(fov))
    assert [everywhere.per_image()[0][k] for k in ("tp", "fp", "fn", "tn")] == [2, 1, 1, 12]
    with pytest.raises(ValueError, match="valid must be binary"):
        SegMetrics().update(PRED_A, TARGET_A, valid=fov * 0.5)
    with pytest.raises(ValueError, match="valid shape"):
        SegMetrics().update(PRED_A, TARGET_A, valid=fov[..., :3])


def test_per_image_mean_differs_from_pooled():
    """A big object found (Dice 1) and a 1-pixel object missed (Dice 0): per-image 0.5, pooled 16/17."""
    target = torch.cat([t4(["1111", "1111", "0000", "0000"]), t4(["0000", "0000", "0010", "0000"])])
    pred = torch.cat([t4(["1111", "1111", "0000", "0000"]), t4(["0000", "0000", "0000", "0000"])])
    m = SegMetrics()
    m.update(pred, target)
    out = m.compute()
    assert out["dice_per_image"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert out["iou_per_image"] == pytest.approx(0.5)
    assert out["dice_pooled"] == pytest.approx(2 * 8 / (2 * 8 + 0 + 1))  # 0.9412
    assert out["iou_pooled"] == pytest.approx(8 / 9)
    # image 2 predicts nothing while its target has a pixel: precision 0/0 with an error -> 0
    assert out["precision"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["recall"] == pytest.approx((1.0 + 0.0) / 2)
    assert out["accuracy"] == pytest.approx((16 / 16 + 15 / 16) / 2)
    assert [r["id"] for r in m.per_image()] == [None, None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_threshold_is_inclusive_at_exactly_half(dtype):
    target = t4(["1100", "0000", "0000", "0000"])
    below = torch.nextafter(torch.tensor(0.5, dtype=dtype), torch.tensor(0.0, dtype=dtype)).item()
    probs = torch.zeros(1, 1, 4, 4, dtype=dtype)
    probs[0, 0, 0, 0] = 0.5  # exactly the threshold -> foreground (TP)
    probs[0, 0, 0, 1] = below  # just below -> background (FN)
    probs[0, 0, 3, 3] = 0.5  # exactly the threshold on background -> FP
    m = SegMetrics(threshold=0.5)
    m.update(probs, target)
    (row,) = m.per_image()
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (1, 1, 1, 13)


def test_empty_policy_and_counts():
    z = t4(["0000"] * 4)
    m = SegMetrics()
    m.update(z, z, ids=["both_empty"])  # 0/0 everywhere, no errors -> 1
    m.update(t4(["1000", "0000", "0000", "0001"]), z, ids=["target_empty"])  # TP=0 FP=2 FN=0 TN=14
    m.update(z, t4(["0000", "0110", "0000", "0000"]), ids=["pred_empty"])  # TP=0 FP=0 FN=2 TN=14
    rows = {r["id"]: r for r in m.per_image()}
    both, tgt, prd = rows["both_empty"], rows["target_empty"], rows["pred_empty"]
    assert [both[k] for k in ("dice", "iou", "precision", "recall", "accuracy")] == [1.0] * 5
    # target empty, 2 false positives: precision 0/2 = 0, recall 0/0 with errors -> 0
    assert [tgt[k] for k in ("dice", "iou", "precision", "recall")] == [0.0] * 4
    assert tgt["accuracy"] == pytest.approx(14 / 16)
    # prediction empty, 2 misses: precision 0/0 with errors -> 0, recall 0/2 = 0
    assert [prd[k] for k in ("dice", "iou", "precision", "recall")] == [0.0] * 4
    out = m.compute()
    assert out["dice_per_image"] == pytest.approx(1 / 3)
    assert out["dice_pooled"] == pytest.approx(0.0)  # sum TP = 0, sum FP + FN = 4
    assert (out["n_images"], out["n_empty_target"], out["n_empty_both"]) == (3, 2, 1)


def test_all_empty_dataset_pooled_is_one_and_no_images_is_nan():
    z = torch.zeros(2, 1, 4, 4)
    m = SegMetrics()
    m.update(z, z)
    out = m.compute()
    assert out["dice_pooled"] == 1.0 and out["iou_pooled"] == 1.0 and out["dice_per_image"] == 1.0
    fresh = SegMetrics()
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        empty = fresh.compute()
    assert empty["n_images"] == 0 and math.isnan(empty["dice_per_image"]) and math.isnan(empty["dice_pooled"])


def _random_batch(gen, b=6, h=16, w=16):
    """Probabilities and targets with non-empty target and prediction in every image (no policy cases)."""
    probs = torch.rand(b, 1, h, w, generator=gen)
    target = (torch.rand(b, 1, h, w, generator=gen) < 0.3).float()
    probs[:, :, 0, 0], target[:, :, 0, 0] = 0.9, 1.0
    probs[:, :, 0, 1] = 0.9
    return probs, target


def test_accumulation_equals_single_update_and_reset():
    gen = torch.Generator().manual_seed(0)
    batches = [_random_batch(gen, b=b) for b in (1, 3, 2)]
    ids = [[f"img{i}_{j}" for j in range(p.shape[0])] for i, (p, _) in enumerate(batches)]
    flat_ids = [s for batch_ids in ids for s in batch_ids]
    split, whole = SegMetrics(), SegMetrics()
    for (p, t), i in zip(batches, ids):
        split.update(p, t, ids=i)
    whole.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]), ids=flat_ids)
    assert split.compute() == whole.compute()
    assert split.per_image() == whole.per_image()
    assert [r["id"] for r in split.per_image()] == flat_ids
    split.reset()
    assert split.per_image() == []


def test_matches_smp_and_torchmetrics():
    gen = torch.Generator().manual_seed(1)
    probs, target = _random_batch(gen, b=8, h=24, w=20)
    m = SegMetrics()
    m.update(probs[:5], target[:5])
    m.update(probs[5:], target[5:])
    out = m.compute()
    tp, fp, fn, tn = smp.metrics.get_stats(probs, target.long(), mode="binary", threshold=0.5)
    ref = {
        "dice_per_image": smp.metrics.f1_score(tp, fp, fn, tn, reduction="micro-imagewise"),
        "iou_per_image": smp.metrics.iou_score(tp, fp, fn, tn, reduction="micro-imagewise"),
        "precision": smp.metrics.precision(tp, fp, fn, tn, reduction="micro-imagewise"),
        "recall": smp.metrics.recall(tp, fp, fn, tn, reduction="micro-imagewise"),
        "accuracy": smp.metrics.accuracy(tp, fp, fn, tn, reduction="micro-imagewise"),
        "dice_pooled": smp.metrics.f1_score(tp, fp, fn, tn, reduction="micro"),
        "iou_pooled": smp.metrics.iou_score(tp, fp, fn, tn, reduction="micro"),
    }
    for k, v in ref.items():
        assert out[k] == pytest.approx(float(v), rel=1e-6), k
    # torchmetrics' own per-sample F1 (= Dice) as a second, separately written reference
    f1 = binary_f1_score(
        probs.flatten(1), target.long().flatten(1), threshold=0.5, multidim_average="samplewise"
    )
    assert [r["dice"] for r in m.per_image()] == pytest.approx(f1.double().tolist(), rel=1e-6)
    assert out["dice_per_image"] == pytest.approx(f1.double().mean().item(), rel=1e-6)


def test_int64_counts_and_large_images():
    """Counts are exact int64 (a float32 sum would lose pixels beyond 2**24)."""
    m = SegMetrics()
    probs = torch.ones(1, 1, 4200, 4200, dtype=torch.float16)
    m.update(probs, torch.ones_like(probs))
    (row,) = m.per_image()
    assert row["tp"] == 4200 * 4200 == 17_640_000 and isinstance(row["tp"], int)
    assert m.counts[0].dtype == torch.int64


def test_simulated_ddp_sync_keeps_ids_aligned():
    """Two 'ranks': gather states with a fake all_gather; counts and ids must arrive together."""
    gen = torch.Generator().manual_seed(2)
    other = SegMetrics()
    p1, t1 = _random_batch(gen, b=3)
    other.update(p1, t1, ids=["r1_a", "r1_b", "r1_c"])

    def fake_gather(x, group=None):
        peer = other.counts[0] if x.dtype == torch.int64 else other.ids[0]
        return [x, peer]

    rank0 = SegMetrics(dist_sync_fn=fake_gather, distributed_available_fn=lambda: True)
    p0, t0 = _random_batch(gen, b=2)
    rank0.update(p0, t0, ids=["r0_a", "r0_b"])
    single = SegMetrics()
    single.update(torch.cat([p0, p1]), torch.cat([t0, t1]), ids=["r0_a", "r0_b", "r1_a", "r1_b", "r1_c"])
    assert rank0.compute() == single.compute()
    assert rank0.per_image() == single.per_image()
    assert len(rank0.counts) == 1  # local state restored after syncing


def test_forward_returns_batch_values_and_accumulates():
    m = SegMetrics()
    batch = m(PRED_A, TARGET_A, ids=["a"])
    assert batch["dice_per_image"] == pytest.approx(4 / 6)
    m(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), ids=["z"])
    assert [r["id"] for r in m.per_image()] == ["a", "z"]
    assert m.compute()["dice_per_image"] == pytest.approx((4 / 6 + 1.0) / 2)


@pytest.mark.parametrize(
    "probs, target, ids, match",
    [
        (torch.full((1, 1, 4, 4), 2.0), TARGET_A, None, r"\[0, 1\]"),  # logits by mistake
        (torch.full((1, 1, 4, 4), float("nan")), TARGET_A, None, r"\[0, 1\]"),
        (PRED_A, TARGET_A * 2, None, "binary"),
        (PRED_A, TARGET_A[..., :3], None, "shape"),
        (PRED_A[0], TARGET_A[0], None, r"\(B, 1, H, W\)"),
        (PRED_A, TARGET_A, ["a", "b"], "ids"),
        (PRED_A, TARGET_A, "a", "ids"),
        (PRED_A, TARGET_A, ["x" * 300], "longer"),
    ],
)
def test_bad_inputs_fail_loudly(probs, target, ids, match):
    with pytest.raises(ValueError, match=match):
        SegMetrics().update(probs, target, ids=ids)


def test_metric_docs_cover_every_key():
    assert KEYS <= set(METRIC_DOCS)
    assert ">= 0.5" in METRIC_DOCS["dice_per_image"] and "mean over images" in METRIC_DOCS["dice_per_image"]
    assert all(isinstance(v, str) and v for v in METRIC_DOCS.values())
