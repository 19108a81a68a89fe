"""3D datasets in the registry: `VolumeSpec`s, so ``dataset.task`` (segmentation3d), name checks, validation
and the run's data fingerprint treat them like the 2D ones.

Why a spec and not only the DataModule: the training code asks the registry which task a dataset is
(`config.dataset_task`) and validates every job of a sweep through `config.validate_dataset_cfg` before any
starts; a 3D spec answers both from a listing and NIfTI headers (`volume_datamodule.validate_volume_cfg`).

The dataset yaml also carries the run's patch options (`RUN_KEYS`: ``patch_size``, ``fg_oversample``,
``patches_per_epoch``), next to the data they fit, as 2D yamls carry ``image_size``; `volume_cfg` strips
them before the data layer sees the config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from medtransfer import settings
from medtransfer.data.datasets import add_spec
from medtransfer.data.splits import GENERIC_SPLITS
from medtransfer.data.volume_datamodule import VOLUME_DEFAULTS, validate_volume_cfg
from medtransfer.errors import ConfigError

TASK = "segmentation3d"
RUN_KEYS = {"patch_size": [32, 32, 32], "fg_oversample": 0.33, "patches_per_epoch": None}


@dataclass(frozen=True)
class VolumeSpec:
    """A 3D dataset: its layout and, for a registered copy, its folder under $MEDTRANSFER_DATA_ROOT."""

    name: str
    folder: str | None  # relative to $MEDTRANSFER_DATA_ROOT; None: dataset.root is required
    layout: str = "msd"
    description: str = ""
    default_split: str = "random_70_30"
    task: str = TASK
    fold_by_group: bool = False

    @property
    def all_splits(self) -> dict[str, object]:
        return dict(GENERIC_SPLITS)

    @property
    def defaults(self) -> dict:
        return {**VOLUME_DEFAULTS, **RUN_KEYS, "name": self.name, "layout": self.layout}

    def volume_cfg(self, cfg: Mapping) -> dict:
        """The data layer's part of a dataset config: run keys stripped, the registered folder as root."""
        out = {k: v for k, v in cfg.items() if k not in RUN_KEYS}
        if not out.get("root") and self.folder is not None:
            base = settings.data_root(required=False)
            if base is None:
                raise ConfigError(f"{settings.DATA_ROOT} is not set: set it (e.g. in .env) to the folder holding "
                                  f"{self.folder}/ or pass dataset.root=PATH")
            out["root"] = str(base / self.folder)
        return out

    def validate(self, cfg: Mapping) -> None:
        """Layout, every case's headers and the split (no voxel decoded): `validate_volume_cfg`."""
        validate_volume_cfg(self.volume_cfg(cfg))

    def fingerprint_parts(self, cfg: Mapping) -> dict:
        """For `config.data_fingerprint`: the folder and its files' names and sizes, unless it is the
        registered copy at its registered place (then the condition is exactly the dataset's name)."""
        if not cfg.get("root"):
            return {}
        p = Path(str(cfg["root"])).expanduser()
        base = settings.data_root(required=False)
        if not p.is_absolute() and not p.exists() and base is not None:
            p = base / p
        p = p.resolve()
        if self.folder is not None and base is not None and p == (base / self.folder).resolve():
            return {}
        files = sorted((os.path.relpath(os.path.join(d, n), p), os.path.getsize(os.path.join(d, n)))
                       for d, _, names in os.walk(p) for n in names)
        return {"root": str(p), "files": files}


def volume_source(dataset_cfg):
    """The `VolumeSource` (cases, channels, labels) of a 3D dataset config: a listing and its dataset.json."""
    from medtransfer.data.config import dataset_options
    from medtransfer.data.datasets import get_spec
    from medtransfer.data.volume_datamodule import resolve_root, volume_options
    from medtransfer.data.volumes import list_source

    opts = dataset_options(dataset_cfg)
    cfg = volume_options(get_spec(opts["name"]).volume_cfg(opts))
    return list_source(resolve_root(cfg), cfg["layout"], cfg["labels"])


def volume_io(dataset_cfg) -> tuple[int, int]:
    """(input channels, classes incl. background) of a 3D dataset: what sizes its network."""
    source = volume_source(dataset_cfg)
    return len(source.channels), source.num_classes


def register_volumes(name: str, **facts) -> VolumeSpec:
    spec = VolumeSpec(name=name, **facts)
    add_spec(spec)
    return spec


register_volumes("hippocampus", folder="msd_hippocampus/Task04_Hippocampus",
                 description="MSD Task04 Hippocampus: 260 labelled MRI, background / anterior / posterior")
register_volumes("msd", folder=None, description="any Medical Segmentation Decathlon task folder (dataset.root)")
