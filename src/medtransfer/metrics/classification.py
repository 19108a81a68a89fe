"""Image-level classification metrics (binary, multi-label, multi-class) with pinned definitions.

Why our own ROC AUC and macro means instead of torchmetrics' ``multilabel_auroc``: torchmetrics 1.9.0 scores a
label with no positives (or no negatives) 0.0, with only a warning, and keeps it in the macro mean, so one
rare finding absent from a small test split drags the reported mean AUC down (0.316 instead of 0.474 on
the example of the tracker's issue 10). The papers we reproduce (JLiangLab's benchmark: scikit-learn AUC per
label, then the mean) cannot score such a label at all. Here a label's value is NaN when it is undefined and
the macro means leave it out (``CLS_NAN_POLICY``); ``n_labels_auroc`` says how many labels the AUROC
mean covers, so a partial mean is visible. Per label, ``roc_auc`` equals ``sklearn.metrics.roc_auc_score``.

Why every case's probabilities are kept (not running counts): AUROC needs the ranks of all scores, and the
per-case CSV pairs cases between models for paired tests. That is small (labels × 8 bytes per case). The
state lives on the CPU; under DDP it is gathered like ``SegMetrics``' (``dist_reduce_fx="cat"``), through
the GPU where the backend is NCCL, which gathers CUDA tensors only. As there, a DistributedSampler may pad
the last batch with repeated cases (dedupe by id downstream if it matters).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from scipy.stats import rankdata
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from ..errors import ConfigError, choices_msg
from .definitions import THRESHOLD
from .segmentation import _decode_id, _encode_ids

#: Label kinds a dataset may declare: one sigmoid output, L independent sigmoid outputs, or one softmax over C.
KINDS = ("binary", "multilabel", "multiclass")

#: Target value of a multi-label entry left out of every metric of its label (CheXpert's uncertain labels).
IGNORE = -1

#: Largest accepted |sum of a multi-class probability row - 1|: loose enough for a float16/bfloat16
#: softmax, tight enough to reject per-class sigmoids or logits passed by mistake.
SOFTMAX_TOL = 1e-2

_NAN = float("nan")


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of one label: the Mann–Whitney U statistic over n_pos * n_neg, ties counted one half.

    Why ranks: the area under the empirical ROC curve (scikit-learn's trapezoids over thresholds) is exactly
    the probability that a random positive scores above a random negative, ties 1/2, which average ranks
    give in O(n log n). NaN when the cases hold no positive or no negative (the curve does not exist).
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return _NAN
    ranks = rankdata(np.asarray(scores, dtype=np.float64), method="average")
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _ratio(num: int, den: int) -> float:
    return num / den if den else _NAN


def threshold_metrics(pred: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    """One label's accuracy, balanced accuracy, F1, sensitivity and specificity from boolean predictions.

    A ratio with a zero denominator is NaN (``CLS_NAN_POLICY``): sensitivity without positives, specificity
    without negatives, F1 with neither positives nor predicted positives, accuracy without cases; balanced
    accuracy, (sensitivity + specificity) / 2, is NaN when either is (on one class it would be plain accuracy).
    """
    pred, positive = np.asarray(pred, dtype=bool), np.asarray(positive, dtype=bool)
    tp = int((pred & positive).sum())
    fp = int((pred & ~positive).sum())
    fn = int((~pred & positive).sum())
    tn = int((~pred & ~positive).sum())
    sens, spec = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "balanced_accuracy": (sens + spec) / 2,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "sensitivity": sens,
        "specificity": spec,
    }


def macro(values: Sequence[float]) -> float:
    """Mean of the non-NaN values; NaN when there are none (no 'mean of empty slice' warning)."""
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else _NAN


def _gather(result: Tensor, group=None) -> list[Tensor]:
    """``gather_all_tensors`` for CPU states: NCCL gathers CUDA tensors only, so go through this rank's GPU."""
    if dist.get_backend(group) == dist.Backend.NCCL:
        device = torch.device("cuda", torch.cuda.current_device())
        return [t.to(result.device) for t in gather_all_tensors(result.to(device), group)]
    return gather_all_tensors(result, group)


