"""How far training moved the weights, and how much of the start it kept (paper 003, Sections III-C/D).

- filter_change: ||W - W0||_F / ||W0||_F per parameter tensor, and per layer (module-name prefix) pooled as
  sqrt(Σ ||ΔW||²) / sqrt(Σ ||W0||²); paper 003 finds this "typically below 25 %" at convergence, i.e. the
  filters still look like their initialisation. `mean_filter_change` is the same ratio per output filter
  (dim 0), averaged — small filters that moved a lot are not hidden by large ones.
- feature_reuse: mean similarity(init, converged) over transfer runs minus the same over scratch runs,
  per layer (Raghu et al. 2019, used in paper 003 Table VIII): > 0 where the transferred start is kept.

Only floating-point tensors with ≥ 2 dims (conv / linear weights — the "filters") are compared by default;
BatchNorm statistics and biases are skipped unless asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def _np(t) -> np.ndarray:
    """float32 is enough here: the difference W - W0 is formed before any rounding of the norms' sums."""
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.asarray(t, dtype=np.float32 if np.asarray(t).dtype == np.float32 else np.float64)


def _selected(state: Mapping, min_dim: int) -> dict:
    out = {}
    for k, v in state.items():
        a = v if hasattr(v, "dtype") else np.asarray(v)
        is_float = getattr(a, "is_floating_point", None)
        floating = is_float() if callable(is_float) else np.issubdtype(np.asarray(a).dtype, np.floating)
        if floating and len(tuple(a.shape)) >= min_dim:
            out[k] = a
    return out


def filter_change(state_a: Mapping, state_init: Mapping, min_dim: int = 2,
                  prefixes: Sequence[str] | None = None) -> dict[str, dict]:
    """Relative change of each weight tensor of state_a from state_init (state dicts, tensors or arrays).

    Returns {param name: {"rel_change", "mean_filter_change", "norm_init", "norm_diff", "numel"}}. With
    `prefixes` (module names such as "encoder.backbone.layer1"), only parameters under them are returned.
    Raises ValueError when a compared tensor is missing from the init state or has another shape.
    """
    a, b = _selected(state_a, min_dim), _selected(state_init, min_dim)
    if prefixes:
        a = {k: v for k, v in a.items() if any(_under(k, p) for p in prefixes)}
        if not a:
            raise ValueError(f"no weights under {', '.join(prefixes)}")
    out = {}
    for name, w in a.items():
        if name not in b:
            raise ValueError(f"{name}: not in the init state dict (different architectures?)")
        w, w0 = _np(w), _np(b[name])
        if w.shape != w0.shape:
            raise ValueError(f"{name}: shape {w.shape} vs init {w0.shape}")
        d = w - w0
        n0, nd = float(np.linalg.norm(w0)), float(np.linalg.norm(d))
        rows = w0.shape[0] if w0.ndim else 1  # output filters
        f0 = np.linalg.norm(w0.reshape(rows, -1), axis=1)
        fd = np.linalg.norm(d.reshape(rows, -1), axis=1)
        ok = f0 > 0
        out[name] = {"rel_change": nd / n0 if n0 > 0 else float("nan"),
                     "mean_filter_change": float(np.mean(fd[ok] / f0[ok])) if ok.any() else float("nan"),
                     "norm_init": n0, "norm_diff": nd, "numel": int(w.size)}
    return out


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_filter_change(per_param: Mapping[str, Mapping], layers: Iterable[str]) -> dict[str, float]:
    """Pool filter_change's per-parameter result per layer: sqrt(Σ norm_diff²) / sqrt(Σ norm_init²)."""
    out = {}
    for layer in layers:
        rows = [v for k, v in per_param.items() if _under(k, layer)]
        n0 = np.sqrt(sum(r["norm_init"] ** 2 for r in rows))
        nd = np.sqrt(sum(r["norm_diff"] ** 2 for r in rows))
        out[layer] = float(nd / n0) if rows and n0 > 0 else float("nan")
    return out


def feature_reuse(sim_transfer: Mapping[str, Sequence[float]],
                  sim_scratch: Mapping[str, Sequence[float]]) -> dict[str, dict]:
    """Per layer: mean similarity(init, converged) of transfer runs minus that of scratch runs.

    Inputs map layer → one similarity per run (e.g. PWCCA of each run with its own initialisation).
    """
    out = {}
    for layer in sim_transfer:
        t = np.asarray(sim_transfer[layer], dtype=float)
        s = np.asarray(sim_scratch.get(layer, []), dtype=float)
        t, s = t[~np.isnan(t)], s[~np.isnan(s)]
        mt = float(t.mean()) if t.size else float("nan")
        ms = float(s.mean()) if s.size else float("nan")
        out[layer] = {"transfer": mt, "scratch": ms, "reuse": mt - ms, "n_transfer": int(t.size),
                      "n_scratch": int(s.size)}
    return out
