"""Boundary distances (HD95, ASSD) for one 2-D binary mask pair (or a 3-D one, `surface_metrics_3d`), through
MONAI; evaluation only.

Why MONAI underneath: it is the reference implementation most medical papers cite, so our numbers stay
comparable. Why a wrapper: MONAI returns NaN/inf (with a warning) when a mask is empty, and a NaN silently
drops an image from ``nanmean`` or poisons a plain mean. The policy here is explicit instead:

* both masks empty        -> hd95 = assd = 0.0, ``policy="both_empty"`` (a perfect empty prediction);
* exactly one mask empty  -> hd95 = assd = the largest possible distance in the image, i.e. the distance
  between opposite pixel centres ``sqrt(((H-1)*sy)**2 + ((W-1)*sx)**2)``, ``policy="pred_empty"`` or
  ``"target_empty"`` (the worst score, so a missed polyp is never better than a poor one);
* otherwise MONAI's values, ``policy=None``.

Units: ``spacing=None`` measures in pixels (unit ``"px"``); a dataset that knows its pixel size passes
``spacing`` = (row, column) millimetres per pixel (DICOM PixelSpacing order) and every distance, the
one-empty diagonal included, comes out in ``"mm"``. ``aggregate_surface`` records the unit next to the
means, so a results file never leaves the reader guessing which one a number is in.

Definitions (MONAI 1.6, checked against an independent SciPy implementation in the tests): boundary pixels
are the mask minus its 4-connected binary erosion (pixels outside the image count as background); d(a->b)
is the Euclidean distance, scaled by ``spacing`` = (row, column) pixel size, from each boundary pixel of a to
the nearest boundary pixel of b. hd95 = max(P95(d(pred->target)), P95(d(target->pred))) with linear
interpolation between order statistics; assd = mean of the two distance sets pooled together (so the longer
boundary weighs more; this is not the average of the two directed means).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch

_POLICIES = ("both_empty", "pred_empty", "target_empty")


def _as_bool_2d(x, name: str) -> np.ndarray:
    """Accept a numpy array or torch tensor (H, W) of bool or 0/1 values; reject anything else."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) mask, got shape {a.shape}")
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be binary (bool or 0/1); threshold probabilities first")
        a = a.astype(bool)
    return a


def _spacing(spacing: Sequence[float] | None, ndim: int = 2) -> tuple[float, ...]:
    """(row, column) pixel size (3D: the voxel size along each array axis) as floats; None -> ones, i.e.
    pixels. Rejects anything else."""
    if spacing is None:
        return (1.0,) * ndim
    out = tuple(float(s) for s in spacing)
    if len(out) != ndim or not all(s > 0 and math.isfinite(s) for s in out):
        what = "two positive numbers (row, column)" if ndim == 2 else f"{ndim} positive numbers (mm per voxel)"
        raise ValueError(f"spacing must be {what}, got {spacing}")
    return out


def surface_unit(spacing: Sequence[float] | None) -> str:
    """Unit of hd95/assd measured with ``spacing``: "px" for None, else "mm" (spacing is mm per pixel)."""
    if spacing is None:
        return "px"
    _spacing(spacing)  # a malformed spacing fails here as it would in surface_metrics
    return "mm"


