"""The dataset section of a config: defaults, and a cheap validation that runs before any compute.

Why separate from the DataModule: the training code validates every job of a sweep before starting
any, so this must be fast (no listing of thousands of files, no decoding) and must fail with one line
that names the option and its valid choices — the house style of `medtransfer.errors`. The data fingerprint
that names runs on user-given data (`data_fingerprint`) lives here for the same reason: it runs while Hydra
resolves the run directory, from the config and a directory listing alone.

Classification datasets (`classification.py`, folder ones `cls_tables.py`) have their own defaults
(`CLS_DEFAULTS` plus the registered label facts) and their own data check (the spec's ``validate``); the
split and number checks here are shared, because both tasks split with the same `splits.make_split`. What
``dataset.label_kind`` and ``dataset.labels`` mean, and what null infers from the data (`resolve_labels`):

* ``label_kind``: labels of shape (N, L>1) → ``multilabel``; (N, 1) with values in {0, 1} → ``binary``;
  (N, 1) with a largest value > 1 → ``multiclass`` (classes 0..max).
* ``labels`` (names): ``binary`` names its positive class only (label 1): one name; ``multiclass`` one name
  per class value 0..C-1; ``multilabel`` one per column. Null → the names the data gives where it gives
  them (folder datasets: CSV columns, class folders — of two classes read as binary, the second), else the
  values as strings: binary ``["1"]``, otherwise ``["0", "1", ...]``.
* Model outputs (``num_outputs``): binary 1, multilabel L, multiclass C.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medtransfer import settings
from medtransfer.data.datasets import DATASETS, DatasetSpec, get_spec, resolve_root
from medtransfer.data.readers import MASK_POLICIES
from medtransfer.errors import ConfigError, choices_msg

if TYPE_CHECKING:
    from medtransfer.data.cls_facts import FileFacts

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

KINDS = ("binary", "multiclass", "multilabel")

CLS_DEFAULTS = {
    "file": None,  # null → the registered file under $MEDTRANSFER_DATA_ROOT (required for generic datasets)
    "label_kind": None,  # null → inferred from the file (module docstring)
    "labels": None,  # null → the label values as names
    "split": None,  # null → the dataset's default split ("official": the file's own parts)
    "split_seed": None,  # null → the run seed
    "val_fraction": 0.1,  # only for splits without a val part (random_80_20, random_70_30)
    "n_train": None,
    "fold": None,
    "folds": 5,
    "folds_seed": 12345,
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
    """Plain dict with the dataset's task defaults filled in, the split name and ``task`` resolved (no
    validation; an explicit ``task`` is kept, for validation to compare with the registry's)."""
    plain = to_plain(dataset_cfg)
    spec = DATASETS.get(plain.get("name"))
    defaults = spec.defaults if spec is not None and spec.task != "segmentation" else DEFAULTS  # cls, 3D: their own
    cfg = {**defaults, **plain}
    if spec is not None:
        cfg.setdefault("task", spec.task)
        if cfg["split"] is None:
            cfg["split"] = spec.default_split
    return cfg


def dataset_task(dataset_cfg) -> str:
    """"segmentation", "classification" or "segmentation3d": which DataModule, network and metrics a config
    needs."""
    name = to_plain(dataset_cfg).get("name")
    return get_spec(name).task


def _int_or_none(cfg: Mapping, key: str, lo: int, hi: int | None = None) -> None:
    v = cfg.get(key)
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"dataset.{key}={v!r}: expected null or an integer {rng}")


def metrics_region(dataset_cfg) -> str:
    """Where the overlap and surface metrics count pixels: "fov" (inside each image's field-of-view mask, as
    DRIVE results are reported) or "image" (every pixel; classification datasets too). Recorded in
    results.json beside the numbers."""
    return "fov" if dataset_options(dataset_cfg).get("metrics_in_fov") else "image"


def is_split_file(split) -> bool:
    return isinstance(split, str) and split.endswith(".json")


