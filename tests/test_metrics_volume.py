"""3D scores in millimetres: MONAI distances at an anisotropic spacing checked against hand-worked values, the
2D empty-mask policy with the volume's diagonal, per-label rows and their means."""

import math

import numpy as np
import pytest

from medtransfer.metrics.surface import max_distance, surface_metrics_3d
from medtransfer.metrics.volume import aggregate_cases, case_scores, dice_score

SHAPE = (6, 7, 10)
SPACING = (1.0, 1.5, 3.0)


def planes(axis: int, a: int, b: int, shape=SHAPE):
    """Two full one-voxel-thick planes across the volume, at index a (pred) and b (target) along `axis`."""
    p, t = np.zeros(shape, bool), np.zeros(shape, bool)
    idx = [slice(None)] * 3
    idx[axis] = a
    p[tuple(idx)] = True
    idx[axis] = b
    t[tuple(idx)] = True
    return p, t


@pytest.mark.parametrize("axis,expected", [(2, 6.0), (1, 3.0), (0, 2.0)])
def test_parallel_planes_two_voxels_apart_are_two_voxel_sizes_apart_in_mm(axis, expected):
    """Every boundary voxel of one plane is exactly 2 voxels from the other plane along `axis`: 2 × spacing
    (3 mm → 6 mm along z; 1.5 → 3 along y; 1 → 2 along x), for HD95 and ASSD alike."""
    p, t = planes(axis, 2, 4)
    out = surface_metrics_3d(p, t, SPACING)
    assert out["policy"] is None
    assert out["hd95"] == pytest.approx(expected) and out["assd"] == pytest.approx(expected)


def test_empty_masks_follow_the_2d_policy_with_the_volume_diagonal_in_mm():
    p, t = planes(2, 2, 4)
    empty = np.zeros(SHAPE, bool)
    diagonal = math.sqrt((5 * 1.0) ** 2 + (6 * 1.5) ** 2 + (9 * 3.0) ** 2)
    assert max_distance(SHAPE, SPACING) == pytest.approx(diagonal)
    assert surface_metrics_3d(empty, t, SPACING) == {"hd95": diagonal, "assd": diagonal, "policy": "pred_empty"}
    assert surface_metrics_3d(p, empty, SPACING)["policy"] == "target_empty"
    assert surface_metrics_3d(empty, empty, SPACING) == {"hd95": 0.0, "assd": 0.0, "policy": "both_empty"}
    with pytest.raises(ValueError, match=r"spacing must be 3 positive numbers"):
        surface_metrics_3d(p, t, (1.0, 1.0))


def test_case_scores_per_foreground_label_and_their_means():
    """Label 1: planes 2 voxels apart along z (Dice 0, 6 mm); label 2: identical boxes (Dice 1, 0 mm);
    background is not scored."""
    pred, target = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
    p, t = planes(2, 2, 4)
    pred[p], target[t] = 1, 1
    pred[1:3, 1:3, 7:9] = target[1:3, 1:3, 7:9] = 2
    row = case_scores(pred, target, [(0, "background"), (1, "a"), (2, "b")], SPACING)
    assert row["dice/a"] == 0.0 and row["dice/b"] == 1.0 and row["dice"] == 0.5
    assert row["hd95/a"] == pytest.approx(6.0) and row["hd95/b"] == 0.0 and row["hd95"] == pytest.approx(3.0)
    assert row["assd"] == pytest.approx(3.0) and "dice/background" not in row
    agg = aggregate_cases([row, {**row, "dice": 1.0, "dice/a": 1.0}], ["a", "b"])
    assert agg["dice"] == 0.75 and agg["dice/a"] == 0.5 and agg["n_cases"] == 2 and agg["surface_unit"] == "mm"
    assert agg["n_surface_both_empty"] == 0 and dice_score(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
