"""Whole 3D segmentation networks (MONAI), chosen by ``conf/net3d/<name>.yaml``.

Why MONAI's and one wrapper: the people running 3D studies know MONAI's networks and their weights' key
names, so the network is MONAI's own module (``Net3D.net``) and checkpoints keep its keys under ``net.``.
The wrapper only adds what the training code asks of every network, ``param_groups()``: one group
("network": no encoder LR factor, since a whole U-Net has no pretrained encoder part here).

Channels in and out come from the data (the dataset.json's modalities; its labels, background included),
never from the yaml, so one net3d config fits every dataset.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from medtransfer.errors import ConfigError

NET3D = ("unet",)  # MONAI networks a net3d yaml can name (``kind``; default: unet)
FIELDS = {"name", "kind", "channels", "strides", "num_res_units", "norm", "dropout"}


class Net3D(nn.Module):
    def __init__(self, name: str, net: nn.Module):
        super().__init__()
        self.name, self.net = name, net

    def forward(self, x):
        return self.net(x)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"network": list(self.parameters())}


def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def _ints(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1
                                                  for x in v)


def check_net3d(cfg: Mapping) -> dict:
    """The net3d yaml's fields, checked (one-line ConfigError naming the field)."""
    cfg = _plain(cfg)
    name = cfg.get("name")
    unknown = sorted(set(cfg) - FIELDS)
    if unknown:
        raise ConfigError(f"net3d.{unknown[0]}: unknown field of net3d={name}; valid: {', '.join(sorted(FIELDS))}")
    kind = cfg.get("kind", "unet")
    if kind not in NET3D:
        raise ConfigError(f"net3d.kind={kind!r}; valid choices: {', '.join(NET3D)}")
    ch, st = cfg.get("channels"), cfg.get("strides")
    if not _ints(ch) or len(ch) < 2:
        raise ConfigError(f"net3d.channels={ch!r}: expected at least 2 positive integers (features per stage)")
    if not _ints(st) or len(st) != len(ch) - 1:
        raise ConfigError(f"net3d.strides={st!r}: expected {len(ch) - 1} positive integers (one per "
                          f"down-sampling, len(channels) - 1)")
    return cfg


def patch_multiple(cfg: Mapping) -> int:
    """What every patch axis must be a multiple of: the product of the strides (the U-Net's skips must align)."""
    out = 1
    for s in check_net3d(cfg)["strides"]:
        out *= int(s)
    return out


def build_net3d(cfg: Mapping, in_channels: int, out_channels: int) -> Net3D:
    """The untrained network: MONAI ``UNet(spatial_dims=3, ...)`` with the yaml's stages."""
    from monai.networks.nets import UNet

    cfg = check_net3d(cfg)
    net = UNet(spatial_dims=3, in_channels=int(in_channels), out_channels=int(out_channels),
               channels=tuple(cfg["channels"]), strides=tuple(cfg["strides"]),
               num_res_units=int(cfg.get("num_res_units", 2)), norm=str(cfg.get("norm", "instance")),
               dropout=float(cfg.get("dropout", 0.0)))
    return Net3D(str(cfg["name"]), net)
