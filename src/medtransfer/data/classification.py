"""Image classification datasets and their DataModule: labels checked before any compute.

Why a spec of its own beside the segmentation `DatasetSpec`: a classification dataset is not a folder of
image/mask pairs but labelled images with official parts — one file (a MedMNIST .npz: `ClassificationSpec`
here) or a folder with tables (ChestX-ray14, CheXpert, Shenzhen, an image folder, a labels.csv:
`cls_tables.TableSpec`). Both read to the same rows (`cls_facts.FileFacts`), so one `ClsDataModule` serves
them. What the specs share with segmentation is the registry (`datasets.DATASETS`: one namespace, one list
of valid names) and the split procedure (`splits.make_split`: the same seeded, nested ``n_train`` subsets and
the same split.json), so low-data curves mean the same thing for both tasks.

A MedMNIST file's format is a pair of functions on the spec (``inspect``: shapes and labels only, cheap
enough for validating every job of a sweep; ``read``: the images), so `medmnist.py` holds everything
MedMNIST-specific. What ``dataset.label_kind`` and ``dataset.labels`` mean, and what null infers from the
data, is config (`config.resolve_labels`); uncertain labels and the evaluation crops are `cls_batches`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import albumentations as A
import cv2
import lightning as L
import numpy as np
import torch

from medtransfer import settings
from medtransfer.data.augment import AUGMENTS, check_mean_std, parse_augment, reseed, split_eval_options
from medtransfer.data.cls_batches import (
    ClsDataset,
    EvalView,
    NormaliseCollate,
    check_policy,
    training_targets,
)
from medtransfer.data.cls_facts import FileFacts, Item, Official
from medtransfer.data.config import (
    CLS_DEFAULTS,
    LabelInfo,
    dataset_options,
    is_split_file,
    resolve_labels,
    validate_dataset_cfg,
)
from medtransfer.data.datamodule import PartLoaders
from medtransfer.data.datasets import DATASETS, add_spec, get_spec
from medtransfer.data.splits import GENERIC_SPLITS, Split, load_split, make_split
from medtransfer.errors import ConfigError, DataError
from medtransfer.hashing import sha256_file

PARTS = ("train", "val", "test")
__all__ = ["PARTS", "ClassificationSpec", "ClsDataModule", "FileFacts", "register_classification"]


@dataclass(frozen=True)
class ClassificationSpec:
    """A dataset in one labelled file (MedMNIST .npz). Folder datasets are `cls_tables.TableSpec`; both give
    the DataModule ``facts(cfg)``, ``decode(facts, cfg, size)`` and ``record(facts)``."""

    name: str
    inspect: Callable[[Path], FileFacts]  # rows and labels, no images (validation of every sweep job)
    read: Callable[[Path], dict[str, np.ndarray]]  # part → (N, H, W[, 3]) uint8 images
    file: str | None  # relative to $MEDTRANSFER_DATA_ROOT; None: dataset.file is required
    expected: str  # what the file is, for error messages
    label_kind: str | None = None  # registered facts; the yaml repeats them (tested)
    labels: tuple[str, ...] | None = None
    urls: tuple[str, ...] = ()
    description: str = ""
    default_split: str = "official"
    task: str = "classification"
    fold_by_group: bool = False

    @property
    def all_splits(self) -> dict[str, object]:
        return {**GENERIC_SPLITS, "official": Official()}

    @property
    def defaults(self) -> dict:
        labels = list(self.labels) if self.labels is not None else None
        return {**CLS_DEFAULTS, "label_kind": self.label_kind, "labels": labels}

    def locate(self, cfg: Mapping) -> Path:
        """``dataset.file`` if given, else the registered file; a missing one: a ConfigError saying where."""
        return locate_input(self.name, "file", cfg.get("file"), self.file, self.expected, self.urls,
                            required=f"dataset.file is required for dataset {self.name!r}: {self.expected}, "
                                     f"e.g. dataset.file=${settings.DATA_ROOT}/medmnist/pathmnist_64.npz")
        if self.file is None:
            raise ConfigError(f"dataset.file is required for dataset {self.name!r}: {self.expected}, e.g. "
                              f"dataset.file=${settings.DATA_ROOT}/medmnist/pathmnist_64.npz")
        base = settings.data_root(required=False)
        if base is None:
            raise ConfigError(f"{settings.DATA_ROOT} is not set: set it (e.g. in .env) to the folder holding "
                              f"{self.file} or pass dataset.file=PATH")
        p = base / self.file
        if not p.is_file():
            hint = f" (download: {self.urls[0]})" if self.urls else ""
            raise ConfigError(f"dataset {self.name}: {p} does not exist; place {self.expected} at "
                              f"${settings.DATA_ROOT}/{self.file} ({settings.DATA_ROOT}={base}){hint} or "
                              "pass dataset.file=PATH")
        return p

    def facts(self, cfg: Mapping) -> FileFacts:
        return self.inspect(self.locate(cfg))

    def validate(self, cfg: Mapping) -> None:
        """The file's part of `validate_dataset_cfg`: present, readable, labels as the config says."""
        if cfg.get("root"):
            raise ConfigError(f"dataset.root={cfg['root']!r}: {self.name} is a classification dataset read "
                              "from one file; pass dataset.file=PATH instead")
        check_facts(self.name, cfg, self.facts(cfg))

    def decode(self, facts: FileFacts, cfg: Mapping, size: int) -> np.ndarray:
        """Every image of the file at `size` (bilinear, once), uint8, in row order (parts in PARTS order)."""
        parts = self.read(facts.path)
        rgb = facts.image_shape[2] == 3
        out = np.empty((len(facts.ids), size, size, *((3,) if rgb else ())), np.uint8)
        start = 0
        for p in PARTS:
            a = parts[p]
            if a.shape[1:3] == (size, size):
                out[start:start + len(a)] = a
            else:
                for i, img in enumerate(a):
                    out[start + i] = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
            start += len(a)
        return out

    def record(self, facts: FileFacts) -> dict:
        """Which file a split indexes (its ids are rows of it): recorded in split.json and hashed with it."""
        return {"name": facts.path.name, "sha256": sha256_file(facts.path)}

    def fingerprint_parts(self, cfg: Mapping) -> dict:
        """For `config.data_fingerprint`: the file, unless it is the registered one at its registered
        place."""
        if not cfg.get("file"):
            return {}
        p = Path(str(cfg["file"])).expanduser().resolve()
        base = settings.data_root(required=False)
        if self.file is not None and base is not None and p == (base / self.file).resolve():
            return {}
        return {"file": str(p), "size": p.stat().st_size if p.is_file() else None}


