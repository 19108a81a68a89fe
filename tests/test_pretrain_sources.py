"""Every source in conf/pretrain/: a file in that source's exact layout (containers, prefixes, heads, momentum
encoders, EMA copies), placed in the cache, loads through the registry with every encoder tensor equal to the
source tensor; wrong, corrupt and mislabelled files fail with one clear line; no network is touched."""

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from _pretrain_layouts import CASES, moco_v1_v2, pycontrast, radimagenet
from medtransfer import settings
from medtransfer.errors import ConfigError, WeightsError
from medtransfer.pretrain import check_pretrain, load_pretrained, mapping, normalisation
from medtransfer.pretrain.fetch import cache_path
from medtransfer.pretrain.registry import (
    README_MARKERS,
    SOURCES_MD,
    sources_markdown,
    sources_summary_markdown,
)
from tests._catalogue import SOURCES

HASHES = ("sha256", "sha256_prefix", "md5_prefix")


pytestmark = pytest.mark.usefixtures("offline_cache")


def _cfg(source, keep_hashes=False):
    """The real source config; our fabricated files cannot match published hashes, so those are removed
    (the hash checks have their own tests below)."""
    cfg = OmegaConf.create(SOURCES[source])
    if not keep_hashes:
        for spec in (cfg.get("files") or {}).values():
            for h in HASHES:
                spec.pop(h, None)
    return cfg


def _model(timm_name, **kw):
    return SimpleNamespace(encoder=SimpleNamespace(backbone=timm.create_model(timm_name, num_classes=0, **kw)))


def _place(source, encoder, obj, cfg=None) -> Path:
    spec = (cfg or _cfg(source)).files[encoder]
    path = cache_path(source, encoder, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)
    return path


def _published(timm_name, kw):
    """The tensors the source holds for the encoder: a random model with trained-looking BN statistics."""
    bb = timm.create_model(timm_name, num_classes=0, **kw)
    sd = {k: v.clone() for k, v in bb.state_dict().items()}
    for k, v in sd.items():
        if k.endswith(("running_mean", "running_var")):
            sd[k] = torch.rand_like(v) + 0.1
        elif k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1234)
    return sd


def test_every_source_has_a_layout_case():
    covered = {s for s, *_ in CASES} | {"scratch", "file", "pascal_voc", "ade20k"}  # whole nets: test_pretrain_wholenet
    assert set(SOURCES) - covered == set()


@pytest.mark.parametrize("source,encoder,timm_name,kw,build", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_source_layout_loads_every_encoder_tensor(source, encoder, timm_name, kw, build):
    sd = _published(timm_name, kw)
    path = _place(source, encoder, build(sd))
    model = _model(timm_name, **kw)
    rec = load_pretrained(model, _cfg(source), encoder)
    got = model.encoder.backbone.state_dict()
    allowed = tuple(SOURCES[source]["files"][encoder].get("allow_missing") or ())
    for k, v in got.items():
        if k.startswith(allowed):
            assert k in rec["missing"] or k.endswith("num_batches_tracked"), k
        elif k.endswith("num_batches_tracked") and rec["num_batches_tracked_absent"]:
            continue
        else:
            assert torch.equal(v, sd[k]), f"{source}: {k} differs from the source tensor"
    assert rec["source"] == source and rec["parts"] == ["encoder"] and rec["unexpected"] == []
    assert rec["tensors_loaded"] + rec["num_batches_tracked_absent"] + len(rec["missing"]) == len(got)
    assert all(k.startswith(allowed) for k in rec["missing"])
    assert rec["file"] == str(path) and len(rec["file_sha256"]) == 64
    mean, std = normalisation(_cfg(source), encoder)
    assert len(mean) == len(std) == 3


def test_pycontrast_reads_model_never_model_ema():
    sd = _published("resnet18", {})
    obj = pycontrast(sd)
    _place("infomin", "r50", obj)
    model = _model("resnet18")
    rec = load_pretrained(model, _cfg("infomin"), "r50")
    w = model.encoder.backbone.state_dict()["conv1.weight"]
    assert torch.equal(w, sd["conv1.weight"]) and not torch.equal(w, obj["model_ema"]["encoder.conv1.weight"])
    assert rec["container"] == "model" and "model_ema" in rec["ignored_containers"]


def test_container_missing_does_not_fall_back_to_another():
    sd = _published("resnet18", {})
    obj = pycontrast(sd)
    del obj["model"]  # only model_ema left: must fail, not silently use the momentum encoder
    _place("pirl", "r50", obj)
    with pytest.raises(WeightsError, match=r"no container key 'model' \(top-level keys: .*model_ema"):
        load_pretrained(_model("resnet18"), _cfg("pirl"), "r50")


def test_keras_style_conv_biases_are_rejected_listing_them():
    sd = _published("resnet18", {})
    obj = radimagenet(sd)
    obj["backbone.0.bias"] = torch.zeros(64)
    obj["backbone.4.0.conv1.bias"] = torch.zeros(64)
    _place("radimagenet", "r50", obj)
    with pytest.raises(WeightsError, match=r"Keras-style.*2 keys cannot be mapped: \['backbone.0.bias', "
                                           r"'backbone.4.0.conv1.bias'\]"):
        load_pretrained(_model("resnet18"), _cfg("radimagenet"), "r50")


def test_mocov3_vit_s_needs_12_heads():
    kw = {"img_size": 32, "depth": 2}
    sd = _published("vit_tiny_patch16_224", {**kw, "num_heads": 12})
    _place("mocov3", "vit_s", CASES[3][4](sd))
    with pytest.raises(WeightsError, match=r"12 attention heads.*num_heads=3, needs 12.*encoder.timm_kwargs.num_heads=12"):
        load_pretrained(_model("vit_tiny_patch16_224", **kw), _cfg("mocov3"), "vit_s")
    enc = OmegaConf.load(settings.PROJECT_ROOT / "conf/encoder/vit_s.yaml")
    with pytest.raises(ConfigError, match=r"pretrain=mocov3 encoder=vit_s: .*set encoder.timm_kwargs.num_heads=12"):
        check_pretrain(_cfg("mocov3"), "vit_s", encoder_cfg=enc)
    enc.timm_kwargs = {"num_heads": 12}
    check_pretrain(_cfg("mocov3"), "vit_s", encoder_cfg=enc)


def test_mislabelled_file_fails_naming_the_keys():
    """A MoCo v2 file cached as SwAV: the keys do not map and the error says which."""
    _place("swav", "r50", moco_v1_v2(_published("resnet18", {})))
    with pytest.raises(WeightsError, match=r"top level holds non-tensors|missing.*unexpected"):
        load_pretrained(_model("resnet18"), _cfg("swav"), "r50")
    _place("swav", "r50", {f"module.encoder_q.{k}": v for k, v in _published("resnet18", {}).items()})
    with pytest.raises(WeightsError, match=r"missing \['bn1.bias'.*unexpected \['encoder_q.bn1.bias'"):
        load_pretrained(_model("resnet18"), _cfg("swav"), "r50")


def test_truncated_file_fails_clearly():
    path = _place("dino", "r50", _published("resnet18", {}))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match=r"cannot be read as a checkpoint.*corrupt or truncated"):
        load_pretrained(_model("resnet18"), _cfg("dino"), "r50")


