"""Representation similarity between two layers' activations: linear CKA and PWCCA (paper 003's RSIM).

Both take activations as (samples, neurons) matrices — rows are the same inputs (images, or spatial positions
of the same images) seen by both layers, columns are that layer's neurons/channels. NumPy arrays or torch
tensors; computed in float64 on the CPU (these are small matrices after sampling, and float32 loses CKA's
last digits). `flatten_activations` turns conv maps (N, C, H, W) / token maps (N, T, C) into that form with
channels as neurons and positions as samples, as paper 003 does ("channels of a convolutional feature map",
values sampled at random locations).

- linear CKA (Kornblith et al. 2019): ||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F) on column-centred X, Y. Invariant
  to orthogonal transforms and isotropic scaling, *not* to arbitrary invertible linear maps.
- PWCCA (Morcos et al. 2018, "RSIM" in paper 003 Eq. 1): Σ αᵢ ρᵢ, ρᵢ the canonical correlations, αᵢ ∝
  Σⱼ |⟨hᵢ, xⱼ⟩| (how much of the neurons xⱼ the i-th canonical variate hᵢ accounts for), computed on the side
  with fewer neurons as in the reference implementation (google/svcca compute_pwcca). Invariant to any
  invertible linear map of either side, so it needs more samples than neurons; otherwise it is trivially 1.
"""

from __future__ import annotations

import numpy as np


def _as_2d(a, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().double().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a (samples, neurons) matrix, got shape {a.shape} "
                         "(use flatten_activations for conv/token maps)")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return a


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_2d(x, "X"), _as_2d(y, "Y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must have the same samples (rows): {x.shape[0]} vs {y.shape[0]}")
    if x.shape[0] < 2:
        raise ValueError("need at least 2 samples")
    return x - x.mean(0, keepdims=True), y - y.mean(0, keepdims=True)


def linear_cka(x, y) -> float:
    """Linear CKA in [0, 1]; 1 for identical representations up to rotation and scale."""
    x, y = _pair(x, y)
    n, p, q = x.shape[0], x.shape[1], y.shape[1]
    if n < p + q:  # Gram (n×n) form is cheaper when neurons outnumber samples; same value
        kx, ky = x @ x.T, y @ y.T
        num, den = np.sum(kx * ky), np.linalg.norm(kx) * np.linalg.norm(ky)
    else:
        num = np.linalg.norm(y.T @ x) ** 2
        den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    if den == 0:
        return float("nan")  # a constant layer (e.g. dead ReLUs) has no similarity structure
    return float(num / den)


def _orthobasis(a: np.ndarray, eps: float) -> np.ndarray:
    """Orthonormal basis of the column space of centred a, dropping directions with negligible variance.

    QR first, then the SVD of the small (p × p) R: as stable as an SVD of a, several times faster for the
    tall matrices (thousands of positions × channels) used here.
    """
    q, r = np.linalg.qr(a)
    u, s, _ = np.linalg.svd(r)
    keep = s > eps * (s[0] if s.size else 0.0)
    return q @ u[:, keep]


def cca(x, y, eps: float = 1e-8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical correlations ρ (descending) and the canonical variates of each side (n × k, unit norm).

    Via orthonormal bases Qx, Qy of the centred column spaces: ρ are the singular values of Qxᵀ Qy
    (Björck–Golub). Directions with variance below eps × the largest are dropped (rank deficiency,
    dead channels), like svcca's epsilon.
    """
    x, y = _pair(x, y)
    qx, qy = _orthobasis(x, eps), _orthobasis(y, eps)
    if qx.shape[1] == 0 or qy.shape[1] == 0:
        return np.zeros(0), np.zeros((x.shape[0], 0)), np.zeros((x.shape[0], 0))
    u, rho, vt = np.linalg.svd(qx.T @ qy, full_matrices=False)
    return np.clip(rho, 0.0, 1.0), qx @ u, qy @ vt.T


def pwcca(x, y, eps: float = 1e-8, return_parts: bool = False):
    """Projection-weighted CCA similarity in [0, 1] (paper 003's RSIM).

    Raises ValueError when there are not more samples than neurons: CCA then finds perfect correlations
    for any two representations (sample more spatial positions / images, or compare smaller layers).
    With return_parts: (similarity, weights α, correlations ρ).
    """
    x, y = _pair(x, y)
    if x.shape[0] <= max(x.shape[1], y.shape[1]):
        raise ValueError(f"PWCCA needs more samples than neurons: {x.shape[0]} samples for {x.shape[1]} and "
                         f"{y.shape[1]} neurons")
    rho, hx, hy = cca(x, y, eps)
    if rho.size == 0:
        return (float("nan"), rho, rho) if return_parts else float("nan")
    # weights from the side with fewer neurons (X on a tie), as google/svcca's compute_pwcca
    h, acts = (hx, x) if x.shape[1] <= y.shape[1] else (hy, y)
    k = rho.size
    weights = np.abs(h[:, :k].T @ acts).sum(axis=1)
    weights = weights / weights.sum()
    sim = float(np.sum(weights * rho))
    return (sim, weights, rho) if return_parts else sim


def mean_cca(x, y, eps: float = 1e-8) -> float:
    """Unweighted mean canonical correlation (SVCCA-style, Raghu et al. 2017) — for comparison with PWCCA.
    (pwcca(..., return_parts=True) gives the same ρ without a second decomposition.)"""
    rho, _, _ = cca(x, y, eps)
    return float(rho.mean()) if rho.size else float("nan")


def flatten_activations(act, max_samples: int | None = None, seed: int = 0) -> np.ndarray:
    """(N, C, H, W) → (N·H·W, C); (N, T, C) → (N·T, C); (N, C) unchanged; then at most max_samples rows.

    The row subsample depends only on (shape, max_samples, seed), so two models' activations of the same
    layer on the same images are sampled at the *same* positions — a requirement for comparing them.
    """
    if hasattr(act, "detach"):
        act = act.detach().cpu().float().numpy()
    a = np.asarray(act)
    if a.ndim == 4:
        a = a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])
    elif a.ndim == 3:
        a = a.reshape(-1, a.shape[-1])
    elif a.ndim != 2:
        raise ValueError(f"activations of shape {a.shape}: expected (N,C,H,W), (N,T,C) or (N,C)")
    if max_samples is not None and a.shape[0] > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(a.shape[0], size=max_samples, replace=False))
        a = a[idx]
    return a.astype(np.float64)
