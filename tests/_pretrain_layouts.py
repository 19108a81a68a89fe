"""Checkpoint files in each source's exact published layout, built from random timm models (test helper).

Each builder gets the target backbone's state dict `sd` (what must end up loaded) and returns the object the
source publishes. Everything that must NOT be loaded (heads, projectors, momentum encoders, EMA copies) gets
different random values, so loading the wrong part makes the equality assertions fail.
"""

from __future__ import annotations

import itertools

import torch


def noise(sd, prefix=""):
    """Same keys/shapes, different values: a momentum encoder, an EMA copy, a wrong tensor."""
    return {prefix + k: (torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v.clone())
            for k, v in sd.items()}


def pre(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def fc(prefix="fc.", n_in=512, n_out=1000):
    return {f"{prefix}weight": torch.randn(n_out, n_in), f"{prefix}bias": torch.randn(n_out)}


def mlp(prefix, dims=(512, 64, 32), bn=False):
    out = {}
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        out[f"{prefix}{2 * i}.weight"] = torch.randn(b, a)
        if bn:
            out[f"{prefix}{2 * i + 1}.weight"] = torch.ones(b)
            out[f"{prefix}{2 * i + 1}.running_mean"] = torch.zeros(b)
    return out


def no_nbt(sd):
    return {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}


# source → (builder(sd) → object to save, file suffix-agnostic torch.save); r50 stand-in: timm resnet26, the same
# bottleneck key layout (conv1-3, bn1-3, downsample) at a third of the size
def moco_v1_v2(sd):
    return {"state_dict": {**pre(sd, "module.encoder_q."), **mlp("module.encoder_q.fc."),
                           **noise(sd, "module.encoder_k."), "module.queue": torch.randn(32, 64)},
            "epoch": 200, "arch": "resnet50", "optimizer": {"state": {}, "param_groups": []}}


def moco_v3_r50(sd):
    return {"state_dict": {**pre(sd, "module.base_encoder."), **mlp("module.base_encoder.fc.", bn=True),
                           **noise(sd, "module.momentum_encoder."), **mlp("module.momentum_encoder.fc.", bn=True),
                           **mlp("module.predictor.", dims=(32, 64, 32), bn=True)},
            "epoch": 100, "arch": "resnet50"}


def moco_v3_vit(sd):
    d = sd["cls_token"].shape[-1]
    return {"state_dict": {**pre(sd, "module.base_encoder."), **mlp("module.base_encoder.head.", dims=(d, 64, 32)),
                           **noise(sd, "module.momentum_encoder."), **mlp("module.predictor.", dims=(32, 64, 32))},
            "epoch": 300, "arch": "vit_small"}


def swav_like(sd):
    return {**pre(sd, "module."), **mlp("module.projection_head.", bn=True),
            "module.prototypes.weight": torch.randn(300, 32)}


def deepcluster_like(sd):
    return {**pre(sd, "module."), **mlp("module.projection_head.", bn=True),
            **{f"module.prototypes.prototypes{i}.weight": torch.randn(300, 32) for i in range(3)}}


def pycontrast(sd):
    return {"model": {**pre(sd, "module.encoder."), **mlp("module.head."), **mlp("module.head_jig.")},
            "model_ema": {**noise(sd, "encoder."), **mlp("head.")},
            "contrast": {"memory": torch.randn(100, 32)}, "optimizer": {"state": {}}, "epoch": 800}


def flat(sd):
    return dict(sd)


def flat_with_fc(sd):
    return {**sd, **fc()}


def state_dict_with_fc(sd):
    return {"state_dict": {**sd, **fc(n_out=10000)}}


def module_state_dict_with_fc(sd):
    return {"state_dict": pre({**sd, **fc(n_out=14)}, "module.")}


def byol_converted(sd):
    return {"state_dict": {**no_nbt(sd), **fc()}}


def mae(sd):
    d = sd["cls_token"].shape[-1]
    return {"model": {**sd, "mask_token": torch.randn(1, 1, 32), "decoder_embed.weight": torch.randn(32, d),
                      "decoder_pred.weight": torch.randn(16, 32)}}


def vit_head(sd):
    d = sd["cls_token"].shape[-1]
    return {**sd, "head.weight": torch.randn(10, d), "head.bias": torch.randn(10)}


def radimagenet(sd):
    names = {"conv1.": "backbone.0.", "bn1.": "backbone.1.", "layer1.": "backbone.4.", "layer2.": "backbone.5.",
             "layer3.": "backbone.6.", "layer4.": "backbone.7."}
    out = {}
    for k, v in sd.items():
        p = next(p for p in names if k.startswith(p))
        out[names[p] + k[len(p):]] = v
    return out


def hrnet_mmseg(sd):
    skip = ("incre_modules.", "downsamp_modules.", "final_layer.")
    return {"meta": {"env_info": "sys.platform: linux", "CLASSES": ["road", "sidewalk"], "PALETTE": [[0, 0, 0]]},
            "state_dict": {**{f"backbone.{k}": v for k, v in sd.items() if not k.startswith(skip)},
                           "decode_head.conv_seg.weight": torch.randn(19, 32, 1, 1),
                           "decode_head.convs.0.conv.weight": torch.randn(32, 270, 1, 1)}}


# (source, encoder entry, timm stand-in, timm kwargs, builder, whether the file keeps num_batches_tracked)
CASES = [
    ("mocov1", "r50", "resnet26", {}, moco_v1_v2),
    ("mocov2", "r50", "resnet26", {}, moco_v1_v2),
    ("mocov3", "r50", "resnet26", {}, moco_v3_r50),
    ("mocov3", "vit_s", "vit_tiny_patch16_224", {"img_size": 32, "depth": 2, "num_heads": 12}, moco_v3_vit),
    ("mocov3", "vit_b", "vit_tiny_patch16_224", {"img_size": 32, "depth": 2}, moco_v3_vit),
    ("barlowtwins", "r50", "resnet26", {}, flat),
    ("swav", "r50", "resnet26", {}, swav_like),
    ("deepclusterv2", "r50", "resnet26", {}, deepcluster_like),
    ("selav2", "r50", "resnet26", {}, deepcluster_like),
    ("dino", "r50", "resnet26", {}, flat),
    ("dino", "vit_s", "vit_tiny_patch16_224", {"img_size": 32, "depth": 2}, flat),
    ("dino", "vit_b", "vit_tiny_patch16_224", {"img_size": 32, "depth": 2}, flat),
    ("mae", "vit_b", "vit_tiny_patch16_224", {"img_size": 32, "depth": 2}, mae),
    ("simclrv1", "r50", "resnet26", {}, lambda sd: {"state_dict": flat_with_fc(sd)}),
    ("simclrv2", "r50", "resnet26", {}, no_nbt),
    ("byol", "r50", "resnet26", {}, byol_converted),
    ("pclv1", "r50", "resnet26", {}, moco_v1_v2),
    ("pclv2", "r50", "resnet26", {}, moco_v1_v2),
    ("insdis", "r50", "resnet26", {}, pycontrast),
    ("pirl", "r50", "resnet26", {}, pycontrast),
    ("infomin", "r50", "resnet26", {}, pycontrast),
    ("inat2021", "r50", "resnet26", {}, state_dict_with_fc),
    ("inat2021_mini", "r50", "resnet26", {}, state_dict_with_fc),
    ("radimagenet", "r50", "resnet50", {}, radimagenet),
    ("chestxray14", "r50", "resnet26", {}, lambda sd: {"state_dict": {**sd, **fc(n_out=14)}}),
    ("chexpert", "r50", "resnet26", {}, module_state_dict_with_fc),
    ("imagenet_chestxray14", "r50", "resnet26", {}, lambda sd: {"state_dict": {**sd, **fc(n_out=14)}}),
    ("imagenet_chexpert", "r50", "resnet26", {}, module_state_dict_with_fc),
    ("hyperkvasir_mocov3", "r50", "resnet26", {}, flat),
    ("hyperkvasir_mocov3", "vit_b", "vit_tiny_patch16_224", {"img_size": 32, "depth": 2}, flat),
    ("hyperkvasir_barlowtwins", "r50", "resnet26", {}, flat),
    ("hyperkvasir_mae", "vit_b", "vit_tiny_patch16_224", {"img_size": 32, "depth": 2}, mae),
    ("imagenet", "r18", "resnet18", {}, flat_with_fc),
    ("imagenet21k", "vit_s", "vit_tiny_patch16_224", {"img_size": 32, "depth": 2}, vit_head),
    ("cityscapes", "hrnet_w48", "hrnet_w18_small", {}, hrnet_mmseg),
]
