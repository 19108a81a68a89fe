"""Encoder adapters: a plain timm model (`.backbone`) plus the feature extraction around it.

Every encoder is ``timm.create_model(timm_name, pretrained=False, num_classes=0, ...)`` kept whole, so
``encoder.backbone.state_dict()`` has exactly timm's key names: a pretrained checkpoint in timm layout
loads into it key for key (``backbone_key_map`` is therefore the identity). Features come from timm's
``forward_intermediates`` (not ``features_only``, which renames / drops modules).

Two kinds of backbone (the encoder yaml's ``family`` decides):

* hierarchical (``cnn``, ``swin``): the feature-info levels at strides 2/4/8/16/32 (stride 2 only where
  the model has one) are returned in smp's convention ``[x, s2, s4, s8, s16, s32]``; a missing stride-2
  level is a 0-channel placeholder, exactly as smp does for transformer-style timm encoders.
* plain (``vit``): ``out_indices`` blocks (4 evenly spaced, as UPerNet-ViT / DPT) at stride 16, each with
  timm's final LayerNorm applied (``final_norm``), plus their prefix (cls) tokens. DPT consumes these
  directly; every other decoder gets them through :class:`ViTPyramidNeck`.

Facts that differ per encoder are fields of ``conf/encoder/<name>.yaml`` (see :class:`EncoderSpec`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from medtransfer.configs import plain
from medtransfer.errors import ConfigError

FAMILIES = ("cnn", "swin", "vit")
PLAIN_FAMILIES = ("vit",)  # single-stride backbones: need a feature pyramid for most decoders
PYRAMID_STRIDES = (4, 8, 16, 32)  # what every decoder is given (plus stride 2 where it exists)
MAX_STRIDE = 32


def spec_fields(cls, cfg: Mapping, what: str, required: tuple[str, ...]) -> dict:
    """A yaml's fields as a plain dict, checked against the spec dataclass `cls`: the required ones are set and
    none is unknown (a typo fails here, naming the valid fields, instead of silently keeping a default)."""
    d = dict(plain(cfg))
    known = {f.name for f in fields(cls)}
    for key in required:
        if not d.get(key):
            raise ConfigError(f"{what} config is missing {key!r} (fields: {', '.join(sorted(known))})")
    extra = sorted(set(d) - known)
    if extra:
        raise ConfigError(
            f"{what} {d['name']!r}: unknown field(s) {', '.join(extra)}; valid fields: {', '.join(sorted(known))}"
        )
    return d


@dataclass(frozen=True)
class EncoderSpec:
    """The fields of an encoder yaml (``conf/encoder/<name>.yaml``)."""

    name: str  # config name (= file stem), e.g. r50
    timm_name: str  # timm architecture, e.g. resnet50 (no pretrained tag: weights are loaded separately)
    family: str  # cnn | swin | vit
    patch_size: int | None = None  # vit / swin: the patch-embedding stride
    min_output_stride: int = 32  # finest deepest-feature stride without upsampling: 8 if timm can dilate
    # pass img_size=image_size to timm (ViT pos-embed / Swin attention masks sized at build)
    img_size_arg: bool = False
    final_norm: bool = False  # forward_intermediates(norm=...): apply timm's final norm to the taps
    out_indices: tuple[int, ...] | None = None  # vit: which blocks feed the decoder; None = all levels
    unused_params: tuple[str, ...] = ()  # backbone name prefixes the adapter never uses (documented, tested)
    timm_kwargs: dict = field(default_factory=dict)  # extra create_model kwargs (e.g. drop_path_rate)

    @classmethod
    def from_cfg(cls, cfg: Mapping) -> EncoderSpec:
        d = spec_fields(cls, cfg, "encoder", ("name", "timm_name", "family"))
        if d["family"] not in FAMILIES:
            raise ConfigError(
                f"encoder {d['name']!r}: unknown family {d['family']!r}; valid choices: {', '.join(FAMILIES)}"
            )
        if d.get("min_output_stride", 32) not in (8, 16, 32):
            raise ConfigError(f"encoder {d['name']!r}: min_output_stride must be 8, 16 or 32")
        if d["family"] in PLAIN_FAMILIES and (not d.get("patch_size") or not d.get("out_indices")):
            raise ConfigError(
                f"encoder {d['name']!r}: a {d['family']} encoder needs patch_size and out_indices"
            )
        if d["family"] in PLAIN_FAMILIES and len(d["out_indices"]) != len(PYRAMID_STRIDES):
            raise ConfigError(
                f"encoder {d['name']!r}: out_indices must name {len(PYRAMID_STRIDES)} blocks (one per pyramid level), "
                f"got {list(d['out_indices'])}"
            )
        for key in ("out_indices", "unused_params"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        d["timm_kwargs"] = dict(d.get("timm_kwargs") or {})
        return cls(**d)

    @property
    def plain(self) -> bool:
        return self.family in PLAIN_FAMILIES

    @property
    def size_multiple(self) -> int:
        """image_size must be a multiple of this: the patch size and the stride-32 pyramid level."""
        return math.lcm(MAX_STRIDE, self.patch_size or 1)

    def effective_output_stride(self, requested: int | None) -> int:
        """The deepest feature's stride: the decoder's request where the backbone can dilate, else its minimum."""
        return max(requested or MAX_STRIDE, self.min_output_stride)

    def check_image_size(self, image_size: int) -> None:
        m = self.size_multiple
        if (
            not isinstance(image_size, int)
            or isinstance(image_size, bool)
            or image_size <= 0
            or image_size % m
        ):
            why = f"patch size {self.patch_size}, and " if self.patch_size else ""
            lo = max(m, (image_size // m) * m) if isinstance(image_size, int) and image_size > 0 else m
            raise ConfigError(
                f"image_size {image_size!r} does not fit encoder {self.name!r} ({self.timm_name}): it must be a "
                f"multiple of {m} ({why}the decoders need stride-32 features), e.g. {lo} or {lo + m}"
            )


class TimmEncoder(nn.Module):
    """``backbone`` (the whole timm model) + feature extraction via ``forward_intermediates``.

    ``forward(x)`` returns ``(features, prefix_tokens)``:
      hierarchical: ``features = [x, s2, s4, s8, s16, s32]`` (smp convention; dilated levels keep the
      deepest stride), ``prefix_tokens = None``;
      plain (ViT): ``features`` = the ``out_indices`` block outputs (B, D, S/p, S/p), ``prefix_tokens`` =
      their cls tokens (B, 1, D).
    """

    def __init__(
        self, spec: EncoderSpec, in_channels: int = 3, image_size: int = 352, output_stride: int = 32
    ):
        super().__init__()
        import timm

        self.spec = spec
        self.in_channels = in_channels
        self.output_stride = spec.effective_output_stride(output_stride)
        kwargs: dict[str, Any] = dict(spec.timm_kwargs)
        kwargs.update(pretrained=False, num_classes=0, in_chans=in_channels)
        if spec.img_size_arg:
            kwargs["img_size"] = image_size
        if not spec.plain and self.output_stride != MAX_STRIDE:
            kwargs["output_stride"] = self.output_stride  # timm dilates the last stage(s)
        self.backbone = timm.create_model(spec.timm_name, **kwargs)

        info = self.backbone.feature_info
        if spec.plain:
            n = len(info)
            bad = [i for i in spec.out_indices if not -n <= i < n]
            if bad:
                raise ConfigError(f"encoder {spec.name!r}: out_indices {bad} outside the model's {n} blocks")
            self._indices = list(spec.out_indices)
            self.out_channels = [info[i]["num_chs"] for i in self._indices]
            self.reductions = [info[i]["reduction"] for i in self._indices]
            self.num_prefix_tokens = int(getattr(self.backbone, "num_prefix_tokens", 0))
        else:
            # the last 4 levels are the stride 4..32 slots, a 5th (first) one is stride 2
            levels = list(range(len(info)))
            if len(levels) not in (4, 5):
                raise ConfigError(
                    f"encoder {spec.name!r}: expected 4 or 5 feature levels, timm has {len(levels)}"
                )
            self._indices = levels
            self._has_s2 = len(levels) == 5
            chs = [info[i]["num_chs"] for i in levels]
            red = [info[i]["reduction"] for i in levels]
            self.out_channels = [in_channels] + ([] if self._has_s2 else [0]) + chs
            self.reductions = [1] + ([] if self._has_s2 else [2]) + red
            self.num_prefix_tokens = 0

    @property
    def has_prefix_tokens(self) -> bool:
        return self.num_prefix_tokens > 0

    def backbone_key_map(self) -> dict[str, str]:
        """timm state_dict key → ``backbone`` key. The identity: the backbone *is* the timm model."""
        return {k: k for k in self.backbone.state_dict()}

    def forward(self, x: torch.Tensor):
        if self.spec.plain:
            out = self.backbone.forward_intermediates(
                x,
                indices=self._indices,
                norm=self.spec.final_norm,
                intermediates_only=True,
                return_prefix_tokens=self.has_prefix_tokens,
            )
            if self.has_prefix_tokens:
                return [f for f, _ in out], [t for _, t in out]
            return list(out), None
        feats = self.backbone.forward_intermediates(
            x, indices=self._indices, norm=self.spec.final_norm, intermediates_only=True
        )
        if not self._has_s2:
            b, _, h, w = x.shape
            feats = [x.new_empty((b, 0, h // 2, w // 2))] + list(feats)
        return [x] + list(feats), None


class ViTPyramidNeck(nn.Module):
    """ViTDet-style simple feature pyramid: 4 stride-16 ViT maps → strides 4/8/16/32.

    Level i takes the i-th tapped block (UPerNet-ViT / BEiT ``fpn1..4``): stride 4 = 2× (ConvT 2×2,
    BN, GELU, ConvT 2×2), stride 8 = ConvT 2×2, stride 16 = identity, stride 32 = max-pool 2×2; channels
    D/4, D/2, D, D as in ViTDet. A level whose target is finer than ``output_stride`` is capped there
    (DeepLab at output stride 16: the stride-32 slot is the unpooled stride-16 map). Output in smp's
    convention ``[x, (0-channel s2), s4, s8, s16, s32]``. New weights: it belongs to the decoder side.
    """

    def __init__(
        self, in_channels: list[int], in_reduction: int, output_stride: int = 32, in_chans_img: int = 3
    ):
        super().__init__()
        if len(in_channels) != len(PYRAMID_STRIDES):
            raise ConfigError(
                f"the ViT pyramid needs {len(PYRAMID_STRIDES)} tapped blocks, got {len(in_channels)}"
            )
        self.levels = nn.ModuleList()
        out_ch = []
        self.strides = []
        for dim, level in zip(in_channels, PYRAMID_STRIDES):
            target = min(level, output_stride)
            up = in_reduction // target if target <= in_reduction else 0
            down = target // in_reduction if target > in_reduction else 0
            scale = up or -down
            if scale == 4:
                layer = nn.Sequential(
                    nn.ConvTranspose2d(dim, dim // 2, 2, stride=2),
                    nn.BatchNorm2d(dim // 2),
                    nn.GELU(),
                    nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2),
                )
                ch = dim // 4
            elif scale == 2:
                layer, ch = nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), dim // 2
            elif scale == 1:
                layer, ch = nn.Identity(), dim
            elif scale == -2:
                layer, ch = nn.MaxPool2d(2, stride=2), dim
            else:  # pragma: no cover - patch sizes other than 16 would need more levels
                raise ConfigError(f"ViT pyramid: cannot go from stride {in_reduction} to {target}")
            self.levels.append(layer)
            out_ch.append(ch)
            self.strides.append(target)
        self.out_channels = [in_chans_img, 0] + out_ch
        self.reductions = [1, 2] + self.strides

    def forward(self, feats: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = x.shape
        return [x, x.new_empty((b, 0, h // 2, w // 2))] + [lvl(f) for lvl, f in zip(self.levels, feats)]
