"""Load a pretraining source into the model and account for every key.

A `strict=False` load that silently drops weights is the classic way a transfer study goes wrong (Keras
conv biases, MoCo prefixes, timm turning strict off when num_classes differs). Here the file's tensors, after
the source's declared drops, must cover the encoder's keys exactly (only declared `allow_missing` prefixes and
`num_batches_tracked` counters, which some converters do not write, may be absent); anything else fails
loudly with the keys that did not map. The first read of a file is converted once to a canonical safetensors
file plus a JSON record next to it, so later runs never unpickle it again. The record of what was loaded goes
into results.json.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from medtransfer.errors import WeightsError
from medtransfer.pretrain.fetch import file_url, resolve, verify, weights_dir
from medtransfer.pretrain.mapping import map_state, read_checkpoint, unwrap
from medtransfer.pretrain.registry import available_encoders, check_pretrain, file_spec, normalisation, plain

__all__ = [
    "available_encoders",
    "canonical_state",
    "check_pretrain",
    "load_into",
    "load_pretrained",
    "normalisation",
]

CANONICAL_VERSION = 1
NBT = "num_batches_tracked"


def _fingerprint(spec: Mapping) -> str:
    """Hash of the mapping rules: editing a source's rules invalidates its canonical files."""
    rules = {k: spec.get(k) for k in ("container", "drop", "strip", "rename", "reject", "decoder")}
    return hashlib.sha256(json.dumps(rules, sort_keys=True, default=str).encode()).hexdigest()[:16]


def canonical_state(source: str, encoder: str, spec: Mapping, path: Path, sha: str, *,
                    trust_pickle: bool = False, out_dir: Path | None = None) -> tuple[dict, dict]:
    """(mapped tensors {"encoder":…, "decoder":…}, conversion record). Reads the original only when no
    canonical file for this exact file (sha256) and these rules exists yet."""
    out_dir = Path(out_dir) if out_dir else weights_dir(source, encoder) / "canonical"
    stem = f"{Path(path).name}.{sha[:12]}"
    st_path, js_path = out_dir / f"{stem}.safetensors", out_dir / f"{stem}.json"
    fp = _fingerprint(spec)
    if st_path.is_file() and js_path.is_file():
        meta = json.loads(js_path.read_text())
        if meta.get("file_sha256") == sha and meta.get("rules") == fp and meta.get("version") == CANONICAL_VERSION:
            from safetensors.torch import load_file

            flat = load_file(str(st_path))
            mapped = {"encoder": {}, "decoder": {}}
            for k, v in flat.items():
                part, _, name = k.partition(".")
                mapped[part][name] = v
            meta["canonical"] = str(st_path)
            return mapped, meta
    state, ignored = unwrap(read_checkpoint(path, trust_pickle), spec.get("container"), path)
    mapped = map_state(state, spec, where=f"{path} (pretrain={source})")
    meta = {"version": CANONICAL_VERSION, "source": source, "encoder": encoder, "file": str(path),
            "file_sha256": sha, "url": file_url(spec), "rules": fp, "container": spec.get("container"),
            "ignored_containers": ignored, "dropped": mapped.pop("dropped"),
            "tensors": {part: len(t) for part, t in mapped.items()}}
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    flat = {f"{part}.{k}": v.detach().contiguous().clone() for part, t in mapped.items() for k, v in t.items()}
    tmp = st_path.with_suffix(".part")
    save_file(flat, str(tmp))
    tmp.replace(st_path)
    js_path.write_text(json.dumps(meta, indent=1))
    meta["canonical"] = str(st_path)
    return mapped, meta


