"""Every encoder × decoder pair builds and runs; backbones are plain timm models (exact key names).

Tiny and offline: 64 px, batch 1, eval mode, random init. Each encoder is built once per output stride
it is asked for (module-scoped cache) and shared by the decoders, which is what keeps 72 cases fast.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from medtransfer.models import DecoderSpec, EncoderSpec, check_combination, segmentation_decoders
from medtransfer.models.factory import assemble, build_encoder
from tests._catalogue import PAPER_DECODERS, PAPER_ENCODERS, PROJECT, dec_cfg, enc_cfg

torch.set_num_threads(2)

S = 64  # every encoder takes multiples of 32 (Swin shrinks its windows below 224, which is fine here)
ENCODERS = list(PROJECT.names("encoder"))  # every yaml in conf/ is covered, new ones automatically
DECODERS = list(segmentation_decoders(PROJECT))


@pytest.fixture(scope="module")
def encoders():
    cache: dict = {}

    def get(enc_name: str, dec_name: str):
        es, ds = EncoderSpec.from_cfg(enc_cfg(enc_name)), DecoderSpec.from_cfg(dec_cfg(dec_name))
        key = (enc_name, es.effective_output_stride(ds.output_stride))
        if key not in cache:
            cache[key] = build_encoder(es, ds, in_channels=3, image_size=S).eval()
        return cache[key], ds

    return get


def test_conf_lists_every_encoder_and_decoder():
    assert set(ENCODERS) >= set(PAPER_ENCODERS)
    assert set(DECODERS) >= set(PAPER_DECODERS) and "none" not in DECODERS
    for name in ENCODERS:
        assert enc_cfg(name).name == name
    for name in DECODERS:
        assert dec_cfg(name).name == name


@pytest.mark.parametrize("dec_name", DECODERS)
@pytest.mark.parametrize("enc_name", ENCODERS)
def test_pair_forward(encoders, enc_name, dec_name):
    check_combination(enc_cfg(enc_name), dec_cfg(dec_name), S, catalogue=PROJECT)
    encoder, ds = encoders(enc_name, dec_name)
    model = assemble(encoder, ds, num_classes=1).eval()
    assert (model.encoder_name, model.decoder_name) == (enc_name, dec_name)
    with torch.no_grad():
        y = model(torch.randn(1, 3, S, S))
    assert y.shape == (1, 1, S, S)
    assert torch.isfinite(y).all()
    # param groups: every parameter in exactly one group, the encoder group is the backbone
    groups = model.param_groups()
    enc_ids = {id(p) for p in groups["encoder"]}
    dec_ids = {id(p) for p in groups["decoder"]}
    assert not enc_ids & dec_ids
    assert enc_ids | dec_ids == {id(p) for p in model.parameters()}
    assert enc_ids == {id(p) for p in model.encoder.backbone.parameters()}


@pytest.mark.parametrize("enc_name", ENCODERS)
def test_backbone_keys_are_timm_keys(encoders, enc_name):
    import timm

    encoder, _ = encoders(enc_name, "unet")
    es = encoder.spec
    reference = timm.create_model(es.timm_name, num_classes=0, device="meta")  # no weights, no init cost
    assert list(encoder.backbone.state_dict()) == list(reference.state_dict())
    key_map = encoder.backbone_key_map()
    assert set(key_map) == set(reference.state_dict()) and all(k == v for k, v in key_map.items())
    # the encoder module holds nothing but the backbone
    assert {n.removeprefix("backbone.") for n in encoder.state_dict()} == set(reference.state_dict())
    if es.family == "vit":  # pos_embed sized for the working resolution at build time
        n_tokens = (S // es.patch_size) ** 2 + encoder.num_prefix_tokens
        assert encoder.backbone.pos_embed.shape[1] == n_tokens


def _params_reached(output: torch.Tensor) -> set[int]:
    """ids of the leaf tensors a backward from `output` would write .grad into (autograd graph walk: the
    same answer as a backward pass, without its cost)."""
    seen, stack, leaves = set(), [output.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):  # AccumulateGrad
            leaves.add(id(fn.variable))
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return leaves


@pytest.mark.parametrize("enc_name", ENCODERS)
def test_unused_backbone_params_are_exactly_the_declared_ones(encoders, enc_name):
    """Through unet (which takes every level): the backbone parameters no gradient reaches are exactly the
    yaml's `unused_params` prefixes (timm's classifier-side layers)."""
    encoder, ds = encoders(enc_name, "unet")
    model = assemble(encoder, ds).eval()
    reached = _params_reached(model(torch.randn(1, 3, S, S)))
    no_grad = {n for n, p in model.encoder.backbone.named_parameters() if id(p) not in reached}
    declared = encoder.spec.unused_params
    expected = {n for n, _ in model.encoder.backbone.named_parameters() if n.startswith(tuple(declared))}
    assert no_grad == expected, f"undeclared unused: {sorted(no_grad - expected)[:5]}"
    assert not declared or expected, "declared unused prefixes match no parameter"
    assert all(id(p) in reached for m in model.decoder_modules() for p in m.parameters())


def test_graph_walk_agrees_with_backward():
    from medtransfer.models import build_model

    model = build_model(enc_cfg("convnext_t"), dec_cfg("fpn"), image_size=S).eval()
    y = model(torch.randn(1, 3, S, S))
    reached = _params_reached(y)
    y.sum().backward()
    assert reached == {id(p) for p in model.parameters() if p.grad is not None}
    assert reached != {id(p) for p in model.parameters()}  # convnext's head.norm is unused


@pytest.mark.parametrize(
    "enc_name,dec_name,strides,rates",
    [
        ("r50", "deeplabv3", [4, 8, 8, 8], [12, 24, 36]),  # dilated
        ("vit_b", "deeplabv3", [4, 8, 16, 16], [6, 12, 18]),  # ViT: stride 16, rates halved
        ("swin_b", "deeplabv3plus", [4, 8, 16, 32], [6, 12, 18]),  # cannot dilate: 32, rates halved
        ("hrnet_w48", "fcn", [4, 8, 16, 32], None),
        ("vit_s", "dpt", [16, 16, 16, 16], None),  # DPT reassembles the ViT blocks itself
    ],
)
def test_output_stride_policy(encoders, enc_name, dec_name, strides, rates):
    encoder, ds = encoders(enc_name, dec_name)
    model = assemble(encoder, ds)
    assert list((model.neck or model.encoder).reductions[-4:]) == strides
    dilations = sorted({m.dilation[0] for m in model.decoder.modules() if isinstance(m, nn.Conv2d)} - {1})
    assert dilations == (rates or [])  # ASPP's rates, scaled to the stride the encoder reached


def test_vit_pyramid_is_decoder_side(encoders):
    encoder, ds = encoders("vit_s", "upernet")
    model = assemble(encoder, ds)
    assert model.neck is not None and model.neck in model.decoder_modules()
    assert not re.search(r"neck", " ".join(n for n, _ in model.encoder.named_parameters()))
