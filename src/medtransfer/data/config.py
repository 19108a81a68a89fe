"""The dataset section of a config: defaults, and a cheap validation that runs before any compute.

Why separate from the DataModule: the training code validates every job of a sweep before starting
any, so this must be fast (no listing of thousands of files, no decoding) and must fail with one line
that names the option and its valid choices — the house style of `medtransfer.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from medtransfer import settings
from medtransfer.data.datasets import DATASETS, get_spec, resolve_root
from medtransfer.errors import ConfigError, choices_msg

DEFAULTS = {
    "root": None,
    "split": None,  # null → the dataset's default split
    "split_seed": None,  # null → the run seed
    "val_fraction": 0.1,
    "n_train": None,
    "fold": None,  # k-fold cross-validation: which fold is val (null: no CV)
    "folds": 5,
    "folds_seed": 12345,  # nnU-Net's: the folds are the same for every run seed
    "num_classes": 1,
    "metrics_in_fov": False,  # DRIVE: count validation/test pixels inside the field-of-view mask only
}


def to_plain(cfg) -> dict:
    """DictConfig or Mapping → plain dict (interpolations resolved)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"dataset config must be a mapping, got {type(cfg).__name__}")
    return dict(cfg)


def dataset_options(dataset_cfg) -> dict:
    """Plain dict with defaults filled in and the split name resolved (no validation)."""
    cfg = {**DEFAULTS, **{k: v for k, v in to_plain(dataset_cfg).items()}}
    if cfg.get("name") in DATASETS and cfg["split"] is None:
        cfg["split"] = DATASETS[cfg["name"]].default_split
    return cfg


def _int_or_none(cfg: Mapping, key: str, lo: int, hi: int | None = None) -> None:
    v = cfg.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"dataset.{key}={v!r}: expected null or an integer {rng}")


def metrics_region(dataset_cfg) -> str:
    """Where the overlap and surface metrics count pixels: "fov" (inside each image's field-of-view mask, as
    DRIVE results are reported) or "image" (every pixel). Recorded in results.json beside the numbers."""
    return "fov" if dataset_options(dataset_cfg)["metrics_in_fov"] else "image"


def is_split_file(split) -> bool:
    return isinstance(split, str) and split.endswith(".json")


def validate_dataset_cfg(dataset_cfg: Mapping) -> None:
    """Name known, root present, split valid for this dataset, numbers sane; raises a one-line ConfigError."""
    cfg = dataset_options(dataset_cfg)
    name = cfg.get("name")
    if name not in DATASETS:
        raise ConfigError(choices_msg("dataset.name", name, DATASETS))
    spec = get_spec(name)

    split = cfg["split"]
    if is_split_file(split):
        if not Path(split).expanduser().is_file():
            raise ConfigError(f"dataset.split: split file {split} does not exist")
    elif split not in spec.all_splits:
        raise ConfigError(choices_msg(f"dataset.split for {name}", split, spec.all_splits))

    vf = cfg["val_fraction"]
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0.0 <= vf < 1.0:
        raise ConfigError(f"dataset.val_fraction={vf!r}: expected a number in [0, 1)")
    if cfg["num_classes"] != 1:
        raise ConfigError(
            f"dataset.num_classes={cfg['num_classes']!r}: only binary segmentation is supported; "
            "valid choices: 1"
        )
    fov = cfg["metrics_in_fov"]
    if not isinstance(fov, bool):
        raise ConfigError(f"dataset.metrics_in_fov={fov!r}: expected true or false")
    if fov and not spec.has_fov:
        with_fov = sorted(n for n, s in DATASETS.items() if s.has_fov)
        raise ConfigError(f"dataset.metrics_in_fov=true: {name} has no field-of-view masks; "
                          f"datasets with them: {', '.join(with_fov)}")
    _int_or_none(cfg, "n_train", 1)
    _int_or_none(cfg, "folds", 2)
    _int_or_none(cfg, "folds_seed", 0)
    _int_or_none(cfg, "fold", 0, int(cfg["folds"]) - 1)
    _int_or_none(cfg, "split_seed", 0)
    _int_or_none(cfg, "image_size", 16, 4096)
    if spec.generated:
        _int_or_none(cfg, "n_images", 10, 1_000_000)
        _int_or_none(cfg, "native_size", 32, 2048)
        _int_or_none(cfg, "data_seed", 0)
        n_images = cfg.get("n_images") or 64
        if cfg["n_train"] is not None and cfg["n_train"] > n_images:
            raise ConfigError(f"dataset.n_train={cfg['n_train']} exceeds dataset.n_images={n_images}")
        if not cfg.get("root"):
            settings.cache_dir()  # creatable?
            return

    root = resolve_root(spec, cfg, must_exist=True)
    for rel in spec.layout:
        if not (root / rel).is_dir():
            raise ConfigError(
                f"dataset {name}: {root / rel} not found (expected layout {spec.image_pattern} and "
                f"{spec.mask_pattern} under {root})"
            )
    scheme = spec.all_splits.get(split)
    for rel in getattr(scheme, "files", ()):
        if not (root / rel).is_file():
            raise ConfigError(
                f"dataset.split={split!r} of {name} needs {root / rel}, which does not exist; "
                f"valid choices: {', '.join(sorted(spec.all_splits))}"
            )
