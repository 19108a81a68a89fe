"""Linear CKA and PWCCA on synthetic activations with known answers."""

import numpy as np
import pytest
import torch

from medtransfer.analysis.similarity import cca, flatten_activations, linear_cka, mean_cca, pwcca


@pytest.fixture
def x():
    rng = np.random.default_rng(0)
    return rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12))  # correlated neurons


def _orthogonal(k, seed=1):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(k, k)))
    return q


def test_cka_of_a_representation_with_itself_is_one(x):
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(torch.from_numpy(x).float(), torch.from_numpy(x).float()) == pytest.approx(1.0, abs=1e-6)


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(x):
    rng = np.random.default_rng(2)
    y = np.tanh(x @ rng.normal(size=(12, 8)))  # some other representation of the same inputs
    base = linear_cka(x, y)
    assert 0.05 < base < 0.99
    assert linear_cka(x @ _orthogonal(12), y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, 7.5 * y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x @ _orthogonal(12) * 0.01, y * 3 + 5) == pytest.approx(base, abs=1e-10)  # + offset: centred


def test_cka_changes_under_a_general_invertible_linear_map(x):
    a = np.diag([10.0] + [0.1] * 11) @ _orthogonal(12, seed=3)  # invertible, far from orthogonal
    assert abs(np.linalg.det(a)) > 0
    assert linear_cka(x, x @ a) < 0.9  # CKA sees the re-weighting of directions ...
    assert pwcca(x, x @ a) == pytest.approx(1.0, abs=1e-8)  # ... CCA does not


def test_cka_gram_and_feature_forms_agree():
    rng = np.random.default_rng(4)
    few_samples = rng.normal(size=(10, 40)), rng.normal(size=(10, 30))  # n < p + q: Gram form
    xs, ys = few_samples
    num = np.linalg.norm((ys - ys.mean(0)).T @ (xs - xs.mean(0))) ** 2
    den = np.linalg.norm((xs - xs.mean(0)).T @ (xs - xs.mean(0))) * np.linalg.norm((ys - ys.mean(0)).T @ (ys - ys.mean(0)))
    assert linear_cka(xs, ys) == pytest.approx(num / den)


def test_cka_of_independent_noise_is_small():
    rng = np.random.default_rng(5)
    assert linear_cka(rng.normal(size=(5000, 10)), rng.normal(size=(5000, 10))) < 0.02


def test_pwcca_identical_is_one(x):
    assert pwcca(x, x) == pytest.approx(1.0, abs=1e-10)
    rho, _, _ = cca(x, x)
    assert np.allclose(rho, 1.0)


def test_pwcca_shared_subspace_known_value():
    # X = [3·q1, 1·q3], Y = [2·q1, 5·q4] with q1..q4 orthonormal, zero-mean columns: canonical correlations
    # are exactly (1, 0); the canonical variates are q1 and q3, with projection weights Σj|<h, xj>| = 3 and 1.
    # PWCCA = (3·1 + 1·0) / (3 + 1) = 0.75, while the unweighted mean CCA is 0.5.
    rng = np.random.default_rng(6)
    z = rng.normal(size=(200, 4))
    q, _ = np.linalg.qr(z - z.mean(0))
    x = np.column_stack([3 * q[:, 0], 1 * q[:, 2]])
    y = np.column_stack([2 * q[:, 0], 5 * q[:, 3]])
    sim, weights, rho = pwcca(x, y, return_parts=True)
    assert rho == pytest.approx([1.0, 0.0], abs=1e-10)
    assert weights == pytest.approx([0.75, 0.25], abs=1e-10)
    assert sim == pytest.approx(0.75, abs=1e-10)
    assert mean_cca(x, y) == pytest.approx(0.5, abs=1e-10)


def test_pwcca_of_independent_noise_is_low():
    rng = np.random.default_rng(7)
    sim = pwcca(rng.normal(size=(4000, 8)), rng.normal(size=(4000, 8)))
    assert sim < 0.1


def test_pwcca_partial_sharing_is_in_between():
    rng = np.random.default_rng(8)
    shared = rng.normal(size=(3000, 4))
    x = np.column_stack([shared, rng.normal(size=(3000, 4))])
    y = np.column_stack([shared @ _orthogonal(4), rng.normal(size=(3000, 4))])
    assert 0.3 < pwcca(x, y) < 0.7


def test_pwcca_refuses_fewer_samples_than_neurons():
    rng = np.random.default_rng(9)
    with pytest.raises(ValueError, match="more samples than neurons"):
        pwcca(rng.normal(size=(10, 20)), rng.normal(size=(10, 20)))


def test_shape_errors():
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(np.ones((5, 2)), np.ones((6, 2)))
    with pytest.raises(ValueError, match="flatten_activations"):
        linear_cka(np.ones((2, 3, 4, 4)), np.ones((2, 3, 4, 4)))


def test_flatten_activations_channels_as_neurons_and_shared_positions():
    act = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    flat = flatten_activations(act)
    assert flat.shape == (40, 3)
    assert flat[0].tolist() == [act[0, c, 0, 0].item() for c in range(3)]
    a, b = flatten_activations(act, max_samples=7, seed=3), flatten_activations(act + 1, max_samples=7, seed=3)
    assert a.shape == (7, 3) and np.array_equal(a + 1, b)  # same rows picked for same-shaped inputs
    assert flatten_activations(torch.zeros(2, 6, 8)).shape == (12, 8)  # tokens (N, T, C)
