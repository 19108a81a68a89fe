"""build_model / check_combination / count_parameters: encoder adapter + (neck) + smp decoder + head.

``model(x)``: ``encoder`` (timm backbone) → [``neck``: ViT feature pyramid] → ``decoder`` (an smp decoder
class, or :class:`FCNHead`) → ``head`` (1×1 / 3×3 classifier) → bilinear resize to the input size.
Only ``encoder`` holds pretrained weights; ``neck``, ``decoder`` and ``head`` are new (the "decoder" group).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medtransfer.configs import Catalogue
from medtransfer.errors import ConfigError, choices_msg
from medtransfer.models.encoders import MAX_STRIDE, EncoderSpec, TimmEncoder, ViTPyramidNeck, spec_fields
from medtransfer.models.heads import FCNHead

# ----------------------------------------------------------------------------------------------- decoders


@dataclass(frozen=True)
class _Arch:
    """How one decoder architecture is wired: its class, the structural args it gets from the encoder, the
    kwarg that gives the head's input channels, and whether it consumes plain-ViT block outputs itself."""

    cls: Callable[[], type]  # lazy: importing smp is slow
    structural: Callable[[list[int], list[int], bool], dict]  # (channels, reductions, has_prefix) → kwargs
    head_in: Callable[[dict], int]
    vit_tokens: bool = False  # DPT reassembles ViT block outputs itself (no pyramid neck)


def _smp(module: str, name: str) -> Callable[[], type]:
    def get():
        import importlib

        return getattr(
            importlib.import_module(f"segmentation_models_pytorch.decoders.{module}.decoder"), name
        )

    return get


ARCHS: dict[str, _Arch] = {
    "fcn": _Arch(lambda: FCNHead, lambda c, r, p: {"in_channels": c[-1]}, lambda k: k.get("channels", 512)),
    "PSPNet": _Arch(
        _smp("pspnet", "PSPDecoder"),
        lambda c, r, p: {"encoder_channels": c},
        lambda k: k.get("out_channels", 512),
    ),
    "DeepLabV3": _Arch(
        _smp("deeplabv3", "DeepLabV3Decoder"),
        lambda c, r, p: {"in_channels": c[-1]},
        lambda k: k["out_channels"],
    ),
    "DeepLabV3Plus": _Arch(
        _smp("deeplabv3", "DeepLabV3PlusDecoder"),
        lambda c, r, p: {"encoder_channels": c, "encoder_depth": 5, "output_stride": min(r[-1], 16)},
        lambda k: k["out_channels"],
    ),
    "UPerNet": _Arch(
        _smp("upernet", "UPerNetDecoder"),
        lambda c, r, p: {"encoder_channels": c, "encoder_depth": 5},
        lambda k: k.get("decoder_channels", 256),
    ),
    "Unet": _Arch(
        _smp("unet", "UnetDecoder"),
        lambda c, r, p: {"encoder_channels": c, "n_blocks": len(c) - 1},
        lambda k: k["decoder_channels"][-1],
    ),
    "FPN": _Arch(
        _smp("fpn", "FPNDecoder"),
        lambda c, r, p: {"encoder_channels": c, "encoder_depth": 5},
        lambda k: k.get("segmentation_channels", 128),
    ),
    "Segformer": _Arch(
        _smp("segformer", "SegformerDecoder"),
        lambda c, r, p: {"encoder_channels": c, "encoder_depth": 5},
        lambda k: k.get("segmentation_channels", 256),
    ),
    "DPT": _Arch(
        _smp("dpt", "DPTDecoder"),
        lambda c, r, p: {
            "encoder_out_channels": c[-4:],
            "encoder_output_strides": r[-4:],
            "encoder_has_prefix_tokens": p,
        },
        lambda k: k.get("fusion_channels", 256),
        vit_tokens=True,
    ),
}
_STRUCTURAL = {
    "in_channels", "encoder_channels", "encoder_depth", "n_blocks", "output_stride", "encoder_out_channels",
    "encoder_output_strides", "encoder_has_prefix_tokens",
}  # fmt: skip


