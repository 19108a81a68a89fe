"""Whole segmentation networks (paper 000) load encoder AND decoder where the decoder matches, and say so in
the record; the `file` source reads a real third-party legacy checkpoint; `convert` fills the cache."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file
from torch import nn

from medtransfer import settings
from medtransfer.configs import Catalogue
from medtransfer.errors import ConfigError, WeightsError
from medtransfer.pretrain import check_pretrain, load_pretrained
from medtransfer.pretrain.convert import convert
from medtransfer.pretrain.fetch import cache_path
from tests._catalogue import SOURCES

CONF = settings.PROJECT_ROOT / "conf"
LEGACY = settings.PROJECT_ROOT.parent / "shared/weights/resnet20-12fca82f.th"


pytestmark = pytest.mark.usefixtures("offline_cache")


def _cfg(name):
    cfg = OmegaConf.create(SOURCES[name])
    for spec in (cfg.get("files") or {}).values():
        spec.pop("sha256_prefix", None)  # a fabricated file cannot match the published hash
    return cfg


def _build(encoder, decoder, **kwargs):
    from medtransfer.models import build_model

    dec = OmegaConf.load(CONF / f"decoder/{decoder}.yaml")
    dec.kwargs.update(kwargs)
    return build_model(OmegaConf.load(CONF / f"encoder/{encoder}.yaml"), dec, num_classes=1, image_size=64)


def test_pascal_voc_torchvision_deeplabv3_loads_encoder_and_decoder():
    from torchvision.models.segmentation import deeplabv3_resnet50

    tv = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    sd = {k: (torch.rand_like(v) + 0.1 if k.endswith("running_var") else v) for k, v in tv.state_dict().items()}
    path = cache_path("pascal_voc", "r50", _cfg("pascal_voc").files.r50)
    path.parent.mkdir(parents=True)
    torch.save(sd, path)
    model = _build("r50", "deeplabv3")
    rec = load_pretrained(model, _cfg("pascal_voc"), "r50")
    assert rec["parts"] == ["encoder", "decoder"] and "decoder_skipped" not in rec
    for k, v in model.encoder.backbone.state_dict().items():
        assert torch.equal(v, sd[f"backbone.{k}"]), k
    names = {"aspp.": "classifier.0.", "conv.": "classifier.1.", "bn.": "classifier.2."}
    dec = model.decoder.state_dict()
    for k, v in dec.items():
        p = next(p for p in names if k.startswith(p))
        assert torch.equal(v, sd[names[p] + k[len(p):]]), k
    assert rec["tensors_by_part"] == {"encoder": len(model.encoder.backbone.state_dict()), "decoder": len(dec)}
    assert rec["dropped"] == {"aux_classifier.": 8, "classifier.4.": 2}

    import timm  # a model with another decoder: encoder only, and the record says why

    other = SimpleNamespace(encoder=SimpleNamespace(backbone=timm.create_model("resnet50", num_classes=0)),
                            decoder_name="fcn", decoder=None)
    rec = load_pretrained(other, _cfg("pascal_voc"), "r50")
    assert rec["parts"] == ["encoder"] and "deeplabv3 decoder, the model a fcn decoder" in rec["decoder_skipped"]


def test_ade20k_smp_hub_upernet_convnext_loads_both_parts_and_needs_its_decoder_width():
    import segmentation_models_pytorch as smp

    hub = smp.UPerNet(encoder_name="tu-convnext_tiny", encoder_weights=None, decoder_channels=512, classes=150)
    sd = {k: v.contiguous() for k, v in hub.state_dict().items()}
    path = cache_path("ade20k", "convnext_t", _cfg("ade20k").files.convnext_t)
    path.parent.mkdir(parents=True)
    save_file(sd, str(path))
    model = _build("convnext_t", "upernet", decoder_channels=512)
    rec = load_pretrained(model, _cfg("ade20k"), "convnext_t")
    assert rec["parts"] == ["encoder", "decoder"]
    assert rec["missing"] == ["head.norm.bias", "head.norm.weight"]  # classifier-side norm: not in the file
    for k, v in model.encoder.backbone.state_dict().items():
        if not k.startswith("head."):
            src = "encoder.model." + k.replace("stem.", "stem_", 1).replace("stages.", "stages_", 1)
            assert torch.equal(v, sd[src]), k
    for k, v in model.decoder.state_dict().items():
        assert torch.equal(v, sd[f"decoder.{k}"]), k
    dec_cfg = OmegaConf.load(CONF / "decoder/upernet.yaml")
    with pytest.raises(ConfigError, match=r"pretrain=ade20k is a whole upernet network .*decoder.kwargs.decoder_channels=512"):
        check_pretrain(_cfg("ade20k"), "convnext_t", decoder_cfg=dec_cfg)
    with pytest.raises(WeightsError, match=r"shape mismatch for upernet decoder .*built with decoder_channels=512"):
        load_pretrained(_build("convnext_t", "upernet"), _cfg("ade20k"), "convnext_t")


class CifarResNet20(nn.Module):
    """He et al. 2016 sec. 4.2 (option A shortcuts: no parameters), akamaster's layout minus the classifier."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        chans = [16, 32, 64]
        for s, c in enumerate(chans):
            blocks = nn.Sequential()
            for i in range(3):
                b = nn.Module()
                b.conv1 = nn.Conv2d(chans[max(s - 1, 0)] if i == 0 else c, c, 3, padding=1, bias=False)
                b.bn1, b.conv2, b.bn2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
                blocks.append(b)
            setattr(self, f"layer{s + 1}", blocks)


