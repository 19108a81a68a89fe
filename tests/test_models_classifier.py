"""build_classifier: the segmentation models' encoder (same backbone, same keys, same pretrained load) + a
pooled linear head; pooling per family (ViT CLS vs MAE's mean + fc_norm); head init; param groups; errors.

Tiny and offline: 32 px, random init; every conf encoder once on the meta device (shapes only)."""

from __future__ import annotations

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from medtransfer.errors import ConfigError
from medtransfer.models import build_classifier, build_model, check_classifier
from medtransfer.pretrain import load_pretrained
from medtransfer.pretrain.fetch import cache_path
from tests._catalogue import PROJECT, SOURCES, dec_cfg, enc_cfg

torch.set_num_threads(2)
TINY = {  # same architecture family and key layout as the conf encoder, a fraction of the width/depth
    "convnext_t": {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]},
    "swin_b": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
}


def _clf(stem, size=32, seed=0, **kw):
    torch.manual_seed(seed)
    return build_classifier(enc_cfg(stem), image_size=size, **{"num_outputs": 3, **kw})


@pytest.fixture
def no_timm_build(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the check instantiated a model")

    monkeypatch.setattr(timm, "create_model", boom)


# ------------------------------------------------------------------------------------------- forward


@pytest.mark.parametrize("stem,pooling,expect", [
    ("r18", "auto", "avg"), ("vit_s", "auto", "token"), ("vit_s", "token", "token"),
    ("vit_s", "mean", "mean"),
])
def test_logits_shape_and_attributes(stem, pooling, expect):
    model = _clf(stem, pooling=pooling).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert (model.encoder_name, model.num_outputs, model.pooling) == (stem, 3, expect)
    assert isinstance(model.head, torch.nn.Linear) and model.head.in_features == model.num_features
    assert (model.fc_norm is not None) == (expect == "mean")


@pytest.mark.parametrize("stem", PROJECT.names("encoder"))
def test_every_conf_encoder_builds_a_classifier(stem):
    """Shapes only (meta device: no memory, no compute): each family's own pooled feature width."""
    size = 64
    with torch.device("meta"):
        model = build_classifier(enc_cfg(stem), num_outputs=5, image_size=size)
        y = model(torch.empty(2, 3, size, size))
        ref = timm.create_model(model.encoder.spec.timm_name, num_classes=0, **(
            {"img_size": size} if model.encoder.spec.img_size_arg else {}))
    assert y.shape == (2, 5) and model.num_features == ref.num_features


def test_head_init_is_normal_001_and_zero_bias():
    model = build_classifier(enc_cfg("r18"), num_outputs=200, image_size=32)  # 512 x 200 weights
    w = model.head.weight.detach()
    assert abs(w.std().item() - 0.01) < 0.0005 and abs(w.mean().item()) < 0.0005
    assert torch.count_nonzero(model.head.bias) == 0
    mean = _clf("vit_s", pooling="mean")
    assert torch.equal(mean.fc_norm.weight, torch.ones(384)) and torch.count_nonzero(mean.fc_norm.bias) == 0


def test_vit_cls_is_timms_supervised_path_and_mean_pools_patch_tokens_before_norm():
    token, mean = _clf("vit_s", pooling="token").eval(), _clf("vit_s", pooling="mean").eval()
    other = mean.encoder.backbone.state_dict()
    assert all(torch.equal(v, other[k]) for k, v in token.encoder.backbone.state_dict().items())  # same seed
    with torch.no_grad():  # a non-trivial fc_norm, so "fc_norm applied" is visible
        mean.fc_norm.weight.uniform_(0.5, 1.5)
        mean.fc_norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 3, 32, 32)
    blocks_out = []
    hook = mean.encoder.backbone.blocks[-1].register_forward_hook(lambda m, i, o: blocks_out.append(o))
    with torch.no_grad():
        f_tok, f_mean = token.features(x), mean.features(x)
        hook.remove()
        assert torch.allclose(f_tok, token.encoder.backbone(x))  # timm's global_pool='token' pre-logits
        tokens = blocks_out[0]  # (B, 1 + 4 patches, D), before the final norm
        assert tokens.shape == (2, 5, 384)
        assert torch.allclose(f_mean, mean.fc_norm(tokens[:, 1:].mean(1)), atol=1e-6)
        assert not torch.allclose(f_mean, mean.fc_norm(tokens.mean(1)), atol=1e-3)  # the CLS is left out
        assert not torch.allclose(token(x), mean(x), atol=1e-3)
        for m in (token, mean):
            m.encoder.backbone.norm.weight.mul_(2)
        assert torch.equal(mean.features(x), f_mean) and not torch.allclose(token.features(x), f_tok)


@pytest.mark.parametrize("stem,pooling", [
    ("r18", "auto"), ("convnext_t", "auto"), ("swin_b", "auto"), ("vit_s", "token"), ("vit_s", "mean"),
])
def test_unused_params_are_exactly_those_without_gradient(stem, pooling):
    """ConvNeXt's head.norm (unused in segmentation) is its classification pooling; MAE's mean leaves norm."""
    torch.manual_seed(0)
    cfg = enc_cfg(stem, timm_kwargs=TINY[stem]) if stem in TINY else enc_cfg(stem)
    size = 64 if stem == "swin_b" else 32
    model = build_classifier(cfg, num_outputs=3, image_size=size, pooling=pooling)
    with torch.no_grad():  # timm zero-inits each block's last BN gamma: no gradient would reach the branch
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    model(torch.randn(2, 3, size, size)).sum().backward()
    no_grad = {n for n, p in model.encoder.backbone.named_parameters() if p.grad is None}
    names = [n for n, _ in model.encoder.backbone.named_parameters()]
    assert no_grad == {n for n in names if n.startswith(model.unused_params)}
    assert model.unused_params == (("norm.",) if pooling == "mean" else ())
    assert all(p.grad is not None for m in model.head_modules() for p in m.parameters())