@dataclass(frozen=True)
class DecoderSpec:
    """The fields of a decoder yaml (``conf/decoder/<name>.yaml``)."""

    name: str  # config name (= file stem), e.g. deeplabv3plus
    arch: str  # smp decoder (Unet, FPN, PSPNet, DeepLabV3, DeepLabV3Plus, UPerNet, Segformer, DPT) or fcn
    # requested deepest-feature stride (8/16: dilated where the encoder can); None = 32
    output_stride: int | None = None
    head_kernel_size: int = 1  # classifier conv (smp's choice per architecture)
    kwargs: dict = field(default_factory=dict)  # the decoder class's own arguments (smp names)

    @classmethod
    def from_cfg(cls, cfg: Mapping) -> DecoderSpec:
        d = spec_fields(cls, cfg, "decoder", ("name", "arch"))
        if d["arch"] not in ARCHS:
            raise ConfigError(f"decoder {d['name']!r}: " + choices_msg("arch", d["arch"], ARCHS))
        if d.get("output_stride") not in (None, 8, 16, 32):
            raise ConfigError(f"decoder {d['name']!r}: output_stride must be 8, 16, 32 or null")
        d["kwargs"] = dict(d.get("kwargs") or {})
        spec = cls(**d)
        params = inspect.signature(ARCHS[spec.arch].cls().__init__).parameters
        allowed = set(params) - {"self"} - _STRUCTURAL
        bad = sorted(set(spec.kwargs) - allowed)
        if bad:
            raise ConfigError(
                f"decoder {spec.name!r} ({spec.arch}): unknown kwargs {', '.join(bad)}; "
                f"valid: {', '.join(sorted(allowed))}"
            )
        missing = sorted(
            k for k in allowed - set(spec.kwargs) if params[k].default is inspect.Parameter.empty
        )
        if missing:
            raise ConfigError(f"decoder {spec.name!r} ({spec.arch}): kwargs needs {', '.join(missing)}")
        return spec


# ----------------------------------------------------------------------------------------------- model


class SegmentationModel(nn.Module):
    """``encoder`` (pretrained side) + ``neck`` (ViT pyramid or None) + ``decoder`` + ``head``."""

    def __init__(
        self,
        encoder: TimmEncoder,
        neck: nn.Module | None,
        decoder: nn.Module,
        head: nn.Module,
        *,
        encoder_name: str,
        decoder_name: str,
        vit_tokens: bool,
    ):
        super().__init__()
        self.encoder = encoder
        self.neck = neck
        self.decoder = decoder
        self.head = head
        self.encoder_name = encoder_name
        self.decoder_name = decoder_name
        self._vit_tokens = vit_tokens  # decoder takes (4 block maps, prefix tokens): DPT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, prefix = self.encoder(x)
        if self.neck is not None:
            feats = self.neck(feats, x)
        if self._vit_tokens:
            feats = feats[-4:]
            y = self.decoder(feats, prefix if prefix is not None else [None] * len(feats))
        else:
            y = self.decoder(feats)
        y = self.head(y)
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return y

    def decoder_modules(self) -> list[nn.Module]:
        """Everything that is not the (pretrained) encoder: neck (if any), decoder, head."""
        return [m for m in (self.neck, self.decoder, self.head) if m is not None]

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"encoder": backbone parameters, "decoder": the rest}; every parameter in exactly one group."""
        return {
            "encoder": list(self.encoder.parameters()),
            "decoder": [p for m in self.decoder_modules() for p in m.parameters()],
        }


def _scaled_rates(rates, requested: int, effective: int) -> list[int]:
    """ASPP rates are set for the requested stride; keep their image-space reach at the effective one."""
    return [max(1, round(r * requested / effective)) for r in rates]


def build_encoder(
    enc: EncoderSpec, dec: DecoderSpec, in_channels: int = 3, image_size: int = 352
) -> TimmEncoder:
    return TimmEncoder(
        enc, in_channels=in_channels, image_size=image_size, output_stride=dec.output_stride or 32
    )


def assemble(encoder: TimmEncoder, dec: DecoderSpec, num_classes: int = 1) -> SegmentationModel:
    """Decoder + head around an already-built encoder (build_model = build_encoder + assemble)."""
    from segmentation_models_pytorch.base import initialization as smp_init
    from segmentation_models_pytorch.base.heads import SegmentationHead
    from segmentation_models_pytorch.decoders.dpt.decoder import DPTSegmentationHead

    arch = ARCHS[dec.arch]
    enc = encoder.spec
    requested = dec.output_stride or MAX_STRIDE

    neck = None
    channels, reductions = list(encoder.out_channels), list(encoder.reductions)
    if enc.plain and not arch.vit_tokens:
        neck = ViTPyramidNeck(
            channels, reductions[-1], encoder.output_stride, in_chans_img=encoder.in_channels
        )
        channels, reductions = list(neck.out_channels), list(neck.reductions)

    kwargs = dict(dec.kwargs)
    for key in ("decoder_channels", "intermediate_channels", "atrous_rates"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    if "atrous_rates" in kwargs and reductions[-1] != requested:
        kwargs["atrous_rates"] = tuple(_scaled_rates(kwargs["atrous_rates"], requested, reductions[-1]))
    if arch.vit_tokens and not encoder.has_prefix_tokens:
        kwargs["readout"] = "ignore"  # nothing to read out (smp warns otherwise)
    decoder = arch.cls()(**arch.structural(channels, reductions, encoder.has_prefix_tokens), **kwargs)
    if dec.arch == "DeepLabV3Plus" and reductions[-1] // reductions[2] != decoder.up.scale_factor:
        # smp assumes output stride 8 or 16; a backbone that cannot dilate stays at 32 (Swin, HRNet)
        decoder.up = nn.Upsample(
            scale_factor=reductions[-1] // reductions[2], mode="bilinear", align_corners=True
        )

    head_in = arch.head_in(kwargs)
    if dec.arch == "DPT":
        head = DPTSegmentationHead(head_in, num_classes, kernel_size=3, upsampling=2)
    else:
        head = SegmentationHead(head_in, num_classes, kernel_size=dec.head_kernel_size, upsampling=1)
    for m in (neck, decoder):
        if m is not None:
            smp_init.initialize_decoder(m)
    smp_init.initialize_head(head)
    return SegmentationModel(
        encoder, neck, decoder, head,
        encoder_name=enc.name, decoder_name=dec.name, vit_tokens=arch.vit_tokens,
    )  # fmt: skip


def build_model(
    encoder_cfg: Mapping,
    decoder_cfg: Mapping,
    num_classes: int = 1,
    in_channels: int = 3,
    image_size: int = 352,
    catalogue: Catalogue | None = None,
) -> SegmentationModel:
    """The segmentation model for an encoder × decoder pair (random init; pretrained weights load afterwards
    into ``model.encoder.backbone``). Raises ConfigError (before building anything) for an invalid pair
    (see check_combination)."""
    enc, dec = _specs(encoder_cfg, decoder_cfg, image_size, catalogue)
    if num_classes < 1 or in_channels < 1:
        raise ConfigError(f"num_classes ({num_classes}) and in_channels ({in_channels}) must be >= 1")
    return assemble(build_encoder(enc, dec, in_channels, image_size), dec, num_classes)


# ----------------------------------------------------------------------------------------------- checks

NO_DECODER = "none"  # the decoder option of a classifier (its head settings), not a segmentation decoder


def segmentation_decoders(catalogue: Catalogue) -> tuple[str, ...]:
    """The catalogue's decoder options that build a segmentation decoder (all but ``none``)."""
    return tuple(n for n in catalogue.names("decoder") if n != NO_DECODER)


