"""Checkpoint file → tensors named like our modules, by the source's declared rules only.

Order: read (weights_only) → pick the container → reject layouts we cannot map → drop declared keys →
split off decoder tensors (whole networks) → strip anchored prefixes → rename by anchored regex. Nothing is
inferred ("first container that exists", substring replace): each of those has silently loaded the wrong
tensors in published transfer code (timm preferring `model_ema`, DINO's `replace('backbone.', '')`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from medtransfer.errors import WeightsError


def read_checkpoint(path: Path, trust_pickle: bool = False):
    """The file's top-level object. Pickles are opened with weights_only=True unless the user vouches for it."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if path.suffix == ".npz":
            raise WeightsError(f"{path}: .npz (JAX) files are not read here; use the source's timm hub "
                               f"safetensors copy (same tensors, timm names)")
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except WeightsError:
        raise
    except Exception as e:  # noqa: BLE001 - every reader error becomes one clear line
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        # torch names weights_only in every refusal; "Unsupported operand" means the bytes are no pickle at all
        # (an HTML error page saved as .pth): corrupt, never a file to unpickle with --trust-pickle
        if ("weights_only" in str(e) or "Unsupported global" in str(e)) and "Unsupported operand" not in str(e):
            raise WeightsError(f"{path}: holds non-tensor Python objects that weights_only=True refuses ({msg}); "
                               f"if you trust it, `medtransfer pretrain convert {path} --source S --encoder E "
                               f"--trust-pickle` writes a tensors-only safetensors file") from None
        raise WeightsError(f"{path}: cannot be read as a checkpoint ({type(e).__name__}: {msg}); "
                           f"corrupt or truncated? delete it and re-fetch") from None


def unwrap(obj, container: str | None, path: Path | str = "checkpoint") -> tuple[dict, list[str]]:
    """(state dict, other top-level keys deliberately not read). The container is named, never guessed."""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: top level is a {type(obj).__name__}, not a dict of tensors")
    if container:
        if container not in obj:
            raise WeightsError(f"{path}: no container key {container!r} (top-level keys: {sorted(obj)[:10]}); "
                               f"a different source's file?")
        state, others = obj[container], sorted(k for k in obj if k != container)
    else:
        state, others = obj, []
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: {container or 'top level'} is a {type(state).__name__}, not a state dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{path}: {container or 'top level'} holds non-tensors {bad[:6]}; the file is not a flat "
                           f"state dict here (a container key to declare? top-level keys: {sorted(obj)[:10]})")
    return dict(state), others


def _compile(rules) -> list[tuple[re.Pattern, str]]:
    return [(re.compile(p if p.startswith("^") else "^" + p), r) for p, r in (rules or [])]


def _rename(key: str, rules) -> str:
    for pat, repl in rules:
        if pat.match(key):
            return pat.sub(repl, key, count=1)
    return key


def _strip(key: str, prefixes) -> str:
    for p in prefixes:
        if key.startswith(p):
            return key[len(p):]
    return key


def map_state(state: Mapping[str, torch.Tensor], spec: Mapping, where: str = "checkpoint") -> dict:
    """{"encoder": {...}, "decoder": {...}, "dropped": {prefix: n}}: every raw key is either dropped by a
    declared prefix or mapped to a name; two keys mapping to one name is an error (a wrong rule)."""
    for pattern, reason in spec.get("reject") or []:
        hits = sorted(k for k in state if re.search(pattern, k))
        if hits:
            raise WeightsError(f"{where}: {reason}; {len(hits)} keys cannot be mapped: {hits[:8]}"
                               f"{'...' if len(hits) > 8 else ''}")
    drop = tuple(spec.get("drop") or [])
    dec = spec.get("decoder") or {}
    dec_select, dec_drop = dec.get("select"), tuple(dec.get("drop") or [])
    strip = list(spec.get("strip") or [])
    rules, dec_rules = _compile(spec.get("rename")), _compile(dec.get("rename"))
    out: dict = {"encoder": {}, "decoder": {}, "dropped": {}}
    origin: dict[tuple[str, str], str] = {}
    for key, value in state.items():
        hit = next((p for p in drop + dec_drop if key.startswith(p)), None)
        if hit is not None:
            out["dropped"][hit] = out["dropped"].get(hit, 0) + 1
            continue
        if dec_select and key.startswith(dec_select):
            part, new = "decoder", _rename(key[len(dec_select):], dec_rules)
        else:
            part, new = "encoder", _rename(_strip(key, strip), rules)
        if (part, new) in origin:
            raise WeightsError(f"{where}: keys {origin[part, new]!r} and {key!r} both map to {part} {new!r}; "
                               f"the source's strip/rename rules do not fit this file")
        origin[part, new] = key
        out[part][new] = value
    return out
