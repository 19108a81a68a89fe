"""surface_metrics: hand-worked distances, an independent SciPy implementation, the empty policy, spacing."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from medtransfer.metrics import METRIC_DOCS, aggregate_surface, surface_metrics
from medtransfer.metrics.surface import surface_metrics_batch


def pixels(shape, coords):
    m = np.zeros(shape, dtype=bool)
    for r, c in coords:
        m[r, c] = True
    return m


def square(shape, top, left, size):
    m = np.zeros(shape, dtype=bool)
    m[top : top + size, left : left + size] = True
    return m


def reference(pred, target, spacing=(1.0, 1.0)):
    """Independent implementation: boundary = mask minus 4-connected erosion (outside = background);
    distances from a SciPy Euclidean distance transform of the other boundary's complement."""
    ep = pred & ~ndimage.binary_erosion(pred, border_value=0)
    et = target & ~ndimage.binary_erosion(target, border_value=0)
    d_pt = ndimage.distance_transform_edt(~et, sampling=spacing)[ep]
    d_tp = ndimage.distance_transform_edt(~ep, sampling=spacing)[et]
    hd95 = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    return hd95, np.concatenate([d_pt, d_tp]).mean()


def test_identical_masks_are_zero():
    m = square((10, 10), 2, 3, 4)
    assert surface_metrics(m, m) == {"hd95": 0.0, "assd": 0.0, "policy": None}


def test_single_pixels_offset_by_three():
    r = surface_metrics(pixels((8, 8), [(2, 2)]), pixels((8, 8), [(2, 5)]))
    assert r["hd95"] == pytest.approx(3.0) and r["assd"] == pytest.approx(3.0) and r["policy"] is None


@pytest.mark.parametrize("k", [1, 3])
def test_squares_offset_by_k(k):
    """Two 12x12 squares shifted k columns: the side walls are k apart, so HD (and its P95) is k."""
    r = surface_metrics(square((24, 24), 6, 4, 12), square((24, 24), 6, 4 + k, 12))
    assert r["hd95"] == pytest.approx(float(k))
    assert 0 < r["assd"] < k


def test_percentile_interpolation_and_pooled_assd():
    """pred = one pixel at (1,1); target = pixels at (1,4) and (5,1).
    pred->target: [3]; target->pred: [3, 4].
    hd95 = max(P95([3]), P95([3, 4])) = max(3, 3 + 0.95 * 1) = 3.95;
    assd = mean of the pooled set [3, 3, 4] = 10/3 (not (3 + 3.5) / 2 = 3.25)."""
    r = surface_metrics(pixels((8, 8), [(1, 1)]), pixels((8, 8), [(1, 4), (5, 1)]))
    assert r["hd95"] == pytest.approx(3.95, abs=1e-5)
    assert r["assd"] == pytest.approx(10 / 3, abs=1e-5)


@pytest.mark.parametrize("spacing, expected", [((1.0, 2.0), 6.0), ((2.0, 1.0), 3.0), ((0.5, 0.25), 0.75)])
def test_spacing_is_row_column(spacing, expected):
    """Offset of 3 columns: only the column spacing (second entry) scales it."""
    r = surface_metrics(pixels((8, 8), [(2, 2)]), pixels((8, 8), [(2, 5)]), spacing=spacing)
    assert r["hd95"] == pytest.approx(expected) and r["assd"] == pytest.approx(expected)


def _blob(rng, shape):
    m = ndimage.gaussian_filter(rng.random(shape), sigma=3) > 0.52
    m[rng.integers(shape[0]), rng.integers(shape[1])] = True  # never empty; sometimes a stray pixel
    return m


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.7, 1.3)])
def test_matches_independent_scipy_implementation(seed, spacing):
    rng = np.random.default_rng(seed)
    shape = (40, 48)
    pred, target = _blob(rng, shape), _blob(rng, shape)
    hd95, assd = reference(pred, target, spacing)
    r = surface_metrics(pred, target, spacing=spacing)
    assert r["hd95"] == pytest.approx(hd95, rel=1e-5)
    assert r["assd"] == pytest.approx(assd, rel=1e-5)
    # symmetric by definition
    r2 = surface_metrics(target, pred, spacing=spacing)
    assert (r2["hd95"], r2["assd"]) == pytest.approx((r["hd95"], r["assd"]), rel=1e-5)


