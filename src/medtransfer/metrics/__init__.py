"""Segmentation and classification metrics with pinned definitions (see ``METRIC_DOCS``; README cites them).

``SegMetrics`` (torchmetrics, per-image confusion counts) runs in the training/eval loop;
``surface_metrics`` (MONAI HD95/ASSD) runs at evaluation only, one image at a time. ``ClsMetrics``
(per-case probabilities; AUROC and threshold metrics per label, macro means) is the classification
counterpart of ``SegMetrics`` (keys in ``CLS_METRIC_DOCS``).
"""

from .classification import ClsMetrics
from .definitions import CLS_METRIC_DOCS, CLS_NAN_POLICY, EMPTY_POLICY, METRIC_DOCS, THRESHOLD
from .segmentation import SegMetrics, confusion_counts, pooled_ratios, ratios_from_counts
from .surface import aggregate_surface, max_distance, surface_metrics, surface_metrics_batch, surface_unit

__all__ = [
    "CLS_METRIC_DOCS",
    "CLS_NAN_POLICY",
    "EMPTY_POLICY",
    "METRIC_DOCS",
    "THRESHOLD",
    "ClsMetrics",
    "SegMetrics",
    "aggregate_surface",
    "confusion_counts",
    "max_distance",
    "pooled_ratios",
    "ratios_from_counts",
    "surface_metrics",
    "surface_metrics_batch",
    "surface_unit",
]
