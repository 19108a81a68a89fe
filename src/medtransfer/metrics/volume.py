"""Per-case, per-label scores of a 3D label map: Dice, HD95 and ASSD in millimetres, and their means.

Why per foreground label and then the mean: the MSD / nnU-Net convention (Hippocampus: anterior and
posterior scored separately; the headline is their mean); background is never scored. Distances are MONAI's
(`surface.surface_metrics_3d`) at the spacing the caller gives, which the training code sets to each case's
ORIGINAL voxel size after mapping the prediction back to the original grid, so millimetres mean the scanner's.

Empty masks follow the 2D policy (`surface.py`, ``EMPTY_POLICY``): Dice 0/0 → 1.0 (both empty), HD95/ASSD 0
when both are empty and the volume's diagonal in mm when exactly one is; ``n_surface_<policy>`` counts how
often each rule applied over cases × labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from medtransfer.metrics.surface import _POLICIES, surface_metrics_3d

SCORES = ("dice", "hd95", "assd")


def dice_score(pred: np.ndarray, target: np.ndarray) -> float:
    """2|P∩T| / (|P| + |T|) of two boolean masks; both empty → 1.0."""
    total = int(pred.sum()) + int(target.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, target).sum()) / total


def case_scores(pred: np.ndarray, target: np.ndarray, labels: Sequence[tuple[int, str]],
                spacing: Sequence[float]) -> dict:
    """One case's row: ``dice/<name>``, ``hd95/<name>``, ``assd/<name>`` and ``policy/<name>`` per foreground
    label (value != 0), and ``dice``, ``hd95``, ``assd``: their means over the foreground labels."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"expected two (X, Y, Z) label maps of one shape, got {pred.shape} and {target.shape}")
    row: dict = {}
    fg = [(v, n) for v, n in labels if v != 0]
    for value, name in fg:
        p, t = pred == value, target == value
        surface = surface_metrics_3d(p, t, spacing)
        row.update({f"dice/{name}": dice_score(p, t), f"hd95/{name}": surface["hd95"],
                    f"assd/{name}": surface["assd"], f"policy/{name}": surface["policy"]})
    for score in SCORES:
        row[score] = float(np.mean([row[f"{score}/{n}"] for _, n in fg]))
    return row


def aggregate_cases(rows: Iterable[dict], label_names: Sequence[str]) -> dict:
    """Means over cases of every score (overall and per label), ``n_cases``, ``surface_unit`` ("mm") and
    ``n_surface_<policy>`` (over cases × labels)."""
    rows = list(rows)
    keys = [*SCORES, *(f"{s}/{n}" for s in SCORES for n in label_names)]
    out = {k: float(np.mean([r[k] for r in rows])) if rows else float("nan") for k in keys}
    policies = [r.get(f"policy/{n}") for r in rows for n in label_names]
    out.update({"n_cases": len(rows), "surface_unit": "mm"})
    out.update({f"n_surface_{p}": sum(1 for q in policies if q == p) for p in _POLICIES})
    return out
