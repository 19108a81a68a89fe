"""Binary segmentation metrics from per-image confusion counts (definitions in :mod:`.definitions`).

Why per-image counts as state (not running sums): the studies report *per-image means* (mean Dice over test
images) and need the per-image values for paired tests between models; the pooled numbers follow from the
same counts by summing. Keeping int64 counts (4 per image, plus a fixed-width id) is tiny and exact, and
``dist_reduce_fx="cat"`` makes DDP gathering correct for both views.

Image ids travel as fixed-width UTF-8 byte tensors (``ID_BYTES`` wide, zero padded) so they are gathered
under DDP together with the counts and stay aligned with them. Note that a DistributedSampler may pad the
last batch with repeated images; those repeats then appear twice (dedupe by id downstream if it matters).
A rank that saw no images at all cannot take part in the gather (a torchmetrics limitation for list states);
Lightning's DistributedSampler never produces that when the dataset has at least world-size images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from .definitions import THRESHOLD

#: Width of the per-image id state; longer ids (UTF-8 bytes) are rejected in ``update``.
ID_BYTES = 256

_COUNTS = ("tp", "fp", "fn", "tn")


def _binary(x: Tensor, name: str) -> Tensor:
    if x.dtype == torch.bool:
        return x.detach()
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{name} must be binary (values 0/1)")
    return x.detach() == 1


def confusion_counts(probs: Tensor, target: Tensor, threshold: float = THRESHOLD,
                     valid: Tensor | None = None) -> Tensor:
    """Per-image (TP, FP, FN, TN) as an int64 tensor of shape (B, 4); pred = ``probs >= threshold``.

    ``probs`` and ``target`` are (B, 1, H, W); ``target`` holds only 0/1 (any dtype). ``valid`` (same shape,
    0/1) restricts the counts to a region, e.g. DRIVE's field of view: pixels outside it count as nothing,
    so TP + FP + FN + TN is the region's size. Raises ValueError on a shape mismatch, probabilities outside
    [0, 1] (e.g. logits passed by mistake) or NaN, or a non-binary target or region: each of these would
    otherwise produce plausible-looking wrong numbers.
    """
    if probs.ndim != 4 or probs.shape[1] != 1:
        raise ValueError(f"probs must be (B, 1, H, W) for binary segmentation, got {tuple(probs.shape)}")
    if target.shape != probs.shape:
        raise ValueError(f"target shape {tuple(target.shape)} != probs shape {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise ValueError(f"probs must be floating point probabilities, got dtype {probs.dtype}")
    # Up-cast half types (exact; comparisons then work on every device); never down-cast float64, which would
    # round values just below the threshold up onto it.
    p = probs.detach()
    if p.dtype in (torch.float16, torch.bfloat16):
        p = p.float()
    if not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError("probs must lie in [0, 1] (apply sigmoid to logits first; NaN is rejected too)")
    t = _binary(target, "target")
    pred = p >= threshold
    neg_pred, neg_t = ~pred, ~t
    if valid is not None:
        if valid.shape != probs.shape:
            raise ValueError(f"valid shape {tuple(valid.shape)} != probs shape {tuple(probs.shape)}")
        v = _binary(valid, "valid")
        pred, neg_pred = pred & v, neg_pred & v
    dims = (1, 2, 3)
    tp = (pred & t).sum(dims, dtype=torch.int64)
    fp = (pred & neg_t).sum(dims, dtype=torch.int64)
    fn = (neg_pred & t).sum(dims, dtype=torch.int64)
    tn = (neg_pred & neg_t).sum(dims, dtype=torch.int64)
    return torch.stack([tp, fp, fn, tn], dim=1)


def safe_ratio(num: Tensor, den: Tensor, errors: Tensor) -> Tensor:
    """``num / den`` in float64; where ``den == 0`` the value is 1.0 if ``errors == 0`` else 0.0 (the policy)."""
    num, den = num.double(), den.double()
    fallback = (errors == 0).double()
    return torch.where(den > 0, num / den.clamp_min(1), fallback)


def ratios_from_counts(counts: Tensor) -> dict[str, Tensor]:
    """Per-row dice, iou, precision, recall, accuracy (float64) from (N, 4) TP/FP/FN/TN counts."""
    tp, fp, fn, tn = counts.unbind(dim=1)
    err = fp + fn
    return {
        "dice": safe_ratio(2 * tp, 2 * tp + fp + fn, err),
        "iou": safe_ratio(tp, tp + fp + fn, err),
        "precision": safe_ratio(tp, tp + fp, err),
        "recall": safe_ratio(tp, tp + fn, err),
        "accuracy": safe_ratio(tp + tn, tp + fp + fn + tn, err),
    }


def pooled_ratios(counts: Tensor) -> dict[str, Tensor]:
    """Every dataset-pooled ratio (float64 scalars) from (N, 4) counts: ours and MMSeg's ``IoUMetric``.

    Why one function: MMSeg (paper 000) sums per-class areas over the whole dataset *before* dividing
    (``intersect_and_union`` per image, summed, then ``total_area_to_metrics``). For the binary task
    (background = 0, foreground = 1) its per-class areas are intersect (TN, TP), prediction (TN+FN, TP+FP)
    and label (TN+FP, TP+FN), so each MMSeg number is a ratio of the four summed counts, and its foreground
    IoU and Dice are exactly ``iou_pooled`` and ``dice_pooled``. Its ``ignore_index`` pixels are dropped
    from every area, which is what ``valid`` does to the counts. One deliberate difference: a 0/0 ratio
    (a class absent from target and prediction alike) follows ``EMPTY_POLICY`` instead of MMSeg's NaN and
    nanmean over classes, as every other ratio here does; a dataset with foreground in its targets never
    reaches it for the foreground class, and background is then absent only if every pixel is foreground.
    """
    tp, fp, fn, tn = counts.sum(dim=0).unbind()
    err = fp + fn
    out = {
        "dice_pooled": safe_ratio(2 * tp, 2 * tp + fp + fn, err),  # MMSeg Dice[foreground]
        "iou_pooled": safe_ratio(tp, tp + fp + fn, err),  # MMSeg IoU[foreground]
        "accuracy_pooled": safe_ratio(tp + tn, tp + fp + fn + tn, err),  # MMSeg aAcc
        "recall_pooled": safe_ratio(tp, tp + fn, err),  # MMSeg Acc[foreground]; paper 000's "OA"
        "specificity_pooled": safe_ratio(tn, tn + fp, err),  # MMSeg Acc[background]
        "iou_background_pooled": safe_ratio(tn, tn + fp + fn, err),
        "dice_background_pooled": safe_ratio(2 * tn, 2 * tn + fp + fn, err),
    }
    out["miou_pooled"] = (out["iou_pooled"] + out["iou_background_pooled"]) / 2
    out["mdice_pooled"] = (out["dice_pooled"] + out["dice_background_pooled"]) / 2
    out["macc_pooled"] = (out["recall_pooled"] + out["specificity_pooled"]) / 2
    return out


def _encode_ids(ids: Sequence[str] | None, n: int, device: torch.device) -> Tensor:
    out = torch.zeros((n, ID_BYTES), dtype=torch.uint8)
    if ids is not None:
        if isinstance(ids, str) or len(ids) != n:
            raise ValueError(f"ids must be a list of {n} strings (one per image), got {ids!r}")
        for i, s in enumerate(ids):
            b = str(s).encode("utf-8")
            if len(b) > ID_BYTES or b"\x00" in b:
                raise ValueError(f"image id {s!r} is longer than {ID_BYTES} UTF-8 bytes or contains NUL")
            out[i, : len(b)] = torch.frombuffer(bytearray(b), dtype=torch.uint8)
    return out.to(device)


def _decode_id(row: Tensor) -> str | None:
    b = bytes(row.cpu().tolist()).rstrip(b"\x00")
    return b.decode("utf-8") if b else None


class SegMetrics(Metric):
    """Binary segmentation metrics: per-image means, dataset-pooled Dice/IoU and MMSeg's pooled per-class
    accuracies and class means (``pooled_ratios``); definitions in ``METRIC_DOCS``.

    ``update(probs, target, ids=None, valid=None)`` takes foreground probabilities (B, 1, H, W) in [0, 1]
    (any float dtype, incl. float16/bfloat16), a 0/1 target of the same shape and optionally a 0/1 region
    to count in (``confusion_counts``). ``compute()`` returns a dict of
    Python numbers (means as float, counts as int); with no images seen the means are NaN.
    ``per_image()`` returns one row per image (id is None where none was given).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = THRESHOLD, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.add_state("counts", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def update(self, probs: Tensor, target: Tensor, ids: Sequence[str] | None = None,
               valid: Tensor | None = None) -> None:
        counts = confusion_counts(probs, target, self.threshold, valid)
        self.counts.append(counts)
        self.ids.append(_encode_ids(ids, counts.shape[0], counts.device))

    def _all_counts(self) -> Tensor:
        if isinstance(self.counts, Tensor):  # after a DDP sync the list state is already concatenated
            return self.counts
        return dim_zero_cat(self.counts) if self.counts else torch.zeros((0, 4), dtype=torch.int64)

    def compute(self) -> dict[str, float]:
        counts = self._all_counts()
        n = int(counts.shape[0])
        tp, fp, fn, _ = counts.unbind(dim=1)
        nan = float("nan")
        per = ratios_from_counts(counts)
        out = {
            "dice_per_image": per["dice"].mean().item() if n else nan,
            "iou_per_image": per["iou"].mean().item() if n else nan,
            "precision": per["precision"].mean().item() if n else nan,
            "recall": per["recall"].mean().item() if n else nan,
            "accuracy": per["accuracy"].mean().item() if n else nan,
        }
        out.update({k: v.item() if n else nan for k, v in pooled_ratios(counts).items()})
        out["n_images"] = n
        out["n_empty_target"] = int(((tp + fn) == 0).sum())
        out["n_empty_both"] = int(((tp + fn + fp) == 0).sum())
        return out

    def per_image(self) -> list[dict]:
        """One dict per image in update order: id, tp, fp, fn, tn (int) and the five ratios (float).

        Synced across processes under DDP (like ``compute``), so every rank gets all rows.
        """
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=True):
            counts = self._all_counts().cpu()
            ids = self.ids if isinstance(self.ids, Tensor) else (dim_zero_cat(self.ids) if self.ids else None)
        per = {k: v.tolist() for k, v in ratios_from_counts(counts).items()}
        rows = []
        for i, c in enumerate(counts.tolist()):
            row = {"id": _decode_id(ids[i]) if ids is not None else None}
            row.update(dict(zip(_COUNTS, c)))
            row.update({k: per[k][i] for k in per})
            rows.append(row)
        return rows
