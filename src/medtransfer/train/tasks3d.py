"""3D segmentation as a task object (train/tasks.py's seam): a 3D dataset (``task: segmentation3d``, MSD /
nnU-Net layouts) trains one whole 3D network (``net3d``, MONAI) on random patches and is tested on whole
volumes by sliding windows, scored in millimetres on each case's original grid (train/module3d.py).

Where the options live: ``patch_size``, ``fg_oversample`` and ``patches_per_epoch`` are dataset keys (next to
the data they fit, as 2D datasets carry ``image_size``; data/volume_specs.py strips them before the data layer
reads the config); the network is the ``net3d`` group, named in the condition's encoder slot (enc-unet:
train/resolvers.network), so 2D slugs and results keys stay as they were; the augmentation is the ``augment``
axis, whose 2D choices map onto the data layer's 3D presets (`AUGMENT_3D`).

What is refused at config time, for the whole grid, before any job: a 2D encoder or decoder with a 3D dataset
(an impossible cell, like a decoder with a classification dataset), a 2D loss, an augmentation with no 3D
counterpart, a patch the network cannot take, pretrained weights or a partial fine-tuning strategy (3D runs
start from scratch and train everything until whole-network transfer exists), DDP.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from medtransfer.errors import ConfigError
from medtransfer.runs import HEADLINE

LOSSES_3D = {"monai.losses.DiceLoss": "dice_softmax", "monai.losses.DiceCELoss": "dice_ce"}
# the 2D augment choice → the 3D data layer's preset (volume_datamodule.AUGMENTS_3D)
AUGMENT_3D = {"none": "none", "flip_rot90_noise": "paper003"}


def _options(cfg: DictConfig) -> tuple[dict, object]:
    """(the dataset options with the 3D run keys filled in, its registry spec)."""
    from medtransfer.data.config import dataset_options
    from medtransfer.data.datasets import get_spec

    opts = dataset_options(cfg.dataset)
    return opts, get_spec(opts["name"])


def _check_run_keys(opts: dict, multiple: int) -> None:
    patch = opts["patch_size"]
    if (not isinstance(patch, (list, tuple)) or len(patch) != 3
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 4 for p in patch)):
        raise ConfigError(f"dataset.patch_size={patch!r}: expected 3 integers >= 4 (paper 003: [96, 96, 96])")
    if any(p % multiple for p in patch):
        raise ConfigError(f"dataset.patch_size={list(patch)}: every axis must be a multiple of {multiple} (the "
                          "product of net3d.strides), e.g. "
                          f"{[max(multiple, p // multiple * multiple) for p in patch]}")
    fg = opts["fg_oversample"]
    if isinstance(fg, bool) or not isinstance(fg, (int, float)) or not 0.0 <= fg <= 1.0:
        raise ConfigError(f"dataset.fg_oversample={fg!r}: expected a fraction in [0, 1] (nnU-Net: 0.33)")
    ppe = opts["patches_per_epoch"]
    if ppe is not None and (isinstance(ppe, bool) or not isinstance(ppe, int) or ppe < 1):
        raise ConfigError(f"dataset.patches_per_epoch={ppe!r}: expected null or an integer >= 1")


@dataclass(frozen=True)
class Segmentation3DTask:
    name: str = "segmentation3d"
    report_metric: str = HEADLINE["segmentation3d"]
    monitors: tuple[str, ...] = ("val/dice", "val/loss")
    uses_encoder: bool = False

    def not_applicable(self, cfg: DictConfig, image_size) -> str | None:
        """A 2D encoder or decoder with a 3D dataset: a grid cell that cannot exist."""
        parts = [f"encoder={cfg.encoder.name}"] if cfg.get("encoder") is not None else []
        parts += [f"decoder={cfg.decoder.name}"] if cfg.decoder.name != "none" else []
        if parts:
            return (f"{' '.join(parts)} with dataset={cfg.dataset.name}: a 3D dataset takes one 3D network "
                    f"(net3d=unet, net3d=resunet14), no 2D encoder or decoder")
        return None

    def check(self, cfg: DictConfig) -> None:
        from medtransfer.models.net3d import patch_multiple

        net = cfg.get("net3d")
        if net is None or net.name == "none":
            raise ConfigError(f"dataset={cfg.dataset.name} is 3D: choose a 3D network, e.g. net3d=unet")
        target = str(cfg.loss.get("_target_"))
        if target not in LOSSES_3D:
            raise ConfigError(f"loss ({target}) is not a 3D multi-class loss; valid choices: "
                              f"{', '.join(LOSSES_3D.values())}")
        if cfg.augment.get("name") not in AUGMENT_3D:
            raise ConfigError(f"augment={cfg.augment.get('name')} has no 3D counterpart; valid choices for 3D "
                              f"datasets: {', '.join(AUGMENT_3D)}")
        if cfg.pretrain.get("kind") != "none":
            raise ConfigError(f"pretrain={cfg.pretrain.name}: 3D networks start from scratch for now; valid "
                              "choices: scratch")
        if cfg.finetune.name != "full":
            raise ConfigError(f"finetune={cfg.finetune.name}: a 3D network has no encoder/decoder split yet; valid "
                              "choices: full")
        if cfg.get("train_crop") is not None:
            raise ConfigError("train_crop is a 2D option; a 3D dataset trains on dataset.patch_size patches "
                              "(train_crop=null)")
        if cfg.get("select") == "best_on_test":
            raise ConfigError("select=best_on_test is paper 001's 2D protocol; valid choices for 3D: best, last")
        if "ddp" in str(cfg.trainer.get("strategy", "")):
            raise ConfigError("3D per-case metrics are not gathered across DDP ranks yet: use one device "
                              "(trainer=cpu or trainer=gpu)")
        _check_run_keys(_options(cfg)[0], patch_multiple(net))
        from medtransfer.data.volume_specs import volume_source

        source = volume_source(cfg.dataset)
        if list(source.label_values) != list(range(source.num_classes)):
            raise ConfigError(f"{source.meta_file or source.root}: label values {list(source.label_values)} must be "
                              f"0..{source.num_classes - 1} (one network output per value)")

    def normalisation(self, cfg: DictConfig) -> tuple[None, None, str]:
        """No mean/std: intensities are normalised by ``dataset.preprocessing`` (recorded with the split)."""
        return None, None, "dataset.preprocessing"

    def datamodule(self, cfg: DictConfig, mean, std, pin_memory: bool = False, **_loader):
        """`VolumeDataModule` (persistent workers are a 2D loader option: not used here)."""
        from medtransfer.data.volume_datamodule import VolumeDataModule

        opts, spec = _options(cfg)
        return VolumeDataModule(spec.volume_cfg(opts), patch_size=list(opts["patch_size"]),
                                batch_size=int(cfg.batch_size), num_workers=int(cfg.num_workers),
                                seed=int(cfg.seed), augment=AUGMENT_3D[cfg.augment.name],
                                fg_oversample=float(opts["fg_oversample"]),
                                patches_per_epoch=opts["patches_per_epoch"], pin_memory=pin_memory)

    def build_model(self, cfg: DictConfig, dm):
        from medtransfer.networks import build_network

        return build_network(cfg, volume=(dm.in_channels, dm.num_classes))

    def initialise(self, cfg: DictConfig, model) -> tuple[dict, dict]:
        """(pretrain, finetune) records: scratch and full (the only choices `check` lets through)."""
        total = sum(p.numel() for p in model.parameters())
        pretrain = {"source": cfg.pretrain.name, "kind": "none", "parts": [], "tensors_loaded": 0, "missing": [],
                    "unexpected": [], "file": None, "file_sha256": None, "url": None, "recipe": None}
        return pretrain, {"strategy": "full", "total": total, "trainable": total, "frozen": 0}

    def module(self, run_cfg: DictConfig, model, dm, **common):
        from medtransfer.data.volumes import read_label
        from medtransfer.train.module3d import Segmentation3DModule

        source = dm.source

        def original_label(case_id: str):
            return read_label(source.case(case_id), source.label_values)[0][0]

        return Segmentation3DModule(model=model, labels=source.labels, patch_size=dm.patch_size,
                                    original_label=original_label, **common)

    def record(self, cfg: DictConfig, dm) -> dict:
        return {"labels": list(dm.source.label_names), "channels": list(dm.source.channels),
                "patch_size": list(dm.patch_size), "preprocessing": dm.resolved.key() if dm.resolved else None}

    def test_results(self, cfg: DictConfig, module) -> tuple[dict, list[dict]]:
        return module.test_results(), module.test_rows
