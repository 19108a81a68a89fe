"""The project's config options as the application layer hands them to the library (tests may read conf/)."""

from omegaconf import DictConfig, OmegaConf

from medtransfer import settings
from medtransfer.configs import Catalogue

CONF = settings.PROJECT_ROOT / "conf"
PROJECT = Catalogue.from_dir(CONF, ("encoder", "decoder", "pretrain"))
SOURCES = PROJECT.group("pretrain")
# what the papers' grids need: conf/ may hold more, never fewer
PAPER_ENCODERS = ("r18", "r50", "r101", "vit_s", "vit_b", "swin_b", "convnext_t", "hrnet_w48")
PAPER_DECODERS = ("fcn", "pspnet", "deeplabv3", "deeplabv3plus", "upernet", "unet", "fpn", "dpt", "segformer")


def enc_cfg(stem: str, /, **override) -> DictConfig:
    """conf/encoder/<stem>.yaml as Hydra composes it, with `override` merged in."""
    return OmegaConf.merge(PROJECT.get("encoder", stem), override)


def dec_cfg(stem: str, /, **override) -> DictConfig:
    return OmegaConf.merge(PROJECT.get("decoder", stem), override)