def validate_dataset_cfg(dataset_cfg: Mapping) -> None:
    """Name known, root (or file) present, split valid for this dataset, numbers sane; raises a one-line
    ConfigError. Classification datasets also get their file's labels checked against the config."""
    cfg = dataset_options(dataset_cfg)
    name = cfg.get("name")
    if name not in DATASETS:
        raise ConfigError(choices_msg("dataset.name", name, DATASETS))
    spec = get_spec(name)
    if cfg["task"] != spec.task:
        raise ConfigError(f"dataset.task={cfg['task']!r}: {name} is a {spec.task} dataset; valid choices: "
                          f"{spec.task} (or leave it out)")

    split = cfg["split"]
    if is_split_file(split):
        if not Path(split).expanduser().is_file():
            raise ConfigError(f"dataset.split: split file {split} does not exist")
    elif split not in spec.all_splits:
        raise ConfigError(choices_msg(f"dataset.split for {name}", split, spec.all_splits))

    vf = cfg["val_fraction"]
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0.0 <= vf < 1.0:
        raise ConfigError(f"dataset.val_fraction={vf!r}: expected a number in [0, 1)")
    _int_or_none(cfg, "n_train", 1)
    _int_or_none(cfg, "folds", 2)
    _int_or_none(cfg, "folds_seed", 0)
    _int_or_none(cfg, "fold", 0, int(cfg["folds"]) - 1)
    _int_or_none(cfg, "split_seed", 0)
    _int_or_none(cfg, "image_size", 16, 4096)
    if spec.task != "segmentation":  # classification (its file's labels), segmentation3d (volume headers)
        spec.validate(cfg)
        return
    if cfg["num_classes"] != 1:
        raise ConfigError(
            f"dataset.num_classes={cfg['num_classes']!r}: only binary segmentation is supported; "
            "valid choices: 1"
        )
    fov = cfg["metrics_in_fov"]
    if not isinstance(fov, bool):
        raise ConfigError(f"dataset.metrics_in_fov={fov!r}: expected true or false")
    if fov and not spec.has_fov:
        with_fov = sorted(n for n, s in DATASETS.items() if s.task == "segmentation" and s.has_fov)
        raise ConfigError(f"dataset.metrics_in_fov=true: {name} has no field-of-view masks; "
                          f"datasets with them: {', '.join(with_fov)}")
    mf = cfg["mask_foreground"]
    if mf not in MASK_POLICIES and not _value_list(mf):
        raise ConfigError(f"dataset.mask_foreground={mf!r}: expected binary, nonzero or a non-empty list of "
                          "mask values (integers >= 0, e.g. [1, 2])")
    if not isinstance(cfg["jpeg_draft"], bool):
        raise ConfigError(f"dataset.jpeg_draft={cfg['jpeg_draft']!r}: expected true or false")
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


# ------------------------------------------------------------------------------ classification labels
@dataclass(frozen=True)
class LabelInfo:
    kind: str
    names: tuple[str, ...]

    @property
    def num_outputs(self) -> int:
        return 1 if self.kind == "binary" else len(self.names)


def dataset_labels(dataset_cfg) -> LabelInfo:
    """The label kind, names and output count of a classification config, nulls resolved from its file.

    Why: ``label_kind: null`` (``dataset=medmnist``) is only known once the file's labels are read, and the
    loss and the model head must agree with it at config time; reads labels only (memoised), no images.
    """
    cfg = dataset_options(dataset_cfg)
    spec = get_spec(cfg.get("name"))
    if spec.task != "classification":
        raise ConfigError(f"dataset {spec.name} is a {spec.task} dataset: it has no image labels")
    return resolve_labels(cfg, spec.facts(cfg))


