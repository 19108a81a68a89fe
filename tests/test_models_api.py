"""Public API of medtransfer.models: build_model, check_combination, count_parameters, param groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medtransfer.errors import ConfigError
from medtransfer.models import build_model, check_combination, count_parameters
from tests._catalogue import PAPER_DECODERS, PAPER_ENCODERS, PROJECT, dec_cfg, enc_cfg

torch.set_num_threads(2)


@pytest.fixture
def no_timm_build(monkeypatch):
    """Any model instantiation fails the test: checks must stay cheap."""
    import timm

    def boom(*a, **k):
        raise AssertionError("check_combination instantiated a model")

    monkeypatch.setattr(timm, "create_model", boom)


# ------------------------------------------------------------------------------------- check_combination


def test_check_combination_accepts_all_paper_pairs(no_timm_build):
    for e in PAPER_ENCODERS:
        for d in PAPER_DECODERS:
            check_combination(enc_cfg(e), dec_cfg(d), 352, catalogue=PROJECT)


def test_unknown_encoder_name_lists_choices(no_timm_build):
    with pytest.raises(ConfigError) as err:
        check_combination(enc_cfg("r50", name="r5000"), dec_cfg("unet"), 352, catalogue=PROJECT)
    msg = str(err.value)
    assert "\n" not in msg and "'r5000'" in msg
    for name in PAPER_ENCODERS:
        assert name in msg


def test_unknown_decoder_name_lists_choices(no_timm_build):
    with pytest.raises(ConfigError) as err:
        build_model(enc_cfg("r50"), dec_cfg("unet", name="unet3plus"), image_size=352, catalogue=PROJECT)
    msg = str(err.value)
    assert "\n" not in msg and "'unet3plus'" in msg and "none" not in msg  # `none` is the classifiers' option
    for name in PAPER_DECODERS:
        assert name in msg
    with pytest.raises(ConfigError, match=r"unknown decoder 'none'; valid choices: "):
        check_combination(enc_cfg("r50"), dec_cfg("none"), 352, catalogue=PROJECT)


def test_without_a_catalogue_names_are_the_composers_business(no_timm_build):
    """A Hydra run's configs are options of its config folder: the library checks fields, not names."""
    check_combination(enc_cfg("r50", name="r5000"), dec_cfg("unet", name="unet3plus"), 352)


@pytest.mark.parametrize("size", [100, 208, 0, 353])
def test_bad_vit_size_names_patch_size(no_timm_build, size):
    with pytest.raises(ConfigError, match=r"patch size 16") as err:
        check_combination(enc_cfg("vit_b"), dec_cfg("upernet"), size)
    assert "multiple of 32" in str(err.value) and "\n" not in str(err.value)


def test_bad_size_for_cnn_and_swin(no_timm_build):
    with pytest.raises(ConfigError, match="multiple of 32"):
        check_combination(enc_cfg("r50"), dec_cfg("unet"), 200)
    with pytest.raises(ConfigError, match="patch size 4"):
        check_combination(enc_cfg("swin_b"), dec_cfg("unet"), 200)
    check_combination(enc_cfg("swin_b"), dec_cfg("unet"), 96)  # non-224 sizes are fine


@pytest.mark.parametrize(
    "enc,dec,match",
    [
        ({"timm_name": "resnet5000"}, {}, "timm has no model 'resnet5000'"),
        ({"family": "mlp"}, {}, "valid choices: cnn, swin, vit"),
        ({"colour": "red"}, {}, "unknown field"),
        ({}, {"arch": "Unet3Plus"}, "valid choices: .*DPT.*Unet"),
        ({}, {"kwargs": {"decoder_chanels": [1]}}, "unknown kwargs decoder_chanels"),
        ({}, {"output_stride": 4}, "output_stride must be"),
        ({}, {"kwargs": None}, "kwargs needs decoder_channels"),
    ],
)
def test_bad_fields_fail_at_config_time(no_timm_build, enc, dec, match):
    with pytest.raises(ConfigError, match=match):
        check_combination(enc_cfg("r18", **enc), dec_cfg("unet", **dec), 64)


def test_build_model_checks_before_building(no_timm_build):
    with pytest.raises(ConfigError, match="patch size 16"):
        build_model(enc_cfg("vit_s"), dec_cfg("dpt"), image_size=72)


# ------------------------------------------------------------------------------------- model API


def test_build_model_api_and_param_groups():
    model = build_model(enc_cfg("r18"), dec_cfg("deeplabv3plus"), num_classes=3, in_channels=3, image_size=64)
    assert (model.encoder_name, model.decoder_name) == ("r18", "deeplabv3plus")
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 3, 64, 64)

    groups = model.param_groups()
    enc_ids = [id(p) for p in groups["encoder"]]
    dec_ids = [id(p) for p in groups["decoder"]]
    all_ids = [id(p) for p in model.parameters()]
    assert sorted(enc_ids + dec_ids) == sorted(all_ids)  # each exactly once
    assert set(enc_ids) == {id(p) for p in model.encoder.backbone.parameters()}
    assert {id(p) for m in model.decoder_modules() for p in m.parameters()} == set(dec_ids)

    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts == {"total": counts["total"], "trainable": counts["total"], "frozen": 0}
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    enc_n = sum(p.numel() for p in groups["encoder"])
    assert count_parameters(model) == {
        "total": counts["total"],
        "trainable": counts["total"] - enc_n,
        "frozen": enc_n,
    }


def test_count_parameters_toy():
    shared = nn.Linear(3, 4)  # 12 + 4 = 16
    toy = nn.Sequential(shared, nn.ReLU(), nn.Linear(4, 2), shared)  # 16 + 10, shared counted once
    assert count_parameters(toy) == {"total": 26, "trainable": 26, "frozen": 0}
    toy[2].weight.requires_grad_(False)  # 8
    assert count_parameters(toy) == {"total": 26, "trainable": 18, "frozen": 8}
    assert count_parameters(nn.ReLU()) == {"total": 0, "trainable": 0, "frozen": 0}


def test_gradient_reaches_encoder_and_decoder():
    torch.manual_seed(0)
    model = build_model(enc_cfg("r18"), dec_cfg("unet"), num_classes=1, image_size=64).train()
    x, target = torch.randn(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    loss = nn.functional.binary_cross_entropy_with_logits(model(x), target)
    loss.backward()
    groups = model.param_groups()
    for name in ("encoder", "decoder"):
        grads = [p.grad for p in groups[name]]
        assert all(g is not None for g in grads), f"{name}: parameters without gradient"
        assert sum(g.abs().sum().item() for g in grads) > 0, f"{name}: all-zero gradient"
    assert model.encoder.backbone.conv1.weight.grad.abs().sum() > 0  # all the way to the stem


def test_in_channels_and_num_classes():
    model = build_model(enc_cfg("r18"), dec_cfg("fpn"), num_classes=2, in_channels=1, image_size=64).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 64)).shape == (1, 2, 64, 64)
    assert model.encoder.backbone.conv1.weight.shape[1] == 1
    with pytest.raises(ConfigError):
        build_model(enc_cfg("r18"), dec_cfg("fpn"), num_classes=0, image_size=64)
