"""`medtransfer pretrain fetch`: a source's file in the weights cache, checked the way a run will load it.

The cache is trusted by every later run, so nothing enters it (download, `convert`) and nothing already in it
passes `fetch` (a file placed by hand, or left by an older version) unless it fits: the published hashes,
then a read and map by the source's rules, then the exact key accounting of a run against the encoder's
backbone. The backbone is built on the meta device: keys and shapes without memory or init time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import torch

from medtransfer.configs import Catalogue
from medtransfer.errors import ConfigError
from medtransfer.pretrain.fetch import cache_path, resolve
from medtransfer.pretrain.load import KeyMismatch, check_file
from medtransfer.pretrain.registry import check_pretrain, file_spec

IMAGE_SIZE = 224  # the size the published files were trained at; other sizes are resampled by the load anyway


def target_backbone(encoder_cfg: Mapping, spec: Mapping | None = None) -> torch.nn.Module:
    """`model.encoder.backbone` as a run builds it from this encoder config (with the timm kwargs the source
    requires), on the meta device."""
    from medtransfer.models import EncoderSpec, TimmEncoder

    enc = EncoderSpec.from_cfg(encoder_cfg)
    required = ((spec or {}).get("requires") or {}).get("timm_kwargs") or {}
    enc = dataclasses.replace(enc, timm_kwargs={**enc.timm_kwargs, **required})
    with torch.device("meta"):
        return TimmEncoder(enc, image_size=IMAGE_SIZE).backbone


def fetch(source: str, encoder: str, catalogue: Catalogue) -> Path:
    """The cache path of the source's file for this encoder, downloaded at most once, checked every time.
    `catalogue`: the application's `pretrain` and `encoder` options (unknown names fail naming the choices)."""
    cfg = catalogue.get("pretrain", source, "pretrain source")
    encoder_cfg = catalogue.get("encoder", encoder)
    check_pretrain(cfg, encoder)
    spec = file_spec(cfg, encoder)
    if spec is None:
        raise ConfigError(f"pretrain={source} has no file to fetch (nothing to download)")
    backbone = target_backbone(encoder_cfg, spec)

    def check(file: Path, dest: Path) -> None:
        check_file(source, encoder, spec, file, backbone, name=dest.name)

    path = cache_path(source, encoder, spec)
    if path.is_file():  # placed by hand or left by an older version: trusted by no run until it passes
        try:
            check(path, path)
        except KeyMismatch as e:
            raise KeyMismatch(f"{e}; delete it, then fetch again or convert the right file", e.short) from None
    else:
        resolve(source, encoder, spec, check=check)
    return path