def max_distance(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Largest distance between two pixel (voxel) centres of an (H, W) image or (X, Y, Z) volume: the score
    for 'exactly one empty'."""
    sp = _spacing(spacing, len(shape))
    return float(math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(shape, sp, strict=True))))


def surface_metrics(pred, target, spacing: Sequence[float] | None = None) -> dict:
    """HD95 and ASSD between two binary (H, W) masks; returns ``dict(hd95, assd, policy)``.

    ``spacing`` is the (row, column) pixel size in mm, None for pixels (``surface_unit``). The empty-mask
    policy (module docstring) always yields finite numbers; ``policy`` says which rule applied (None =
    measured).
    """
    p = _as_bool_2d(pred, "pred")
    t = _as_bool_2d(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} != target shape {t.shape}")
    return _measure(p, t, _spacing(spacing))


def surface_metrics_3d(pred, target, spacing: Sequence[float]) -> dict:
    """HD95 and ASSD between two binary (X, Y, Z) volumes, in mm at ``spacing`` (the voxel size along each
    array axis, e.g. a case's original spacing); the empty-mask policy of `surface_metrics` (one empty: the
    volume's diagonal in mm). Boundary voxels: the mask minus its 6-connected erosion (MONAI)."""
    p, t = (np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x) for x in (pred, target))
    if p.ndim != 3 or p.shape != t.shape:
        raise ValueError(f"expected two (X, Y, Z) masks of one shape, got {p.shape} and {t.shape}")
    return _measure(p.astype(bool), t.astype(bool), _spacing(spacing, 3))


def _measure(p: np.ndarray, t: np.ndarray, spacing: tuple[float, ...]) -> dict:
    """The policy (module docstring), then MONAI's distances, for boolean masks of one shape (2D or 3D)."""
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return {"hd95": 0.0, "assd": 0.0, "policy": "both_empty"}
    if not p_any or not t_any:
        d = max_distance(p.shape, spacing)
        return {"hd95": d, "assd": d, "policy": "pred_empty" if not p_any else "target_empty"}

    # Imported lazily: MONAI is heavy and only evaluation needs it.
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    yp = torch.from_numpy(p)[None, None].float()
    yt = torch.from_numpy(t)[None, None].float()
    with warnings.catch_warnings():
        # Both masks are non-empty here, so MONAI's empty-mask warnings cannot apply; silence any other
        # chatter so it does not reach training logs, and check the result is finite below instead.
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(yp, yt, include_background=True, percentile=95, spacing=spacing)
        asd = compute_average_surface_distance(
            yp, yt, include_background=True, symmetric=True, spacing=spacing
        )
    hd95, assd = float(hd.item()), float(asd.item())
    if not (math.isfinite(hd95) and math.isfinite(assd)):  # pragma: no cover - would be a MONAI change
        raise RuntimeError(f"MONAI returned non-finite surface distances (hd95={hd95}, assd={assd})")
    return {"hd95": hd95, "assd": assd, "policy": None}


def surface_metrics_batch(probs, target, threshold: float = 0.5, spacing: Sequence[float] | None = None):
    """``surface_metrics`` for each image of a (B, 1, H, W) batch; pred = ``probs >= threshold`` (as SegMetrics)."""
    if isinstance(probs, torch.Tensor):  # up-cast half types only (bf16 has no numpy dtype; never round fp64)
        probs = probs.detach()
        probs = (probs.float() if probs.dtype in (torch.float16, torch.bfloat16) else probs).cpu().numpy()
    if isinstance(target, torch.Tensor):
        target = target.detach().cpu().numpy()
    probs, target = np.asarray(probs), np.asarray(target)
    if probs.ndim != 4 or probs.shape[1] != 1 or probs.shape != target.shape:
        raise ValueError(f"expected (B, 1, H, W) probs and target, got {probs.shape} and {target.shape}")
    return [surface_metrics(probs[i, 0] >= threshold, target[i, 0], spacing) for i in range(probs.shape[0])]


def aggregate_surface(results: Iterable[dict], spacing: Sequence[float] | None = None) -> dict:
    """Mean hd95/assd over images (policy values included) plus how often each empty-mask rule applied.

    ``spacing``: the one the results were measured with (None = pixels). Returns ``hd95, assd`` (NaN when
    there are no images), ``surface_unit`` ("px" or "mm"), ``n_images`` and ``n_surface_<policy>`` for
    ``both_empty``, ``pred_empty``, ``target_empty`` (names as in ``METRIC_DOCS``).
    """
    results = list(results)
    n = len(results)
    out = {
        "hd95": float(np.mean([r["hd95"] for r in results])) if n else float("nan"),
        "assd": float(np.mean([r["assd"] for r in results])) if n else float("nan"),
        "surface_unit": surface_unit(spacing),
        "n_images": n,
    }
    for pol in _POLICIES:
        out[f"n_surface_{pol}"] = sum(1 for r in results if r.get("policy") == pol)
    unknown = {r.get("policy") for r in results} - set(_POLICIES) - {None}
    if unknown:
        raise ValueError(f"unknown surface policy {sorted(map(str, unknown))}; valid: {', '.join(_POLICIES)}")
    return out