def check_facts(name: str, cfg: Mapping, facts: FileFacts) -> None:
    """Labels as the config says; n_train within the official training part."""
    resolve_labels(cfg, facts)
    n_train, pool = cfg.get("n_train"), facts.count("train")
    official = cfg["split"] == "official" and cfg.get("fold") is None
    if official and n_train is not None and pool and n_train > pool:
        raise ConfigError(f"dataset.n_train={n_train} exceeds the {pool} training images of split "
                          f"'official' of {name} ({facts.path.name}); valid range: 1..{pool} or null")



def locate_input(name: str, key: str, value, registered: str | None, expected: str, urls: Sequence[str], *,
                 required: str) -> Path:
    """Where a classification dataset's input is: ``dataset.<key>`` (file or root) when given, else its
    registered place under $MEDTRANSFER_DATA_ROOT. Every way it can be missing is one ConfigError saying what to
    place where; `required` is the message for a dataset that has no registered place."""
    exists = Path.is_dir if key == "root" else Path.is_file
    if value:
        p = Path(str(value)).expanduser().resolve()
        if not exists(p):
            raise ConfigError(f"dataset.{key}: {p} does not exist (dataset {name}, expected {expected})")
        return p
    if registered is None:
        raise ConfigError(required)
    base = settings.data_root(required=False)
    shown = f"{registered}/" if key == "root" else registered
    if base is None:
        raise ConfigError(f"{settings.DATA_ROOT} is not set: set it (e.g. in .env) to the folder holding "
                          f"{shown} or pass dataset.{key}=PATH")
    p = base / registered
    if not exists(p):
        hint = f" (download: {urls[0]})" if urls else ""
        where = "there" if key == "root" else f"at ${settings.DATA_ROOT}/{registered}"
        raise ConfigError(f"dataset {name}: {p} does not exist; place {expected} {where} "
                          f"({settings.DATA_ROOT}={base}){hint} or pass dataset.{key}=PATH")
    return p


def register_classification(name: str, **facts) -> ClassificationSpec:
    spec = ClassificationSpec(name=name, **facts)
    add_spec(spec)
    return spec


# --------------------------------------------------------------------------------------------- labels
def label_counts(labels: np.ndarray, info: LabelInfo) -> list[int]:
    """Class balance for split.json: images per class (binary: [label 0, label 1]; multiclass: per class),
    or positives per label column (multilabel)."""
    if info.kind == "multilabel":
        return [int(x) for x in labels.sum(axis=0)]
    n = 2 if info.kind == "binary" else len(info.names)
    return [int(x) for x in np.bincount(labels[:, 0], minlength=n)]