@pytest.mark.skipif(not LEGACY.is_file(), reason="shared/weights not present")
def test_file_source_reads_a_real_legacy_checkpoint():
    cfg = _cfg("file")
    cfg.path = str(LEGACY)
    cfg.format = {"container": "state_dict", "ignore_containers": ["best_prec1"], "strip": ["module."],
                  "drop": ["module.linear."], "sha256": "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8"}
    net = CifarResNet20()
    rec = load_pretrained(SimpleNamespace(encoder=SimpleNamespace(backbone=net)), cfg, "resnet20")
    raw = torch.load(LEGACY, map_location="cpu", weights_only=True)["state_dict"]
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, raw[f"module.{k}"]), k
    assert rec["tensors_loaded"] == len(raw) - 2 and rec["num_batches_tracked_absent"] == 19
    assert rec["ignored_containers"] == ["best_prec1"] and rec["dropped"] == {"module.linear.": 2}
    cfg.format.sha256 = "0" * 64
    with pytest.raises(WeightsError, match="sha256 12fca82f.* != published 0000"):
        load_pretrained(SimpleNamespace(encoder=SimpleNamespace(backbone=CifarResNet20())), cfg, "resnet20")


def test_file_source_needs_a_path():
    with pytest.raises(ConfigError, match=r"pretrain=file needs pretrain.path=FILE"):
        check_pretrain(_cfg("file"), "r50")


def test_convert_places_the_file_and_its_canonical_twin(tmp_path, monkeypatch):
    """An MMSeg file whose `meta` holds a Python object weights_only refuses: the run says to convert it; one
    `convert --trust-pickle` later the run loads from the canonical safetensors, never unpickling again."""
    import argparse

    import timm

    sys.path.insert(0, str(Path(__file__).parent))
    from _pretrain_layouts import hrnet_mmseg

    sd = timm.create_model("hrnet_w18_small", num_classes=0).state_dict()
    obj = hrnet_mmseg(sd)
    obj["meta"]["config"] = argparse.Namespace(model="fcn_hr48")
    src = tmp_path / "downloaded.pth"
    torch.save(obj, src)
    # the file is built from the small HRNet stand-in, so that is the backbone convert accounts it against
    monkeypatch.setattr("medtransfer.pretrain.convert.target_backbone",
                        lambda encoder_cfg, spec=None: timm.create_model("hrnet_w18_small", num_classes=0))
    target = cache_path("cityscapes", "hrnet_w48", _cfg("cityscapes").files.hrnet_w48)
    target.parent.mkdir(parents=True)
    target.write_bytes(src.read_bytes())
    model = SimpleNamespace(encoder=SimpleNamespace(backbone=timm.create_model("hrnet_w18_small", num_classes=0)))
    with pytest.raises(WeightsError, match=r"weights_only=True refuses.*medtransfer pretrain convert .*--trust-pickle"):
        load_pretrained(model, _cfg("cityscapes"), "hrnet_w48")
    target.unlink()
    catalogue = Catalogue({"pretrain": {"cityscapes": _cfg("cityscapes")}, "encoder": {"hrnet_w48": {}}})
    out, fitting = convert(src, "cityscapes", "hrnet_w48", catalogue=catalogue, trust_pickle=True)
    assert fitting == ["hrnet_w48"]
    assert out.suffix == ".safetensors" and out.with_suffix(".json").is_file() and target.is_file()
    rec = load_pretrained(model, _cfg("cityscapes"), "hrnet_w48")  # weights_only path, canonical twin found
    assert torch.equal(model.encoder.backbone.state_dict()["stage4.0.branches.3.0.conv2.weight"],
                       sd["stage4.0.branches.3.0.conv2.weight"])
    assert rec["ignored_containers"] == ["meta"] and rec["file_sha256"].startswith(out.name.split(".")[-2])
