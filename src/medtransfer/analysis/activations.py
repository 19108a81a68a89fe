"""Layer activations of any nn.Module by module name (forward hooks), for the similarity measures.

Names are `model.named_modules()` names (e.g. "encoder.backbone.layer2", "decoder.blocks.0"), so the same
names address the same layer in two models of one architecture. Hooks are always removed, even on error.
"""

from __future__ import annotations

from collections.abc import Sequence


def list_layers(model, max_depth: int | None = None) -> list[str]:
    """Module names usable as layer_names (the root excluded); max_depth limits the dotted depth."""
    names = [n for n, _ in model.named_modules() if n]
    if max_depth is not None:
        names = [n for n in names if n.count(".") < max_depth]
    return names


def layer_activations(model, images, layer_names: Sequence[str], batch_size: int = 16,
                      device: str | None = None) -> dict:
    """{layer name: output tensor (N, ...) on the CPU, float32} for `images` (N, C, H, W), in eval mode.

    A layer whose output is a list/tuple (e.g. a whole encoder returning its feature pyramid) is rejected:
    name one of its children instead. The model's train/eval mode is restored afterwards.
    """
    import torch

    modules = dict(model.named_modules())
    unknown = [n for n in layer_names if n not in modules]
    if unknown:
        sample = ", ".join(list_layers(model, max_depth=3)[:25])
        raise ValueError(f"unknown layer(s) {', '.join(unknown)}; some valid names: {sample}, ...")
    images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images[None]
    dev = torch.device(device) if device else next((p.device for p in model.parameters()), torch.device("cpu"))
    store: dict[str, list] = {n: [] for n in layer_names}

    def hook_for(name):
        def hook(_module, _inputs, output):
            if not torch.is_tensor(output):
                raise ValueError(f"layer {name!r} outputs a {type(output).__name__}, not a tensor; "
                                 "name one of its sub-modules")
            store[name].append(output.detach().float().cpu())

        return hook

    handles = [modules[n].register_forward_hook(hook_for(n)) for n in layer_names]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                model(images[i : i + batch_size].to(dev))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: torch.cat(v) for n, v in store.items()}