def check_augment(augment: str | Mapping, image_size: int) -> tuple[str, dict, dict, int]:
    """(name, training-op parameters, evaluation options, decode size) of a classification augment config,
    checked (one-line ConfigError; cheap, for config time too). Images are decoded at ``test_resize`` when
    set (val/test then crop to image_size, `augment.EVAL_OPTIONS`), else at image_size."""
    augment, options = split_eval_options(augment)
    name, params = parse_augment(augment)
    resize, ten = options["test_resize"], options["ten_crop"]
    if "size" in params:
        raise ConfigError(f"augment.size={params['size']!r}: the crop size of augment={name} is image_size; "
                          "remove augment.size")
    if not isinstance(ten, bool):
        raise ConfigError(f"augment.ten_crop={ten!r}: expected true or false")
    if resize is None:
        if ten:
            raise ConfigError("augment.ten_crop=true needs augment.test_resize (e.g. 256 for 224-px crops): "
                              "the ten crops are cut from the image resized to it")
        return name, params, options, image_size
    crops = "size" in inspect.signature(AUGMENTS[name]).parameters
    if isinstance(resize, bool) or not isinstance(resize, int) or resize < image_size or not crops:
        why = (f"an integer >= image_size={image_size}" if crops else
               f"null: augment={name} does not crop its training images to image_size (augment=cls_benchmark "
               "does)")
        raise ConfigError(f"augment.test_resize={resize!r}: expected {why}")
    if ten and resize == image_size:
        raise ConfigError(f"augment.ten_crop=true with test_resize={resize} = image_size: the ten crops "
                          "would be five copies of the image; use test_resize > image_size or ten_crop=false")
    return name, params, options, resize