def test_published_hash_is_checked():
    cfg = _cfg("mocov2", keep_hashes=True)
    path = _place("mocov2", "r50", moco_v1_v2(_published("resnet18", {})), cfg)
    with pytest.raises(WeightsError, match=rf"{path}: md5 prefix [0-9a-f]{{8}} != published a04e12f8.*re-fetch"):
        load_pretrained(_model("resnet18"), cfg, "r50")


def test_canonical_file_is_used_without_rereading_the_original(monkeypatch):
    sd = _published("resnet18", {})
    path = _place("swav", "r50", __import__("_pretrain_layouts").swav_like(sd))
    first = load_pretrained(_model("resnet18"), _cfg("swav"), "r50")
    canon = list((path.parent / "canonical").glob("*.safetensors"))
    assert len(canon) == 1 and canon[0].with_suffix(".json").is_file()

    def no_read(*a, **k):
        raise AssertionError("original re-read")

    monkeypatch.setattr(mapping, "read_checkpoint", no_read)
    monkeypatch.setattr("medtransfer.pretrain.load.read_checkpoint", no_read)
    model = _model("resnet18")
    again = load_pretrained(model, _cfg("swav"), "r50")
    assert again["tensors_loaded"] == first["tensors_loaded"] and again["dropped"] == first["dropped"]
    assert torch.equal(model.encoder.backbone.state_dict()["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])


def test_manual_source_offline_fails_at_once_naming_page_and_path():
    t0 = time.perf_counter()
    with pytest.raises(WeightsError) as e:
        load_pretrained(_model("resnet18"), _cfg("radimagenet"), "r50")
    assert time.perf_counter() - t0 < 2
    msg = str(e.value)
    assert "drive.google.com/drive/folders/1Es7cK1hv7zNHJoUW0tI0e6nLFVYTqPqK" in msg
    assert str(cache_path("radimagenet", "r50", _cfg("radimagenet").files.r50)) in msg


def test_url_source_offline_fails_naming_url_and_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"HF_HUB_OFFLINE=1; download https://dl.fbaipublicfiles.com/dino/"
                                           r"dino_resnet50_pretrain/dino_resnet50_pretrain.pth and place it at .*"
                                           r"weights/dino/r50/dino_resnet50_pretrain.pth"):
        load_pretrained(_model("resnet18"), _cfg("dino"), "r50")


def test_unsupported_pairs_rejected_at_config_time():
    with pytest.raises(ConfigError, match=r"pretrain=radimagenet encoder=vit_b: RadImageNet released CNNs only"):
        check_pretrain(_cfg("radimagenet"), "vit_b")
    with pytest.raises(ConfigError, match=r"pretrain=mae has no weights for encoder=r50; valid encoders for it: vit_b"):
        check_pretrain(_cfg("mae"), "r50")
    bad = _cfg("dino")
    bad.files.r50.strp = ["module."]
    with pytest.raises(ConfigError, match=r"conf/pretrain/dino.yaml files.r50: unknown field\(s\) strp; valid fields:.*strip"):
        check_pretrain(bad, "r50")


def test_sources_table_lists_every_source_with_caveats():
    md = sources_markdown(SOURCES)
    for name in SOURCES:
        assert f"| `{name}` |" in md
    assert "IN-21k then IN-1k fine-tuned" in md and "12 attention heads" in md
    assert md in SOURCES_MD.read_text(), "SOURCES.md is stale: regenerate with medtransfer pretrain docs"


def test_readme_sources_table_is_current():
    short = sources_summary_markdown(SOURCES)
    assert all(f"| `{name}` |" in short for name in SOURCES)
    assert "IN-21k then IN-1k fine-tuned" in short  # the ViT "ImageNet" caveat is in the README itself
    readme = (settings.PROJECT_ROOT / "README.md").read_text()
    start, end = README_MARKERS
    assert readme.split(start, 1)[1].split(end, 1)[0].strip() == short.strip(), (
        "README's sources table is stale: regenerate with medtransfer pretrain docs")
