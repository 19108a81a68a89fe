"""The dataset section of a config: defaults, and a cheap validation that runs before any compute.

Why separate from the DataModule: the training code validates every job of a sweep before starting
any, so this must be fast (no listing of thousands of files, no decoding) and must fail with one line
that names the option and its valid choices — the house style of `medtransfer.errors`. The data fingerprint
that names runs on user-given data (`data_fingerprint`) lives here for the same reason: it runs while Hydra
resolves the run directory, from the config and a directory listing alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from medtransfer import settings
from medtransfer.data.datasets import DATASETS, DatasetSpec, get_spec, resolve_root
from medtransfer.data.readers import MASK_POLICIES
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
    "mask_foreground": "binary",  # how mask values map to foreground: binary | nonzero | [values] (readers)
    "jpeg_draft": False,  # true: reduced-scale JPEG decode before resizing (faster, not exact)
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
    mf = cfg["mask_foreground"]
    if mf not in MASK_POLICIES and not _value_list(mf):
        raise ConfigError(f"dataset.mask_foreground={mf!r}: expected binary, nonzero or a non-empty list of "
                          "mask values (integers >= 0, e.g. [1, 2])")
    if not isinstance(cfg["jpeg_draft"], bool):
        raise ConfigError(f"dataset.jpeg_draft={cfg['jpeg_draft']!r}: expected true or false")
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


def _value_list(v) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) > 0
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v))


# ------------------------------------------------------------------------------------------ run identity
def data_fingerprint(dataset_cfg) -> str | None:
    """8 hex naming the data of a config whose files are not the registered dataset at its registered place.

    Why: the run directory is the run's identity (runs/<study>/<condition>/seed<k>; a complete results.json
    there means "done, skip"), and the condition names the dataset only by name. ``dataset=folder`` with
    another root, a registered dataset copied elsewhere, or an edited split file are other data under the
    same name: a second run would skip and report the first one's results. The fingerprint covers what
    makes them differ without decoding anything: the resolved root; the names and sizes of the files
    under its layout folders; the contents of the split scheme's list files there; and the contents of a
    split file (``dataset.split=*.json``). The training config puts it into ``condition.extra`` as
    ``data=<hex>`` (train/resolvers.py), so the run directory, results.json, W&B tags and report rows all
    tell the runs apart.

    None — the condition exactly as before — for a registered dataset at its registered location
    (``$MEDTRANSFER_DATA_ROOT/<folder>``, named or not; synthetic data generated from its parameters) with a
    named split: existing run directories of those keep their names. It validates nothing: a missing root
    or an unknown name is left to `validate_dataset_cfg`'s one-line error (Hydra resolves the run directory
    before the job validates its config).
    """
    cfg = dataset_options(dataset_cfg)
    spec = DATASETS.get(cfg.get("name"))
    if spec is None:
        return None
    parts: dict = {}
    if is_split_file(cfg["split"]):
        parts["split_file"] = _digest(Path(cfg["split"]).expanduser())
    root = _user_root(spec, cfg)
    if root is not None:
        parts["root"] = str(root)
        if not spec.generated:
            parts["files"] = _listing(root, sorted({Path(rel).parts[0] for rel in spec.layout}))
        scheme = spec.all_splits.get(cfg["split"])
        lists = (*getattr(scheme, "files", ()), *getattr(scheme, "record_files", ()))
        parts["lists"] = {rel: _digest(root / rel) for rel in lists}
    if not parts:
        return None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]


def _user_root(spec: DatasetSpec, cfg: Mapping) -> Path | None:
    """The resolved ``dataset.root`` unless it is the registered location (or not given)."""
    if not cfg.get("root"):
        return None
    root = Path(str(cfg["root"])).expanduser().resolve()
    base = settings.data_root(required=False)
    if spec.folder is not None and base is not None and root == (base / spec.folder).resolve():
        return None
    return root


def _listing(root: Path, tops: list[str]) -> list[tuple[str, int]]:
    out = []
    for top in tops:
        for d, _, names in os.walk(root / top):
            paths = [os.path.join(d, n) for n in names]
            out += [(os.path.relpath(p, root), os.path.getsize(p)) for p in paths]
    return sorted(out)


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return f"unreadable:{path}"  # validation names the missing file; the identity still differs