class ClsDataModule(PartLoaders, L.LightningDataModule):
    """Classification counterpart of `SegDataModule`: table or file → labels checked → split (split.json)
    → images decoded and resized once at setup → loaders of {"image", "label", "id"} batches.

    Why not the segmentation cache: a MedMNIST file is small and already decoded (resizing it at setup costs
    less than a cache lookup); folder datasets have their own decode-once cache keyed by file identity
    (`cls_tables`: hashing 112k ChestX-ray14 files per setup would cost minutes). `__getitem__` is a row view
    plus the augmentation ops on training rows. Batches: "image" float32 (B, 3, H, W) normalised with
    mean/std — (B, 10, 3, H, W) for ten-crop test batches; "label" float32 (B, L) for binary (L = 1) and
    multilabel (-1: an uncertain entry left out, `cls_batches`), int64 (B,) class indices for multiclass.
    """

    def __init__(self, dataset_cfg: Mapping, image_size: int, augment: str | Mapping, batch_size: int,
                 num_workers: int, seed: int, mean: Sequence[float], std: Sequence[float],
                 pin_memory: bool = False, persistent_workers: bool = False, val_on_test: bool = False):
        super().__init__()
        self.cfg = dataset_options(dataset_cfg)
        self.spec = get_spec(self.cfg["name"])
        if self.spec.task != "classification":
            names = sorted(n for n, s in DATASETS.items() if s.task == "classification")
            raise ConfigError(f"dataset {self.spec.name} is a {self.spec.task} dataset; ClsDataModule takes "
                              f"classification datasets: {', '.join(names)}")
        validate_dataset_cfg(dataset_cfg)
        try:
            ok = (not isinstance(image_size, bool) and int(image_size) == image_size
                  and 16 <= image_size <= 4096)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"image_size={image_size!r}: expected an integer in 16..4096")
        if int(batch_size) < 1 or int(num_workers) < 0:
            raise ConfigError(f"batch_size={batch_size} must be >= 1 and num_workers={num_workers} >= 0")
        self.image_size, self.batch_size = int(image_size), int(batch_size)
        self.augment_name, self.augment_params, self.eval_options, self.decode_size = check_augment(
            augment, self.image_size)
        self.mean, self.std = check_mean_std(mean, std)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.split_seed = int(self.cfg["split_seed"]) if self.cfg["split_seed"] is not None else self.seed
        self.val_on_test, self.pin_memory = bool(val_on_test), bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.facts = self.spec.facts(self.cfg)
        self.file = self.facts.path
        self.labels_info = resolve_labels(self.cfg, self.facts)
        self._row_of = {i: r for r, i in enumerate(self.facts.ids)}
        self._split: Split | None = None
        self._images: np.ndarray | None = None
        self.datasets: dict[str, ClsDataset] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label_kind(self) -> str:
        return self.labels_info.kind

    @property
    def label_names(self) -> list[str]:
        return list(self.labels_info.names)

    @property
    def num_outputs(self) -> int:
        return self.labels_info.num_outputs

    @property
    def native_size(self) -> int | None:
        """The file's image side (MedMNIST: 28, 64, 128 or 224); None for folder datasets (per image)."""
        return self.facts.image_shape[0] if self.facts.image_shape is not None else None

    # ------------------------------------------------------------------------------------------- split
    def _rows(self, ids: list[str]) -> list[int]:
        return [self._row_of[i] for i in ids]

    @property
    def split(self) -> Split:
        """Computed from the labels on first access (no images read)."""
        if self._split is None:
            self._split = self._make_split()
        return self._split

    def _make_split(self) -> Split:
        f = self.facts
        groups = f.groups or (None,) * len(f.ids)
        images = f.images or (None,) * len(f.ids)
        items = [Item(*row) for row in zip(f.ids, f.parts, groups, images, strict=True)]
        split, record = self.cfg["split"], self.spec.record(f)
        if is_split_file(split):
            s = load_split(Path(split).expanduser())
            if s.dataset and s.dataset != self.name:
                raise ConfigError(f"dataset.split={split}: made for dataset {s.dataset!r}, not {self.name!r}")
            made_for = s.source.get("file")  # absent from a hand-written split file
            if made_for and made_for.get("sha256") != record["sha256"]:
                raise ConfigError(f"dataset.split={split}: made for file {made_for.get('name')!r} (another "
                                  f"sha256), not {self.file}")
            missing = [i for part in (s.train, s.val, s.test) for i in part if i not in self._row_of]
            if missing:
                raise DataError(f"{split}: {len(missing)} id(s) not in {self.file} (first: {missing[0]!r})")
            return s
        scheme = self.spec.all_splits[split]
        if isinstance(scheme, Official):
            scheme = replace(scheme, val_fraction=float(self.cfg["val_fraction"]))
        root = self.file if self.file.is_dir() else self.file.parent
        s = make_split(self.name, split, scheme, items, root, seed=self.split_seed,
                       val_fraction=float(self.cfg["val_fraction"]), n_train=self.cfg["n_train"],
                       fold=self.cfg["fold"], folds=int(self.cfg["folds"]),
                       folds_seed=int(self.cfg["folds_seed"]), fold_groups=f.groups is not None)
        if (isinstance(scheme, Official) and self.cfg["fold"] is None and scheme.val_fraction > 0
                and f.groups is not None and "val" not in f.parts and "train" in f.parts):
            s.source.update(val_carved_from_train=True, val_fraction=scheme.val_fraction,
                            val_carved_by="patient")
        s.source["file"] = record
        s.source["label_counts"] = {p: label_counts(f.labels[self._rows(getattr(s, p))], self.labels_info)
                                    for p in ("train", "val", "test")}
        return s

    def save_split(self, path: str | Path) -> Path:
        return self.split.save(path)

    # ----------------------------------------------------------------------------------- lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit", "validate", "test", "predict"):
            raise ConfigError(f"unknown stage {stage!r}; valid choices: fit, predict, test, validate")
        split = self.split
        if self._images is None:
            self._images = self.spec.decode(self.facts, self.cfg, self.decode_size)
            policy = check_policy(self.cfg.get("uncertain") or "ignore")
            train_rows = np.asarray(self._rows(split.train), np.int64)
            targets = training_targets(self.facts.labels, self.facts.uncertain, train_rows,
                                       list(self.facts.ids), policy)
            multiclass = self.label_kind == "multiclass"
            self._targets = torch.from_numpy(self.facts.labels[:, 0] if multiclass else targets)
            self._targets = self._targets.long() if multiclass else self._targets
        fn = AUGMENTS[self.augment_name]
        sized = {"size": self.image_size} if "size" in inspect.signature(fn).parameters else {}
        ops = fn(**self.augment_params, **sized)
        train_t = A.Compose(ops) if ops else None
        if train_t is not None:
            reseed(train_t, self.seed)
        crop = self.decode_size != self.image_size
        val_view = EvalView("centre", self.image_size) if crop else None
        test_view = EvalView("ten", self.image_size) if self.eval_options["ten_crop"] else val_view
        val_ids = split.test if self.val_on_test else split.val
        self.datasets = {part: ClsDataset(self._images, self._targets, self._rows(ids), ids, t, view)
                         for part, ids, t, view in (("train", split.train, train_t, None),
                                                    ("val", val_ids, None, val_view),
                                                    ("test", split.test, None, test_view))}

    def collate_fn(self):
        return NormaliseCollate(self.mean, self.std)
