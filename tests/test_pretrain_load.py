"""ImageNet weights via the timm hub file layout (model.safetensors with the classifier), loaded with exact
key accounting; offline failure is immediate and names the URL and the path to place the file at."""

import socket
import time
from types import SimpleNamespace

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from medtransfer import settings
from medtransfer.errors import ConfigError, WeightsError
from medtransfer.pretrain import check_pretrain, load_pretrained, normalisation
from medtransfer.pretrain.fetch import cache_path

IMAGENET = OmegaConf.load(settings.PROJECT_ROOT / "conf/pretrain/imagenet.yaml")
SCRATCH = OmegaConf.load(settings.PROJECT_ROOT / "conf/pretrain/scratch.yaml")


def _model(timm_name, **kw):
    return SimpleNamespace(encoder=SimpleNamespace(backbone=timm.create_model(timm_name, num_classes=0, **kw)))


def _publish(encoder, timm_name, **kw):
    """Write what timm's hub repo holds: the full classifier model's state_dict as model.safetensors."""
    full = timm.create_model(timm_name, **kw)
    sd = {k: v.contiguous() for k, v in full.state_dict().items()}
    path = cache_path("imagenet", encoder, IMAGENET.files[encoder])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return sd, path


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.CACHE_DIR, str(tmp_path / "cache"))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_imagenet_resnet_loads_every_tensor(no_network):
    sd, path = _publish("r18", "resnet18")
    model = _model("resnet18")
    rec = load_pretrained(model, IMAGENET, "r18")
    target = model.encoder.backbone.state_dict()
    assert rec["tensors_loaded"] == len(target) and rec["missing"] == [] and rec["unexpected"] == []
    assert rec["file"] == str(path) and len(rec["file_sha256"]) == 64 and rec["parts"] == ["encoder"]
    for k, v in target.items():
        assert torch.equal(v, sd[k]), k


def test_vit_pos_embed_is_resampled_to_the_working_size(no_network):
    sd, _ = _publish("vit_s", "vit_small_patch16_224")
    model = _model("vit_small_patch16_224", img_size=64)
    rec = load_pretrained(model, IMAGENET, "vit_s")
    bb = model.encoder.backbone.state_dict()
    assert bb["pos_embed"].shape == (1, 1 + 16, 384)
    assert torch.equal(bb["blocks.0.attn.qkv.weight"], sd["blocks.0.attn.qkv.weight"])
    assert torch.equal(bb["pos_embed"][:, 0], sd["pos_embed"][:, 0])  # class token position kept
    assert rec["tensors_loaded"] == len(bb)
    assert normalisation(IMAGENET, "vit_s") == ([0.5] * 3, [0.5] * 3)


def test_wrong_layout_fails_naming_keys(no_network):
    full = timm.create_model("resnet18")
    path = cache_path("imagenet", "r18", IMAGENET.files.r18)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"module.{k}": v.contiguous() for k, v in full.state_dict().items()}, str(path))
    with pytest.raises(WeightsError, match=r"missing.*conv1.weight.*unexpected.*module\.conv1\.weight"):
        load_pretrained(_model("resnet18"), IMAGENET, "r18")


def test_offline_uncached_fails_at_once_naming_url_and_path(no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as e:
        load_pretrained(_model("resnet18"), IMAGENET, "r18")
    assert time.perf_counter() - t0 < 2
    msg = str(e.value)
    assert "https://huggingface.co/timm/resnet18.tv_in1k/resolve/main/model.safetensors" in msg
    assert str(cache_path("imagenet", "r18", IMAGENET.files.r18)) in msg


def test_unreachable_host_fails_fast_without_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []

    def unreachable(addr, timeout=None):
        calls.append(addr)
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(WeightsError, match="huggingface.co unreachable; download https://"):
        load_pretrained(_model("resnet18"), IMAGENET, "r18")
    assert calls == [("huggingface.co", 443)]


def test_scratch_loads_nothing_and_unknown_pair_rejected():
    rec = load_pretrained(_model("resnet18"), SCRATCH, "r18")
    assert rec["tensors_loaded"] == 0 and rec["source"] == "scratch"
    check_pretrain(SCRATCH, "anything")
    with pytest.raises(ConfigError, match="no weights for encoder=nope; valid encoders for it: .*r50"):
        check_pretrain(IMAGENET, "nope")


def test_swin_relative_position_tables_are_resized_below_224(no_network):
    # at 64 px the stride-16/32 stages are 4x4 and 2x2: timm shrinks the 7x7 window and its bias tables
    kw = {"depths": (1, 1, 1, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8)}
    sd, _ = _publish("swin_b", "swin_tiny_patch4_window7_224", **kw)
    model = _model("swin_tiny_patch4_window7_224", img_size=64, **kw)
    rec = load_pretrained(model, IMAGENET, "swin_b")
    bb = model.encoder.backbone.state_dict()
    tables = sorted(k for k in bb if k.endswith("relative_position_bias_table"))
    resized = [k for k in tables if bb[k].shape != sd[k].shape]
    assert resized and set(resized) <= set(rec["resized"])  # the small-window stages, and only resampled ones
    assert all(bb[k].shape[0] < sd[k].shape[0] for k in resized)
    assert not any(k.startswith("head.fc") for k in bb)  # classifier dropped, everything else accounted for
    assert rec["tensors_loaded"] + rec["num_batches_tracked_absent"] + len(rec["missing"]) == len(bb)
    for k, v in bb.items():
        if k not in resized and k in sd:
            assert torch.equal(v, sd[k]), k
    out = model.encoder.backbone.forward_features(torch.randn(1, 3, 64, 64))
    assert out.shape[-1] == 256 and torch.isfinite(out).all()