def resolve_labels(cfg: Mapping, facts: FileFacts) -> LabelInfo:
    """The config's label_kind/labels checked against the file's labels (nulls inferred: module docstring)."""
    kind, names, f = cfg.get("label_kind"), cfg.get("labels"), facts.path
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"{choices_msg('dataset.label_kind', kind, KINDS)} (or null: inferred from the "
                          "file)")
    if names is not None:
        if (not isinstance(names, (list, tuple)) or not names
                or not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in names)
                or len({str(n) for n in names}) != len(names)):
            raise ConfigError(f"dataset.labels={names!r}: expected null or a list of distinct class names")
        names = tuple(str(n) for n in names)
    width = facts.width
    top = int(facts.labels.max()) if facts.labels.size else 0
    kind = kind or ("multilabel" if width > 1 else "binary" if top <= 1 else "multiclass")
    if kind != "multilabel" and width != 1:
        raise ConfigError(f"dataset.label_kind={kind}: {f} has {width} labels per image (labels "
                          f"(N, {width})); valid choices: multilabel")
    n_classes = 2 if kind != "multiclass" else len(names) if names is not None else top + 1
    for part, values in facts.by_part().items():
        bad = values[(values < 0) | (values >= n_classes)]
        if bad.size:
            named = f", dataset.labels has {len(names)} names" if kind == "multiclass" and names else ""
            raise ConfigError(f"{f}: {part}_labels holds label value {int(bad[0])}, out of range for a "
                              f"{kind} dataset (valid: 0..{n_classes - 1}{named})")
    if kind == "multiclass" and n_classes < 2:
        raise ConfigError(f"dataset.label_kind=multiclass: {f} has one class (all labels 0); valid choices: "
                          "binary")
    expected = {"binary": 1, "multilabel": width, "multiclass": top + 1}[kind]
    given = facts.names  # the data's own names (CSV columns, class folders), where they fit the kind
    if names is None and given is not None:
        if kind == "binary" and len(given) == 2:  # two classes as one sigmoid: the second is positive
            names = given[1:]
        elif kind == "multiclass" and len(given) > top:
            names, expected = given, len(given)
        elif kind != "multiclass" and len(given) == expected:
            names = given
    if names is None:
        return LabelInfo(kind, ("1",) if kind == "binary" else tuple(str(i) for i in range(expected)))
    if len(names) != expected:
        what = {"binary": "a binary dataset names its positive class (label 1) only, e.g. [pneumonia]; or "
                          "set dataset.label_kind=multiclass",
                "multilabel": f"{f} has {width} label columns",
                "multiclass": f"{f} has {expected} classes (labels 0..{top})"}[kind]
        raise ConfigError(f"dataset.labels has {len(names)} names ({', '.join(names)}) but {what}")
    return LabelInfo(kind, names)


# ------------------------------------------------------------------------------------------ run identity
def data_fingerprint(dataset_cfg) -> str | None:
    """8 hex naming the data of a config whose files are not the registered dataset at its registered place.

    Why: the run directory is the run's identity (runs/<study>/<condition>/seed<k>; a complete results.json
    there means "done, skip"), and the condition names the dataset only by name. ``dataset=folder`` with
    another root, a registered dataset copied elsewhere, or an edited split file are other data under the
    same name: a second run would skip and report the first one's results. The fingerprint covers what
    makes them differ without decoding anything: the resolved root; the names and sizes of the files
    under its layout folders; the contents of the split scheme's list files there; and the contents of a
    split file (``dataset.split=*.json``); for a classification dataset, its file's path and size when
    ``dataset.file`` is not the registered file (always, for ``dataset=medmnist``). The training config puts
    it into ``condition.extra`` as ``data=<hex>`` (train/resolvers.py), so the run directory, results.json,
    W&B tags and report rows all tell the runs apart.

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
    if spec.task != "segmentation":  # classification: its file; segmentation3d: its folder (data/volume_specs.py)
        parts.update(spec.fingerprint_parts(cfg))
        return _hex(parts)
    root = _user_root(spec, cfg)
    if root is not None:
        parts["root"] = str(root)
        if not spec.generated:
            parts["files"] = _listing(root, sorted({Path(rel).parts[0] for rel in spec.layout}))
        scheme = spec.all_splits.get(cfg["split"])
        lists = (*getattr(scheme, "files", ()), *getattr(scheme, "record_files", ()))
        parts["lists"] = {rel: _digest(root / rel) for rel in lists}
    return _hex(parts)


def _hex(parts: dict) -> str | None:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8] if parts else None


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