def _resize(module: torch.nn.Module, key: str, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Position tables for a different input size: ViT abs pos_embed, Swin relative-position bias tables."""
    if key.endswith("pos_embed") and v.ndim == 3:
        from timm.layers import resample_abs_pos_embed

        n_prefix = int(getattr(module, "num_prefix_tokens", 1))
        grid = round((t.shape[1] - n_prefix) ** 0.5)
        return resample_abs_pos_embed(v, new_size=(grid, grid), num_prefix_tokens=n_prefix)
    if key.endswith("relative_position_bias_table"):
        from timm.layers import resize_rel_pos_bias_table

        sub = module.get_submodule(key[: -len(".relative_position_bias_table")])
        return resize_rel_pos_bias_table(v, new_window_size=sub.window_size, new_bias_shape=t.shape)
    return v


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str,
              allow_missing: tuple[str, ...] = (), what: str = "encoder") -> dict:
    """Exact key accounting, then a strict load. Returns counts and what was left at init."""
    target = module.state_dict()
    allow_missing = tuple(allow_missing)
    absent = sorted(k for k in target if k not in state)
    nbt = [k for k in absent if k.endswith(NBT)]
    missing = [k for k in absent if not k.endswith(NBT) and not k.startswith(allow_missing)]
    unexpected = sorted(k for k in state if k not in target)
    if missing or unexpected:
        raise WeightsError(
            f"pretrain={source}: keys do not map onto the {what}: {len(missing)} missing "
            f"{missing[:6]}{'...' if len(missing) > 6 else ''}, {len(unexpected)} unexpected "
            f"{unexpected[:6]}{'...' if len(unexpected) > 6 else ''}"
        )
    fixed, resized = dict(target), []
    for k, v in state.items():
        t = target[k]
        if v.shape != t.shape:
            v = _resize(module, k, v, t)
            if v.shape != t.shape:
                raise WeightsError(f"pretrain={source}: shape mismatch for {what} {k}: file {tuple(v.shape)} vs "
                                   f"model {tuple(t.shape)}")
            resized.append(k)
        fixed[k] = v.to(t.dtype)
    module.load_state_dict(fixed, strict=True)
    left = sorted(k for k in absent if not k.endswith(NBT))
    return {"tensors_loaded": len(state), "missing": left, "num_batches_tracked_absent": len(nbt),
            "resized": resized}


def _check_requires(backbone: torch.nn.Module, spec: Mapping, source: str, encoder: str) -> None:
    """Shape-identical but different architectures (MoCo v3 ViT-S: 12 heads, timm's default 6) load
    'fine' and compute something else; the source declares the attribute values it needs."""
    req = spec.get("requires") or {}
    for path, want in (req.get("attrs") or {}).items():
        mod, _, attr = path.rpartition(".")
        have = getattr(backbone.get_submodule(mod) if mod else backbone, attr, None)
        if have != want:
            sets = " ".join(f"encoder.timm_kwargs.{k}={v}" for k, v in (req.get("timm_kwargs") or {}).items())
            raise WeightsError(f"pretrain={source} encoder={encoder}: {req.get('why', 'architecture differs')} "
                               f"(backbone {path}={have}, needs {want}){'; set ' + sets if sets else ''}")


def load_pretrained(model: torch.nn.Module, pretrain_cfg: Mapping, encoder: str) -> dict:
    """Initialise `model.encoder.backbone` (and `model.decoder` for a whole network whose decoder matches)
    from the source; returns the record for results.json."""
    cfg = plain(pretrain_cfg)
    source = cfg["name"]
    record = {"source": source, "kind": cfg.get("kind"), "parts": [], "tensors_loaded": 0,
              "missing": [], "unexpected": [], "file": None, "file_sha256": None, "url": None,
              "recipe": cfg.get("recipe")}
    if cfg.get("kind") == "none":
        return record
    check_pretrain(cfg, encoder)
    spec = file_spec(cfg, encoder)
    backbone = model.encoder.backbone
    _check_requires(backbone, spec, source, encoder)
    if cfg.get("format") is not None:
        path = Path(str(cfg["path"])).expanduser().resolve()
        sha = verify(path, spec, source)
        mapped, meta = canonical_state(source, encoder, spec, path, sha,
                                       out_dir=weights_dir(source, sha[:12]) / "canonical")
    else:
        path = resolve(source, encoder, spec)
        sha = verify(path, spec, source)
        mapped, meta = canonical_state(source, encoder, spec, path, sha)
    if not mapped["encoder"]:
        raise WeightsError(f"pretrain={source}: {path} has no encoder tensors after the declared drops")
    enc = load_into(backbone, mapped["encoder"], source, tuple(spec.get("allow_missing") or ()))
    record.update(parts=["encoder"], tensors_loaded=enc["tensors_loaded"], missing=enc["missing"],
                  tensors_by_part={"encoder": enc["tensors_loaded"]},
                  num_batches_tracked_absent=enc["num_batches_tracked_absent"], resized=enc["resized"],
                  file=str(path), file_sha256=sha, url=file_url(spec), recipe=spec.get("recipe", cfg.get("recipe")),
                  container=spec.get("container"), ignored_containers=meta.get("ignored_containers", []),
                  dropped=meta.get("dropped", {}))
    dec = spec.get("decoder")
    if dec and mapped["decoder"]:
        model_dec = getattr(model, "decoder_name", None)
        if model_dec == dec.get("name") and getattr(model, "decoder", None) is not None:
            try:
                got = load_into(model.decoder, mapped["decoder"], source, what=f"{model_dec} decoder")
            except WeightsError as e:
                kw = ", ".join(f"{k}={v}" for k, v in (dec.get("kwargs") or {}).items())
                raise WeightsError(f"{e} (the checkpoint's decoder was built with {kw or 'its defaults'})") from None
            record["parts"].append("decoder")
            record["tensors_loaded"] += got["tensors_loaded"]
            record["tensors_by_part"]["decoder"] = got["tensors_loaded"]
            record["num_batches_tracked_absent"] += got["num_batches_tracked_absent"]
        else:
            record["decoder_skipped"] = (f"checkpoint has a {dec.get('name')} decoder, the model a {model_dec} "
                                         f"decoder: encoder only")
    return record
