"""build_classifier / check_classifier: the segmentation models' encoder + a pooled linear head.

``model(x)``: ``encoder.backbone`` (the same :class:`TimmEncoder`, built the same way as for segmentation) →
pooling → ``dropout`` → ``head`` (``nn.Linear``). Why the same encoder object at the same place: every
pretraining source is loaded by ``pretrain.load_pretrained`` into ``model.encoder.backbone`` with exact key
accounting, so a classifier and a segmentation model get the identical tensors from a file (same keys, same
drops, same record) and a classification result is comparable with a segmentation result of that source.
Nothing in the backbone is renamed or rebuilt for classification: timm's ``global_pool='avg'`` for a ViT,
for example, would replace ``norm`` by ``fc_norm`` and change the keys, so the pooling lives outside it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from medtransfer.configs import Catalogue
from medtransfer.errors import ConfigError, choices_msg
from medtransfer.models.encoders import MAX_STRIDE, EncoderSpec, TimmEncoder
from medtransfer.models.factory import check_name, timm_spec

# pooling → the encoder families it applies to; "auto" picks the first (the family's own recipe)
POOLINGS: dict[str, tuple[str, ...]] = {"avg": ("cnn", "swin"), "token": ("vit",), "mean": ("vit",)}
AUTO = {"cnn": "avg", "swin": "avg", "vit": "token"}
HEAD_INIT_STD = 0.01  # JLiangLab's transfer benchmark: Linear weight N(0, 0.01), bias 0


def resolve_pooling(family: str, pooling: str) -> str:
    """``auto`` → the family's recipe; an explicit choice must fit the family (ConfigError otherwise)."""
    if pooling == "auto":
        return AUTO[family]
    if pooling not in POOLINGS:
        raise ConfigError(choices_msg("classifier pooling", pooling, ["auto", *POOLINGS]))
    if family not in POOLINGS[pooling]:
        fits = sorted(p for p, fams in POOLINGS.items() if family in fams)
        raise ConfigError(f"classifier pooling {pooling!r} needs a {'/'.join(POOLINGS[pooling])} encoder; a "
                          f"{family} encoder takes: auto, {', '.join(fits)}")
    return pooling


