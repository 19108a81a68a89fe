"""Segmentation metrics with pinned definitions (see ``METRIC_DOCS``; README cites them).

``SegMetrics`` (torchmetrics, per-image confusion counts) runs in the training/eval loop;
``surface_metrics`` (MONAI HD95/ASSD) runs at evaluation only, one image at a time.
"""

from .definitions import EMPTY_POLICY, METRIC_DOCS, THRESHOLD
from .segmentation import SegMetrics, confusion_counts, pooled_ratios, ratios_from_counts
from .surface import aggregate_surface, max_distance, surface_metrics, surface_metrics_batch, surface_unit

__all__ = [
    "EMPTY_POLICY",
    "METRIC_DOCS",
    "THRESHOLD",
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