class ClsMetrics(Metric):
    """Classification metrics of one label kind; keys and definitions in ``CLS_METRIC_DOCS``.

    ``ClsMetrics(kind, labels, threshold=0.5)``: ``kind`` is one of ``KINDS``; ``labels`` names the one
    label (binary), the L labels (multilabel) or the C classes in output order (multiclass). ``threshold``
    binarises probabilities (positive iff ``prob >= threshold``) for binary and multilabel; multiclass
    predicts the argmax (the first class among equal maxima) and does not use it.

    ``update(probs, targets, ids=None)`` takes probabilities, not logits (any float dtype):
    binary (N,) or (N, 1) with targets of the same length in {0, 1}; multilabel (N, L) with targets (N, L)
    in {0, 1, -1}, -1 = ignored for that label; multiclass (N, C) softmax rows with integer targets (N,) in
    [0, C). ``compute()`` returns Python numbers (NaN where undefined, e.g. before any update);
    ``per_case()`` one row per case in update order.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, kind: str, labels: Sequence[str], threshold: float = THRESHOLD, **kwargs):
        kwargs.setdefault("dist_sync_fn", _gather)
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ConfigError(choices_msg("classification label kind", kind, KINDS))
        if isinstance(labels, str):
            raise ConfigError(f"labels must be a list of names, got the string {labels!r}")
        labels = [str(name) for name in labels]
        if not labels:
            raise ConfigError(f"a {kind} classification task needs label names, got none")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"label names must be distinct, got {labels}")
        if kind == "binary" and len(labels) != 1:
            raise ConfigError(f"a binary task has exactly one label, got {labels} (use multilabel or multiclass)")
        if kind == "multiclass" and len(labels) < 2:
            raise ConfigError(f"a multiclass task needs at least two classes, got {labels} (use binary)")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
        self.kind, self.labels, self.threshold = kind, labels, float(threshold)
        self.add_state("probs", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")
        self.add_state("ids", default=[], dist_reduce_fx="cat")

    def _check(self, probs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """(N, K) float64 probabilities and int64 targets ((N, L) or, multiclass, (N,)) on the CPU, checked.

        Why so strict: logits, soft targets or a wrong label count each give plausible wrong numbers.
        """
        k = len(self.labels)
        if not probs.is_floating_point():
            raise ValueError(f"probs must be floating point probabilities, got dtype {probs.dtype}")
        p = probs.detach().to("cpu", torch.float64)  # exact for every float dtype
        t = targets.detach().cpu()
        if self.kind == "binary" and p.ndim == 1:
            p = p[:, None]
        if self.kind == "binary" and t.ndim == 1:
            t = t[:, None]
        if p.ndim != 2 or p.shape[1] != k:
            raise ValueError(f"{self.kind} probs must be (N, {k}) for labels {self.labels}, got {tuple(probs.shape)}")
        if not bool(((p >= 0) & (p <= 1)).all()):
            raise ValueError("probs must lie in [0, 1] (apply sigmoid/softmax to logits first; NaN is rejected too)")
        if self.kind == "multiclass":
            if t.shape != (p.shape[0],) or t.is_floating_point() or t.dtype == torch.bool:
                raise ValueError(f"multiclass targets must be integer class indices of shape ({p.shape[0]},), "
                                 f"got {t.dtype} {tuple(t.shape)}")
            if bool(((t < 0) | (t >= k)).any()):
                raise ValueError(f"multiclass targets must lie in [0, {k}), got {sorted(set(t.tolist()))}")
            if bool(((p.sum(dim=1) - 1).abs() > SOFTMAX_TOL).any()):
                raise ValueError("multiclass probs rows must sum to 1 (softmax over the classes)")
            return p, t.long()
        if t.shape != p.shape:
            raise ValueError(f"{self.kind} targets shape {tuple(targets.shape)} != probs shape {tuple(probs.shape)}")
        allowed = (0, 1, IGNORE) if self.kind == "multilabel" else (0, 1)
        if not bool(torch.isin(t.double(), torch.tensor(allowed, dtype=torch.float64)).all()):
            raise ValueError(f"{self.kind} targets must take values in {allowed}"
                             + (f" ({IGNORE} = ignored)" if self.kind == "multilabel" else ""))
        return p, t.long()

    def update(self, probs: Tensor, targets: Tensor, ids: Sequence[str] | None = None) -> None:
        p, t = self._check(probs, targets)
        encoded = _encode_ids(ids, p.shape[0], p.device)  # may raise: before any state is appended
        self.probs.append(p)
        self.targets.append(t)
        self.ids.append(encoded)

    def _state(self) -> tuple[np.ndarray, np.ndarray]:
        def cat(state, empty_shape):
            if isinstance(state, Tensor):  # after a DDP sync the list state is already concatenated
                return state.cpu().numpy()
            # per element: a module moved between updates (``.to(device)``) leaves earlier batches elsewhere
            return dim_zero_cat([x.cpu() for x in state]).numpy() if state else np.zeros(empty_shape)

        k = len(self.labels)
        probs = cat(self.probs, (0, k))
        targets = cat(self.targets, (0,) if self.kind == "multiclass" else (0, k)).astype(np.int64)
        return probs, targets

    def compute(self) -> dict[str, float | int]:
        probs, targets = self._state()
        aurocs, per_label = [], []
        if self.kind == "multiclass":
            pred = probs.argmax(axis=1)  # numpy: first maximum wins a tie
            for c in range(len(self.labels)):
                aurocs.append(roc_auc(probs[:, c], targets == c))
                per_label.append(threshold_metrics(pred == c, targets == c))
        else:
            for j in range(len(self.labels)):
                kept = targets[:, j] != IGNORE
                positive = targets[kept, j] == 1
                aurocs.append(roc_auc(probs[kept, j], positive))
                per_label.append(threshold_metrics(probs[kept, j] >= self.threshold, positive))
        out: dict[str, float | int] = {"auroc": macro(aurocs)}
        out.update({f"auroc/{name}": value for name, value in zip(self.labels, aurocs)})
        for key in ("accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity"):
            out[key] = macro([m[key] for m in per_label])
        if self.kind == "multiclass":  # these two are not macro means of one-vs-rest values
            out["accuracy"] = float((pred == targets).mean()) if probs.shape[0] else _NAN  # top-1
            out["balanced_accuracy"] = out["sensitivity"]  # mean recall over the classes that have cases
        out["n_cases"] = int(probs.shape[0])
        out["n_labels_auroc"] = int(sum(not np.isnan(a) for a in aurocs))
        return out

    def per_case(self) -> list[dict]:
        """One dict per case in update order: ``id`` (None where none was given), ``prob/<label>`` (float)
        and ``target/<label>`` (int, -1 = ignored) per label; multiclass: ``prob/<class>`` per class and
        ``target`` (the class name). Synced across processes under DDP (like ``compute``)."""
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=True):
            probs, targets = self._state()
            ids = self.ids if isinstance(self.ids, Tensor) else (
                dim_zero_cat([x.cpu() for x in self.ids]) if self.ids else None)
        rows = []
        for i in range(probs.shape[0]):
            row: dict = {"id": _decode_id(ids[i]) if ids is not None else None}
            row.update({f"prob/{name}": float(probs[i, j]) for j, name in enumerate(self.labels)})
            if self.kind == "multiclass":
                row["target"] = self.labels[int(targets[i])]
            else:
                row.update({f"target/{name}": int(targets[i, j]) for j, name in enumerate(self.labels)})
            rows.append(row)
        return rows
