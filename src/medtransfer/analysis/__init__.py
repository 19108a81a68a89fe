"""Representation analysis (paper 003): layer similarity (linear CKA, PWCCA = RSIM), filter change vs init,
feature reuse. The core works on plain arrays / tensors / nn.Modules; checkpoints only enter in pipeline.py.

Light at import: the functions are re-exported lazily so `import medtransfer.analysis.cli` pulls no torch.
"""

_EXPORTS = {
    "linear_cka": "similarity", "pwcca": "similarity", "cca": "similarity", "mean_cca": "similarity",
    "flatten_activations": "similarity", "filter_change": "weights", "layer_filter_change": "weights",
    "feature_reuse": "weights", "layer_activations": "activations", "list_layers": "activations",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"medtransfer.analysis.{_EXPORTS[name]}"), name)
    raise AttributeError(name)


__all__ = ["cca", "feature_reuse", "filter_change", "flatten_activations", "layer_activations",
           "layer_filter_change", "linear_cka", "list_layers", "mean_cca", "pwcca"]