# ------------------------------------------------------------------------------ same backbone, same load


def _publish(encoder, timm_name, imagenet):
    """The timm hub file (classifier included) in the cache, as tests/test_pretrain_load.py does."""
    sd = {k: v.contiguous() for k, v in timm.create_model(timm_name).state_dict().items()}
    path = cache_path("imagenet", encoder, imagenet.files[encoder])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return sd


@pytest.mark.usefixtures("offline_cache")
@pytest.mark.parametrize("stem,pooling", [("r18", "auto"), ("vit_s", "mean")])
def test_backbone_keys_and_pretrained_load_equal_the_segmentation_models(stem, pooling):
    imagenet = OmegaConf.create(SOURCES["imagenet"])
    sd = _publish(stem, enc_cfg(stem).timm_name, imagenet)
    dec = dec_cfg("fcn", kwargs={"channels": 8})
    seg = build_model(enc_cfg(stem), dec, image_size=32)
    clf = build_classifier(enc_cfg(stem), num_outputs=2, image_size=32, pooling=pooling)
    seg_sd, clf_sd = seg.encoder.backbone.state_dict(), clf.encoder.backbone.state_dict()
    assert list(clf_sd) == list(seg_sd) and all(clf_sd[k].shape == v.shape for k, v in seg_sd.items())
    recs = [load_pretrained(m, imagenet, stem) for m in (seg, clf)]
    keep = ("parts", "tensors_loaded", "missing", "unexpected", "resized", "dropped", "file_sha256",
            "num_batches_tracked_absent")
    assert {k: recs[0][k] for k in keep} == {k: recs[1][k] for k in keep}
    assert recs[1]["tensors_loaded"] == len(clf_sd) and recs[1]["missing"] == []
    seg_sd, clf_sd = seg.encoder.backbone.state_dict(), clf.encoder.backbone.state_dict()
    assert all(torch.equal(v, seg_sd[k]) for k, v in clf_sd.items())
    assert all(torch.equal(v, sd[k]) for k, v in clf_sd.items() if k not in recs[1]["resized"])


def test_param_groups_cover_every_parameter_exactly_once():
    for model in (_clf("r18"), _clf("vit_s", pooling="mean")):
        groups = model.param_groups()
        assert set(groups) == {"encoder", "head"}
        ids = [id(p) for ps in groups.values() for p in ps]
        assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
        head = {id(p) for p in groups["head"]}
        assert {id(model.head.weight), id(model.head.bias)} <= head
        assert head == {id(p) for n, p in model.named_parameters() if not n.startswith("encoder.")}


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("kw,match", [
    ({"num_outputs": 0}, r"num_outputs must be an integer >= 1, got 0"),
    ({"num_outputs": True}, r"num_outputs must be an integer >= 1, got True"),
    ({"num_outputs": 2.0}, r"num_outputs must be an integer >= 1, got 2.0"),
    ({"pooling": "max"}, r"unknown classifier pooling 'max'; valid choices: auto, avg, mean, token"),
    ({"pooling": "token"}, r"pooling 'token' needs a vit encoder; a cnn encoder takes: auto, avg"),
    ({"stem": "vit_s", "pooling": "avg"}, (r"pooling 'avg' needs a cnn/swin encoder; a vit encoder takes: "
                                           r"auto, mean, token")),
    ({"stem": "swin_b", "pooling": "mean"}, (r"pooling 'mean' needs a vit encoder; a swin encoder takes: "
                                            r"auto, avg")),
    ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
    ({"image_size": 12}, r"image_size 12 does not fit classifier encoder 'r18': a ResNet classifier takes 16 px"),
    ({"stem": "convnext_t", "image_size": 48}, (r"image_size 48 does not fit classifier encoder 'convnext_t' "
                                                r"\(convnext_tiny\): it must be a multiple of 32 \(total stride "
                                                r"32\), e.g. 32 or 64")),
    ({"stem": "vit_s", "image_size": 40}, r"multiple of 16 \(patch size 16\), e.g. 32 or 48"),
    ({"stem": "r5000"}, r"unknown encoder 'r5000'; valid choices: .*r18"),
])
def test_config_errors_are_one_line_and_build_nothing(no_timm_build, kw, match):
    kw = {"stem": "r18", "num_outputs": 2, "image_size": 32, **kw}
    stem = kw.pop("stem")
    cfg = enc_cfg("r18", name="r5000") if stem == "r5000" else enc_cfg(stem)
    for call in (check_classifier, build_classifier):
        with pytest.raises(ConfigError, match=match) as err:
            call(cfg, **kw, catalogue=PROJECT)
        assert "\n" not in str(err.value)


def test_token_pooling_needs_a_cls_token():
    cfg = enc_cfg("vit_s", timm_kwargs={"class_token": False, "global_pool": "avg"})
    with pytest.raises(ConfigError, match=r"encoder 'vit_s' \(vit_small_patch16_224\) has no CLS token: use "
                                          r"classifier pooling 'mean'"):
        build_classifier(cfg, num_outputs=2, image_size=32)


def test_a_resnet_classifier_takes_medmnist_28_px():
    """MedMNIST trains ResNets at 28 px: the global pool sees a 1x1 map, the logits are finite."""
    out = _clf("r18", size=28)(torch.randn(2, 3, 28, 28))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