def test_mask_touching_the_border():
    """Pixels on the image edge are boundary pixels (outside the image counts as background)."""
    pred = square((10, 10), 0, 0, 4)
    target = square((10, 10), 0, 2, 4)
    hd95, assd = reference(pred, target)
    r = surface_metrics(pred, target)
    assert (r["hd95"], r["assd"]) == pytest.approx((hd95, assd), rel=1e-5)
    assert r["hd95"] == pytest.approx(2.0)


def test_empty_policies_are_finite_and_silent():
    shape = (8, 6)
    z = np.zeros(shape, dtype=bool)
    blob = square(shape, 2, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any MONAI empty-mask warning would fail here
        both = surface_metrics(z, z)
        pe = surface_metrics(z, blob)
        te = surface_metrics(blob, z)
        aniso = surface_metrics(z, blob, spacing=(0.5, 2.0))
    assert both == {"hd95": 0.0, "assd": 0.0, "policy": "both_empty"}
    diag = math.hypot(7, 5)  # opposite pixel centres of an 8x6 image: 8.602
    assert pe == {"hd95": pytest.approx(diag), "assd": pytest.approx(diag), "policy": "pred_empty"}
    assert te == {"hd95": pytest.approx(diag), "assd": pytest.approx(diag), "policy": "target_empty"}
    assert aniso["hd95"] == pytest.approx(math.hypot(7 * 0.5, 5 * 2.0))


def test_policy_value_is_at_least_any_measured_value():
    """A missed object must never score better than the worst real prediction (it ties it; MONAI's float32
    result may exceed the float64 policy value by rounding, hence the tolerance)."""
    shape = (8, 8)
    worst = surface_metrics(pixels(shape, [(0, 0)]), pixels(shape, [(7, 7)]))
    missed = surface_metrics(np.zeros(shape, bool), pixels(shape, [(7, 7)]))
    assert missed["hd95"] >= worst["hd95"] - 1e-5 and missed["assd"] >= worst["assd"] - 1e-5
    assert worst["hd95"] == pytest.approx(math.hypot(7, 7))


def test_accepts_torch_and_01_ints_and_rejects_bad_input():
    a, b = square((8, 8), 1, 1, 3), square((8, 8), 2, 2, 3)
    ref = surface_metrics(a, b)
    assert surface_metrics(torch.from_numpy(a), torch.from_numpy(b).to(torch.uint8)) == ref
    with pytest.raises(ValueError, match="binary"):
        surface_metrics(a.astype(float) * 0.7, b)
    with pytest.raises(ValueError, match="shape"):
        surface_metrics(a, b[:, :5])
    with pytest.raises(ValueError, match="2-D"):
        surface_metrics(a[None], b[None])
    with pytest.raises(ValueError, match="spacing"):
        surface_metrics(a, b, spacing=(1.0, 0.0))


def test_batch_thresholds_inclusively_and_aggregate_counts_policies():
    target = np.zeros((3, 1, 8, 8), dtype=np.float32)
    probs = np.zeros((3, 1, 8, 8), dtype=np.float32)
    target[0, 0, 2, 2], probs[0, 0, 2, 5] = 1, 0.5  # measured: distance 3 (0.5 counts as foreground)
    target[1, 0, 4, 4] = 1  # prediction empty
    # image 2: both empty
    results = surface_metrics_batch(torch.from_numpy(probs).half(), torch.from_numpy(target))
    assert [r["policy"] for r in results] == [None, "pred_empty", "both_empty"]
    agg = aggregate_surface(results)
    diag = math.hypot(7, 7)
    assert agg["hd95"] == pytest.approx((3.0 + diag + 0.0) / 3)
    assert agg["assd"] == pytest.approx((3.0 + diag + 0.0) / 3)
    assert (agg["n_images"], agg["n_surface_both_empty"], agg["n_surface_pred_empty"]) == (3, 1, 1)
    assert agg["n_surface_target_empty"] == 0
    assert math.isnan(aggregate_surface([])["hd95"])
    assert {"hd95", "assd", "n_surface_both_empty", "n_surface_pred_empty"} <= set(METRIC_DOCS)


ANISO = (2.0, 0.5)  # (row, column) mm per pixel


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")  # MONAI-internal deprecation
def test_anisotropic_spacing_hand_worked_against_monai_and_scipy():
    """pred = (1,1); target = (1,7) and (2,1) in a 6x10 image, spacing (2.0, 0.5) mm per pixel.
    (1,7) is 6 columns away: 3.0 mm (6 px); (2,1) is 1 row away: 2.0 mm (1 px).
    mm: pred->target [2.0], target->pred [3.0, 2.0]: hd95 = max(2.0, 2.0 + 0.95 * 1.0) = 2.95,
        assd = (2.0 + 3.0 + 2.0) / 3 = 7/3.
    px: pred->target [1], target->pred [6, 1]: hd95 = 1 + 0.95 * 5 = 5.75, assd = (1 + 6 + 1) / 3 = 8/3."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    pred, target = pixels((6, 10), [(1, 1)]), pixels((6, 10), [(1, 7), (2, 1)])
    mm = surface_metrics(pred, target, spacing=ANISO)
    assert (mm["hd95"], mm["assd"]) == pytest.approx((2.95, 7 / 3), abs=1e-5)
    px = surface_metrics(pred, target)  # spacing=None: pixels
    assert (px["hd95"], px["assd"]) == pytest.approx((5.75, 8 / 3), abs=1e-5)
    assert reference(pred, target, ANISO) == pytest.approx((2.95, 7 / 3), abs=1e-9)  # SciPy EDT, sampling=
    yp, yt = (torch.from_numpy(m)[None, None].float() for m in (pred, target))
    hd = compute_hausdorff_distance(yp, yt, include_background=True, percentile=95, spacing=ANISO)
    asd = compute_average_surface_distance(yp, yt, include_background=True, symmetric=True, spacing=ANISO)
    assert (hd.item(), asd.item()) == pytest.approx((2.95, 7 / 3), abs=1e-5)


def test_empty_mask_diagonal_in_mm_and_the_unit_is_recorded():
    """One mask empty in a 6x10 image at (2.0, 0.5) mm: diagonal hypot(5 * 2.0, 9 * 0.5) = sqrt(120.25)
    = 10.966 mm (pixels: hypot(5, 9) = 10.296)."""
    z, blob = np.zeros((6, 10), bool), pixels((6, 10), [(1, 1)])
    missed = surface_metrics(z, blob, spacing=ANISO)
    assert (missed["hd95"], missed["policy"]) == (pytest.approx(math.sqrt(120.25)), "pred_empty")
    assert surface_metrics(z, blob)["hd95"] == pytest.approx(math.hypot(5, 9))
    target = np.zeros((2, 1, 6, 10), np.float32)
    target[0, 0, 1, 7] = target[0, 0, 2, 1] = target[1, 0, 1, 1] = 1
    probs = np.zeros_like(target)
    probs[0, 0, 1, 1] = 0.9  # image 0: the hand-worked pair above; image 1: prediction empty
    agg = aggregate_surface(surface_metrics_batch(probs, target, spacing=ANISO), spacing=ANISO)
    assert agg["surface_unit"] == "mm" and METRIC_DOCS["surface_unit"]
    assert agg["hd95"] == pytest.approx((2.95 + math.sqrt(120.25)) / 2, abs=1e-5)
    assert aggregate_surface(surface_metrics_batch(probs, target))["surface_unit"] == "px"
    with pytest.raises(ValueError, match="spacing"):
        aggregate_surface([], spacing=(0.5,))