def _name(cfg: Mapping, what: str) -> Any:
    try:
        return cfg.get("name") if cfg is not None else None
    except AttributeError:  # not a mapping
        raise ConfigError(
            f"{what} config must be a mapping with a 'name', got {type(cfg).__name__}"
        ) from None


def check_name(cfg: Mapping, what: str, names: tuple[str, ...] | None) -> None:
    """ConfigError naming the valid choices if the config's name is not one of `names` (None: not checked)."""
    name = _name(cfg, what)
    if names is not None and name not in names:
        raise ConfigError(choices_msg(what, name, names))


def timm_spec(encoder_cfg: Mapping) -> EncoderSpec:
    """The encoder's spec, whose timm architecture exists (only timm's registry is consulted, nothing built)."""
    enc = EncoderSpec.from_cfg(encoder_cfg)
    import timm

    if not timm.is_model(enc.timm_name):
        raise ConfigError(
            f"encoder {enc.name!r}: timm has no model {enc.timm_name!r} (timm {timm.__version__})"
        )
    return enc


def _specs(encoder_cfg: Mapping, decoder_cfg: Mapping, image_size: int,
           catalogue: Catalogue | None) -> tuple[EncoderSpec, DecoderSpec]:
    check_name(encoder_cfg, "encoder", catalogue.names("encoder") if catalogue else None)
    check_name(decoder_cfg, "decoder", segmentation_decoders(catalogue) if catalogue else None)
    enc = timm_spec(encoder_cfg)
    dec = DecoderSpec.from_cfg(decoder_cfg)
    enc.check_image_size(image_size)
    return enc, dec


def check_combination(encoder_cfg: Mapping, decoder_cfg: Mapping, image_size: int,
                      catalogue: Catalogue | None = None) -> None:
    """Raise ConfigError (one line, naming the valid choices) if the pair cannot be built at this size.

    Cheap: reads the two configs, timm's model registry and the decoder class signature; builds nothing.
    Every encoder × decoder pair of the project's configs is buildable, so what fails here is an unknown
    field / timm architecture / decoder kwarg, an image size the encoder cannot take, or — given the
    application's `catalogue` — a name that is none of its options (a Hydra run composed its options from
    the config folder, so it needs none).
    """
    _specs(encoder_cfg, decoder_cfg, image_size, catalogue)


def count_parameters(module: nn.Module) -> dict[str, int]:
    """{"total", "trainable", "frozen"} element counts (shared parameters counted once)."""
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"total": total, "trainable": trainable, "frozen": total - trainable}
