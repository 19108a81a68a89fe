"""The `pretrain` group as data: one `conf/pretrain/<source>.yaml` per source, one `files.<encoder>` entry per file.

Everything that differs between sources (URL, published hash, container key, prefixes, renames, keys to drop,
layouts to reject, normalisation) is a field of that entry, so adding a source is adding a yaml file and a
format-faithful test, never a new code path. Field names are checked here so a typo fails at config time
instead of silently turning a check off.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medtransfer.configs import plain
from medtransfer.errors import ConfigError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# fields of one `files.<encoder>` entry (or of `format:` for the `file` source)
FILE_FIELDS = {
    "url": "download URL as published",
    "hf_repo": "Hugging Face repo id (instead of url)",
    "revision": "HF revision (pin where known)",
    "filename": "file name in the cache (default: URL basename)",
    "download": "auto | manual (no direct link: place the file by hand)",
    "page": "where to get a manual file",
    "sha256": "full SHA-256 as published",
    "sha256_prefix": "SHA-256 prefix published in the file name (torchvision, OpenMMLab)",
    "md5_prefix": "md5 prefix published in the README (MoCo, MAE)",
    "container": "top-level key holding the state dict (null = the file is the state dict)",
    "ignore_containers": "other top-level keys that exist and are deliberately not read (e.g. model_ema)",
    "drop": "raw-key prefixes dropped before anything else (heads, projectors, momentum encoders)",
    "strip": "raw-key prefixes removed (startswith, never substring replace)",
    "rename": "ordered [regex, replacement] pairs; the first that matches at the start of a key is applied",
    "reject": "[regex, reason] pairs: a raw key matching one means a layout we cannot map (fail loudly)",
    "allow_missing": "encoder-key prefixes the file does not have (left at init, listed in the record)",
    "requires": "{attrs: {module.attr: value}, timm_kwargs: {...}, why: ...} the encoder must match",
    "decoder": "{name, select, drop, rename, kwargs}: decoder tensors of a whole segmentation network",
    "mean": "normalisation mean this file was trained with (wins over the source's source_mean)",
    "std": "normalisation std this file was trained with (wins over the source's source_std)",
    "recipe": "training recipe (a confound worth recording)",
    "note": "free text",
}
DECODER_FIELDS = {"name", "select", "drop", "rename", "kwargs"}
SOURCE_FIELDS = {
    "name", "kind", "dataset", "method", "encoders", "files", "format", "path", "mean", "std", "source_mean",
    "source_std", "licence", "citation", "caveats", "recipe", "rejected",
}  # fmt: skip
# where normalisation comes from, highest precedence first (resolve_normalisation; recorded in results.json)
NORM_ORIGINS = ("override", "file", "source", "default")


def available_encoders(pretrain_cfg: Mapping) -> list[str] | str:
    if pretrain_cfg.get("encoders") == "all":
        return "all"
    return sorted((pretrain_cfg.get("files") or {}).keys())


def _check_fields(where: str, got: Mapping, valid) -> None:
    bad = sorted(set(got) - set(valid))
    if bad:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(bad)}; valid fields: {', '.join(sorted(valid))}")


def validate_source(cfg: Mapping) -> None:
    """Field names of a source file and of each of its entries (typos fail here, not silently at load)."""
    name = cfg.get("name", "?")
    _check_fields(f"conf/pretrain/{name}.yaml", cfg, SOURCE_FIELDS)
    entries = dict(cfg.get("files") or {})
    if cfg.get("format") is not None:
        entries["format"] = cfg["format"]
    for enc, spec in entries.items():
        where = f"conf/pretrain/{name}.yaml files.{enc}"
        _check_fields(where, spec, FILE_FIELDS)
        if spec.get("decoder") is not None:
            _check_fields(where + ".decoder", spec["decoder"], DECODER_FIELDS)
        if spec.get("download", "auto") not in ("auto", "manual"):
            raise ConfigError(f"{where}: download must be auto or manual, got {spec['download']!r}")


def file_spec(pretrain_cfg: Mapping, encoder: str) -> dict | None:
    """The (plain, validated) entry describing this source's file for this encoder; None if there is none."""
    cfg = plain(pretrain_cfg)
    validate_source(cfg)
    if cfg.get("format") is not None:  # the `file` source: one declared format for any encoder
        return dict(cfg["format"])
    spec = (cfg.get("files") or {}).get(encoder)
    return dict(spec) if spec is not None else None


