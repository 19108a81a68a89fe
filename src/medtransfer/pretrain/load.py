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
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from medtransfer.configs import plain
from medtransfer.errors import WeightsError
from medtransfer.pretrain.fetch import file_url, resolve, verify, weights_dir
from medtransfer.pretrain.mapping import map_state, read_checkpoint, unwrap
from medtransfer.pretrain.registry import (
    available_encoders,
    check_pretrain,
    file_spec,
    normalisation,
    resolve_normalisation,
)

__all__ = [
    "account",
    "available_encoders",
    "canonical_state",
    "check_file",
    "check_pretrain",
    "fits",
    "load_into",
    "load_pretrained",
    "normalisation",
    "resolve_normalisation",
]

CANONICAL_VERSION = 1
NBT = "num_batches_tracked"


def _fingerprint(spec: Mapping) -> str:
    """Hash of the mapping rules: editing a source's rules invalidates its canonical files."""
    rules = {k: spec.get(k) for k in ("container", "drop", "strip", "rename", "reject", "decoder")}
    return hashlib.sha256(json.dumps(rules, sort_keys=True, default=str).encode()).hexdigest()[:16]


def canonical_state(source: str, encoder: str | None, spec: Mapping, path: Path, sha: str, *,
                    trust_pickle: bool = False, out_dir: Path | None = None, name: str | None = None,
                    check: Callable[[dict], None] | None = None) -> tuple[dict, dict]:
    """(mapped tensors {"encoder":…, "decoder":…}, conversion record). Reads the original only when no
    canonical file for this exact file (sha256) and these rules exists yet. `check` (the exact key accounting)
    runs on the mapped tensors before a new canonical file is written, so a file that fits nothing leaves
    no twin behind; `name` is the file's name in the cache when `path` is a download or a copy in flight."""
    out_dir = Path(out_dir) if out_dir else weights_dir(source, encoder) / "canonical"
    stem = f"{name or Path(path).name}.{sha[:12]}"
    st_path, js_path = out_dir / f"{stem}.safetensors", out_dir / f"{stem}.json"
    fp = _fingerprint(spec)
    if st_path.is_file() and js_path.is_file():
        meta = json.loads(js_path.read_text())
        if meta.get("file_sha256") == sha and meta.get("rules") == fp and meta.get("version") == CANONICAL_VERSION:
            from safetensors.torch import load_file

            flat = load_file(str(st_path))
            mapped = {"encoder": {}, "decoder": {}}
            for k, v in flat.items():
                part, _, key = k.partition(".")
                mapped[part][key] = v
            if check is not None:
                check(mapped)
            meta["canonical"] = str(st_path)
            return mapped, meta
    state, ignored = unwrap(read_checkpoint(path, trust_pickle), spec.get("container"), path)
    mapped = map_state(state, spec, where=f"{path} (pretrain={source})")
    meta = {"version": CANONICAL_VERSION, "source": source, "encoder": encoder, "file": str(path),
            "file_sha256": sha, "url": file_url(spec), "rules": fp, "container": spec.get("container"),
            "ignored_containers": ignored, "dropped": mapped.pop("dropped"),
            "tensors": {part: len(t) for part, t in mapped.items()}}
    if check is not None:
        check(mapped)
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    flat = {f"{part}.{k}": v.detach().contiguous().clone() for part, t in mapped.items() for k, v in t.items()}
    tmp = st_path.with_name(st_path.name + ".part")
    save_file(flat, str(tmp))
    os.replace(tmp, st_path)
    tmp = js_path.with_name(js_path.name + ".part")  # the record last: a twin counts only once both are whole
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, js_path)
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


class KeyMismatch(WeightsError):
    """A file's tensors do not fit a module; `short` is the reason in a few words (for a list of encoders tried)."""

    def __init__(self, message: str, short: str):
        super().__init__(message)
        self.short = short


def account(module: torch.nn.Module, state: Mapping[str, torch.Tensor], label: str,
            allow_missing: tuple[str, ...] = (), what: str = "encoder") -> tuple[dict, dict]:
    """Exact key accounting and shapes (position tables resampled): (the full state dict to load, counts).
    Pure, so it also runs against a meta-device backbone to check a file before it enters the cache."""
    target = module.state_dict()
    allow_missing = tuple(allow_missing)
    absent = sorted(k for k in target if k not in state)
    nbt = [k for k in absent if k.endswith(NBT)]
    missing = [k for k in absent if not k.endswith(NBT) and not k.startswith(allow_missing)]
    unexpected = sorted(k for k in state if k not in target)
    if missing or unexpected:
        raise KeyMismatch(f"{label}: keys do not map onto the {what}: {len(missing)} missing "
                          f"{missing[:6]}{'...' if len(missing) > 6 else ''}, {len(unexpected)} unexpected "
                          f"{unexpected[:6]}{'...' if len(unexpected) > 6 else ''}",
                          f"{len(missing)} missing, {len(unexpected)} unexpected")
    fixed, resized = dict(target), []
    for k, v in state.items():
        t = target[k]
        if v.shape != t.shape:
            v = _resize(module, k, v, t)
            if v.shape != t.shape:
                raise KeyMismatch(f"{label}: shape mismatch for {what} {k}: file {tuple(v.shape)} vs model "
                                  f"{tuple(t.shape)}", f"{k} is {tuple(v.shape)}, not {tuple(t.shape)}")
            resized.append(k)
        fixed[k] = v.to(t.dtype)
    left = sorted(k for k in absent if not k.endswith(NBT))
    return fixed, {"tensors_loaded": len(state), "missing": left, "num_batches_tracked_absent": len(nbt),
                   "resized": resized}


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str,
              allow_missing: tuple[str, ...] = (), what: str = "encoder") -> dict:
    """Exact key accounting, then a strict load. Returns counts and what was left at init."""
    fixed, counts = account(module, state, f"pretrain={source}", allow_missing, what)
    module.load_state_dict(fixed, strict=True)
    return counts


def fits(backbone: torch.nn.Module, mapped: Mapping, spec: Mapping, label: str, what: str = "encoder") -> dict:
    """The encoder half of a mapped file accounts exactly for `backbone` (a run's load, without loading)."""
    if not mapped["encoder"]:
        raise KeyMismatch(f"{label}: no encoder tensors after the declared drops", "no encoder tensors")
    return account(backbone, mapped["encoder"], label, tuple(spec.get("allow_missing") or ()), what)[1]


def check_file(source: str, encoder: str, spec: Mapping, path: Path, backbone: torch.nn.Module, *,
               name: str | None = None) -> None:
    """A file fits: published hash, read and map (or its canonical twin), exact key accounting against
    `backbone`; every failure is a one-line WeightsError naming `path`. What a download passes before it
    enters the cache, and what `fetch` runs on a file already there."""
    sha = verify(path, spec, source)
    canonical_state(source, encoder, spec, path, sha, name=name,
                    check=lambda m: fits(backbone, m, spec, f"{path} (pretrain={source})", f"{encoder} encoder"))


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
    out_dir = None
    if cfg.get("format") is not None:
        path = Path(str(cfg["path"])).expanduser().resolve()
        sha = verify(path, spec, source)
        out_dir = weights_dir(source, sha[:12]) / "canonical"
    else:  # a download enters the cache only if it fits this backbone
        path = resolve(source, encoder, spec,
                       check=lambda tmp, dest: check_file(source, encoder, spec, tmp, backbone, name=dest.name))
        sha = verify(path, spec, source)
    mapped, meta = canonical_state(source, encoder, spec, path, sha, out_dir=out_dir,
                                   check=lambda m: fits(backbone, m, spec, f"pretrain={source}"))
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