def _check(encoder_cfg: Mapping, num_outputs: int, dropout: float, image_size: int,
           pooling: str, catalogue: Catalogue | None) -> tuple[EncoderSpec, str]:
    if not isinstance(num_outputs, int) or isinstance(num_outputs, bool) or num_outputs < 1:
        raise ConfigError(f"classifier num_outputs must be an integer >= 1, got {num_outputs!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ConfigError(f"classifier dropout must be a number in [0, 1), got {dropout!r}")
    check_name(encoder_cfg, "encoder", catalogue.names("encoder") if catalogue else None)
    enc = timm_spec(encoder_cfg)
    pooling = resolve_pooling(enc.family, pooling)
    # a ViT needs whole patches only; CNNs and Swin (patch merging halves the grid 3 times) reduce by 32 —
    # except ResNets, whose padded strided convs keep a >= 1-pixel map down to 16 px before the global pool
    # (MedMNIST trains them at 28 px)
    if enc.family == "cnn" and enc.timm_name.startswith("resnet"):
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16:
            raise ConfigError(f"image_size {image_size!r} does not fit classifier encoder {enc.name!r}: "
                              "a ResNet classifier takes 16 px or more")
        return enc, pooling
    m = enc.patch_size if enc.plain else enc.size_multiple
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size <= 0 or image_size % m:
        why = f"patch size {enc.patch_size}" if enc.plain else f"total stride {MAX_STRIDE}"
        lo = max(m, (image_size // m) * m) if isinstance(image_size, int) and image_size > 0 else m
        raise ConfigError(f"image_size {image_size!r} does not fit classifier encoder {enc.name!r} "
                          f"({enc.timm_name}): it must be a multiple of {m} ({why}), e.g. {lo} or {lo + m}")
    return enc, pooling


def check_classifier(encoder_cfg: Mapping, num_outputs: int, image_size: int, pooling: str = "auto",
                     dropout: float = 0.0, catalogue: Catalogue | None = None) -> None:
    """Raise a one-line ConfigError if this classifier cannot be built. Cheap: builds nothing. The encoder's
    name is checked against the application's `catalogue` where one is given (as for check_combination)."""
    _check(encoder_cfg, num_outputs, dropout, image_size, pooling, catalogue)


class ClassificationModel(nn.Module):
    """``encoder`` (pretrained side, ``encoder.backbone`` = the timm model) + ``fc_norm`` (``mean`` pooling
    only) + ``dropout`` + ``head`` (the Linear). ``forward(x)`` → logits (B, num_outputs).

    Why each pooling is what it is: a linear head reads the feature its source's own head read, so the
    pretrained representation is used as it was trained.

    * ``avg`` (CNN, Swin; ``auto``): timm's own pre-logits path with ``num_classes=0`` — global average of the
      last feature map (ResNet, HRNet through its classification aggregation ``incre``/``downsamp``/
      ``final_layer``; ConvNeXt followed by its ``head.norm``) or of the last Swin stage's tokens after the
      final norm. These modules sit unused in segmentation; here they are used, as in ImageNet training.
    * ``token`` (ViT; ``auto``): the CLS token after the final ``norm`` — supervised ViT/DeiT, MoCo v3, DINO
      and BEiT-style linear probes read it.
    * ``mean`` (ViT, explicit): MAE's fine-tuning recipe (``global_pool=True``): the last block's patch tokens
      *before* ``norm``, averaged without the CLS / register tokens, then a new LayerNorm ``fc_norm``
      (eps 1e-6, head side). MAE deletes ``norm``; here it stays in the backbone (its keys are loaded and
      accounted for) but gets no gradient, hence ``unused_params == ("norm.",)`` (DDP needs
      ``find_unused_parameters``).
    """

    def __init__(self, encoder: TimmEncoder, pooling: str, num_outputs: int, dropout: float):
        super().__init__()
        bb = encoder.backbone
        if pooling == "token" and getattr(bb, "cls_token", None) is None:
            raise ConfigError(f"encoder {encoder.spec.name!r} ({encoder.spec.timm_name}) has no CLS token: "
                              f"use classifier pooling 'mean'")
        self.encoder = encoder
        self.num_features = int(getattr(bb, "head_hidden_size", None) or bb.num_features)
        self.fc_norm = nn.LayerNorm(self.num_features, eps=1e-6) if pooling == "mean" else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_outputs)
        nn.init.normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)
        self.encoder_name = encoder.spec.name
        self.num_outputs = num_outputs
        self.pooling = pooling
        self.unused_params: tuple[str, ...] = ("norm.",) if pooling == "mean" else ()  # backbone prefixes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled representation the head reads, (B, num_features): before dropout."""
        bb = self.encoder.backbone
        if self.pooling == "token":
            return bb.forward_features(x)[:, 0]
        if self.pooling == "mean":
            (patches,) = bb.forward_intermediates(x, indices=1, norm=False, intermediates_only=True,
                                                  output_fmt="NLC")  # prefix tokens split off by timm
            return self.fc_norm(patches.mean(dim=1))
        return bb(x)  # num_classes=0: timm's forward_head with pre_logits — its own global pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))

    def head_modules(self) -> list[nn.Module]:
        """Everything that is not the (pretrained) encoder: fc_norm (``mean`` pooling) and the Linear."""
        return [m for m in (self.fc_norm, self.head) if m is not None]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"encoder": backbone parameters, "head": the rest}; every parameter in exactly one group."""
        return {
            "encoder": list(self.encoder.parameters()),
            "head": [p for m in self.head_modules() for p in m.parameters()],
        }


def build_classifier(encoder_cfg: Mapping, num_outputs: int, dropout: float = 0.0, image_size: int = 224,
                     pooling: str = "auto", catalogue: Catalogue | None = None) -> ClassificationModel:
    """The classifier for an encoder config (random init; pretrained weights load afterwards into
    ``model.encoder.backbone``, exactly as for segmentation). Input: 3-channel images (grey datasets are
    expanded by the data pipeline). Raises ConfigError (before building anything) for an invalid request."""
    enc, pooling = _check(encoder_cfg, num_outputs, dropout, image_size, pooling, catalogue)
    encoder = TimmEncoder(enc, in_channels=3, image_size=image_size, output_stride=MAX_STRIDE)
    return ClassificationModel(encoder, pooling, num_outputs, float(dropout))