def check_pretrain(pretrain_cfg: Mapping, encoder: str, encoder_cfg: Mapping | None = None,
                   decoder_cfg: Mapping | None = None) -> None:
    """Config-time check, no file access beyond the `file` source's path: the source exists for this encoder,
    the encoder is built the way the checkpoint needs (e.g. 12 heads), a whole-network decoder matches, the
    normalisation resolves (half an override fails here, not after the data is cached)."""
    cfg = plain(pretrain_cfg)
    validate_source(cfg)
    name = cfg.get("name")
    rejected = (cfg.get("rejected") or {}).get(encoder)
    if rejected:
        raise ConfigError(f"pretrain={name} encoder={encoder}: {rejected}")
    avail = available_encoders(cfg)
    if avail != "all" and encoder not in avail:
        raise ConfigError(f"pretrain={name} has no weights for encoder={encoder}; "
                          f"valid encoders for it: {', '.join(avail) or 'none'}")
    if cfg.get("format") is not None:
        path = cfg.get("path")
        if not path:
            raise ConfigError(f"pretrain={name} needs pretrain.path=FILE (a local checkpoint in the declared format)")
        if not Path(str(path)).expanduser().is_file():
            raise ConfigError(f"pretrain={name}: pretrain.path={path} is not a file")
    resolve_normalisation(cfg, encoder)
    spec = file_spec(cfg, encoder) or {}
    req = spec.get("requires") or {}
    if encoder_cfg is not None and req.get("timm_kwargs"):
        have = dict(plain(encoder_cfg).get("timm_kwargs") or {})
        wrong = {k: v for k, v in req["timm_kwargs"].items() if have.get(k) != v}
        if wrong:
            sets = " ".join(f"encoder.timm_kwargs.{k}={v}" for k, v in wrong.items())
            raise ConfigError(f"pretrain={name} encoder={encoder}: {req.get('why', 'architecture differs')}; "
                              f"set {sets}")
    dec = spec.get("decoder")
    if decoder_cfg is not None and dec and plain(decoder_cfg).get("name") == dec.get("name"):
        have = dict(plain(decoder_cfg).get("kwargs") or {})
        wrong = {k: v for k, v in (dec.get("kwargs") or {}).items() if have.get(k) != v}
        if wrong:
            sets = " ".join(f"decoder.kwargs.{k}={v}" for k, v in wrong.items())
            raise ConfigError(f"pretrain={name} is a whole {dec['name']} network whose decoder weights need {sets} "
                              f"(or use another decoder to load the encoder only)")


def resolve_normalisation(pretrain_cfg: Mapping, encoder: str) -> tuple[list[float], list[float], str]:
    """(mean, std, origin): the one place that decides the input normalisation, and why.

    A mean/std other than the one the weights were trained with is a silent confound, and a run whose
    condition name carries `pretrain.mean=...` must have trained with it. Precedence (NORM_ORIGINS):
    `pretrain.mean/std` ("override": null in every source yaml, so only the command line or an experiment
    sets it) > `files.<encoder>.mean/std` ("file": e.g. AugReg ViTs, 0.5) > `source_mean/std` ("source")
    > ImageNet's ("default"). Each level is a pair: half of one is a ConfigError, never mixed with another.
    """
    cfg = plain(pretrain_cfg)
    spec = file_spec(cfg, encoder) or {}
    where = f"conf/pretrain/{cfg.get('name')}.yaml "
    per_file = "format." if cfg.get("format") is not None else f"files.{encoder}."
    levels = (("override", cfg, "mean", "std", "pretrain."), ("file", spec, "mean", "std", where + per_file),
              ("source", cfg, "source_mean", "source_std", where))
    for origin, entry, mean_key, std_key, label in levels:
        mean, std = entry.get(mean_key), entry.get(std_key)
        if mean is None and std is None:
            continue
        if mean is None or std is None:
            have, lack = (mean_key, std_key) if std is None else (std_key, mean_key)
            raise ConfigError(f"pretrain={cfg.get('name')}: {label}{have} is set but {label}{lack} is not; "
                              f"set both (normalisation is a mean/std pair)")
        return [float(x) for x in mean], [float(x) for x in std], origin
    return list(IMAGENET_MEAN), list(IMAGENET_STD), "default"


def normalisation(pretrain_cfg: Mapping, encoder: str) -> tuple[list[float], list[float]]:
    """(mean, std) as resolve_normalisation decides them, for callers that do not record the origin."""
    mean, std, _ = resolve_normalisation(pretrain_cfg, encoder)
    return mean, std


def _norm_cell(cfg: Mapping) -> str:
    """The source's own mean/std, then each group of files trained with another pair."""
    own = (cfg.get("source_mean") or IMAGENET_MEAN, cfg.get("source_std") or IMAGENET_STD)
    groups: dict[tuple, list[str]] = {}
    for enc, spec in (cfg.get("files") or {}).items():
        pair = (spec.get("mean"), spec.get("std"))
        if pair != (None, None) and pair != own:
            groups.setdefault((str(pair[0]), str(pair[1])), []).append(enc)
    return "; ".join([f"{own[0]} / {own[1]}", *(f"{', '.join(e)}: {m} / {s}" for (m, s), e in groups.items())])


def sources_markdown(all_sources: Mapping[str, Mapping]) -> str:
    """The README table of sources (provenance + caveats), generated from the configs so it cannot drift."""
    rows = ["| source | kind | data | encoders | file(s) | hash | mean/std | licence | caveats |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, cfg in all_sources.items():
        encs = available_encoders(cfg)
        files, hashes = [], []
        for enc, spec in (cfg.get("files") or {}).items():
            where = spec.get("url") or (f"hf:{spec['hf_repo']}" if spec.get("hf_repo") else spec.get("page", ""))
            manual = " (manual)" if spec.get("download") == "manual" else ""
            files.append(f"{enc}: {where}{manual}")
            for key in ("sha256", "sha256_prefix", "md5_prefix"):
                if spec.get(key):
                    hashes.append(f"{enc} {key.replace('_prefix', '')} {spec[key][:12]}")
        cells = [f"`{name}`", str(cfg.get("kind", "")), str(cfg.get("dataset", "")),
                 encs if isinstance(encs, str) else ", ".join(encs), "<br>".join(files) or "–",
                 "<br>".join(hashes) or "none published", _norm_cell(cfg), str(cfg.get("licence", "")),
                 " ".join(str(cfg.get(k, "")).strip() for k in ("recipe", "caveats")).strip()]
        rows.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def sources_summary_markdown(all_sources: Mapping[str, Mapping]) -> str:
    """The README's short table: where each source comes from and its caveats (SOURCES.md adds URLs, hashes, normalisation, licence)."""
    from urllib.parse import urlparse

    rows = ["| source | kind | pretrained on | encoders | from | caveats |", "|---|---|---|---|---|---|"]
    for name, cfg in all_sources.items():
        encs = available_encoders(cfg)
        hosts = []
        for spec in (cfg.get("files") or {}).values():
            where = (urlparse(spec["url"]).netloc if spec.get("url") else
                     f"HF {spec['hf_repo'].split('/')[0]}" if spec.get("hf_repo") else
                     urlparse(spec.get("page", "")).netloc or "local file")
            hosts.append(where + (" (manual)" if spec.get("download") == "manual" else ""))
        cells = [f"`{name}`", str(cfg.get("kind", "")), str(cfg.get("dataset", "")),
                 encs if isinstance(encs, str) else ", ".join(encs), ", ".join(dict.fromkeys(hosts)) or "–",
                 " ".join(str(cfg.get("caveats", "")).split()) or "–"]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


README_MARKERS = ("<!-- sources:start (generated: medtransfer pretrain docs) -->", "<!-- sources:end -->")


def write_readme_table(path: Path, all_sources: Mapping[str, Mapping]) -> Path:
    """Replace the block between README_MARKERS in `path` with `sources_summary_markdown(all_sources)`."""
    text = path.read_text()
    start, end = README_MARKERS
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + start + "\n" + sources_summary_markdown(all_sources) + end + tail)
    return path


SOURCES_MD = Path(__file__).with_name("SOURCES.md")


def write_sources_md(all_sources: Mapping[str, Mapping], path: Path) -> Path:
    """Regenerate SOURCES.md (this folder) from every source config (`medtransfer pretrain docs`)."""
    head = ("# Pretraining sources\n\nGenerated from `conf/pretrain/*.yaml` by `medtransfer pretrain docs`"
            " (a test fails when it is stale). \"manual\": no direct link; the loader's error names the page and the"
            " exact cache path to place the file at. mean/std: the source's own (`source_mean/std`, else ImageNet's),"
            " then the files trained with another pair (`files.<enc>.mean/std`); `pretrain.mean=[..] pretrain.std=[..]`"
            " on the command line wins over both.\n\n")
    path.write_text(head + sources_markdown(all_sources))
    return path
