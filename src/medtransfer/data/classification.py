"""Image classification datasets: one labelled file per dataset, its labels checked before any compute.

Why a spec of its own beside the segmentation `DatasetSpec`: a classification dataset is not a folder of
image/mask pairs but one file holding the images, the labels and the official train/val/test parts (a
MedMNIST .npz). What the specs share is the registry (`datasets.DATASETS`: one namespace, one list of
valid names) and the split procedure (`splits.make_split`: the same seeded, nested ``n_train`` subsets and
the same split.json), so low-data curves mean the same thing for both tasks.

The file format is a pair of functions on the spec (``inspect``: shapes and labels only, cheap enough for
validating every job of a sweep; ``read``: the images), so `medmnist.py` holds everything MedMNIST-specific.
What ``dataset.label_kind`` and ``dataset.labels`` mean, and what null infers from the file, is config
(`config.resolve_labels`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from medtransfer import settings
from medtransfer.data.augment import AUGMENTS, check_mean_std, parse_augment, reseed
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
from medtransfer.data.splits import GENERIC_SPLITS, FixedGroups, Split, load_split, make_split, sha256_file
from medtransfer.errors import ConfigError, DataError

PARTS = ("train", "val", "test")

@dataclass(frozen=True)
class FileFacts:
    """What validation needs from a file, read without decoding its images."""

    path: Path
    image_shape: tuple[int, ...]  # (H, W, C) of every image, C = 1 (grey) or 3 (RGB)
    labels: Mapping[str, np.ndarray]  # part → (N, L) int64

    @property
    def width(self) -> int:
        return int(next(iter(self.labels.values())).shape[1])

    def count(self, part: str) -> int:
        return len(self.labels[part])


@dataclass(frozen=True)
class Item:
    """What the split schemes read of a sample: its id and its official part."""

    id: str
    group: str


@dataclass(frozen=True)
class ClassificationSpec:
    name: str
    inspect: Callable[[Path], FileFacts]  # shapes and labels, no images (validation of every sweep job)
    read: Callable[[Path], dict[str, np.ndarray]]  # part → (N, H, W[, 3]) uint8 images
    file: str | None  # relative to $MEDTRANSFER_DATA_ROOT; None: dataset.file is required
    expected: str  # what the file is, for error messages
    label_kind: str | None = None  # registered facts; the yaml repeats them (tested)
    labels: tuple[str, ...] | None = None
    urls: tuple[str, ...] = ()
    description: str = ""
    default_split: str = "official"
    task: str = "classification"

    @property
    def all_splits(self) -> dict[str, object]:
        return {**GENERIC_SPLITS, "official": FixedGroups(tuple((p, p) for p in PARTS))}

    @property
    def defaults(self) -> dict:
        labels = list(self.labels) if self.labels is not None else None
        return {**CLS_DEFAULTS, "label_kind": self.label_kind, "labels": labels}

    def locate(self, cfg: Mapping) -> Path:
        """``dataset.file`` if given, else the registered file; a missing one: a ConfigError saying where."""
        if cfg.get("file"):
            p = Path(str(cfg["file"])).expanduser().resolve()
            if not p.is_file():
                raise ConfigError(f"dataset.file: {p} does not exist (dataset {self.name}, expected "
                                  f"{self.expected})")
            return p
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

    def validate(self, cfg: Mapping) -> None:
        """The file's part of `validate_dataset_cfg`: present, readable, labels as the config says."""
        if cfg.get("root"):
            raise ConfigError(f"dataset.root={cfg['root']!r}: {self.name} is a classification dataset read "
                              "from one file; pass dataset.file=PATH instead")
        facts = self.inspect(self.locate(cfg))
        resolve_labels(cfg, facts)
        n_train, pool = cfg.get("n_train"), facts.count("train")
        if cfg["split"] == "official" and cfg.get("fold") is None and n_train is not None and n_train > pool:
            raise ConfigError(f"dataset.n_train={n_train} exceeds the {pool} training images of split "
                              f"'official' of {self.name} ({facts.path.name}); valid range: 1..{pool} or "
                              "null")

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


def file_record(path: Path) -> dict:
    """Which file a split indexes (its ids are rows of it): recorded in split.json and hashed with it."""
    return {"name": path.name, "sha256": sha256_file(path)}


# ----------------------------------------------------------------------------------------- datamodule
class ClsDataset(Dataset):
    """Rows of the in-memory uint8 images; the training part goes through the augmentation ops, image only."""

    def __init__(self, images: np.ndarray, targets: torch.Tensor, rows: list[int], ids: list[str], transform):
        self.images, self.targets, self.transform = images, targets, transform
        self.rows, self.ids = np.asarray(rows, dtype=np.int64), list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> dict:
        r = int(self.rows[k])
        img = self.images[r]
        if self.transform is not None:
            if img.ndim == 2:  # colour ops need three channels (grey stays grey: they are equal)
                img = np.repeat(img[:, :, None], 3, axis=2)
            img = self.transform(image=img)["image"]
        return {"image": img, "label": self.targets[r], "id": self.ids[k]}


class NormaliseCollate:
    """Stacks a batch and normalises it in one tensor op, not per item: uint8 (H, W) or (H, W, 3) arrays →
    float32 (B, 3, H, W) with (x / 255 - mean) / std; grey broadcasts to three channels (the encoders are
    RGB-pretrained); labels stacked; ids a list. The images are stacked by numpy: torch.stack's parallel
    copy stalled for up to a second per batch on a busy 2-core machine, numpy's takes milliseconds."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.scale = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.shift = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0

    def __call__(self, items: list[dict]) -> dict:
        x = torch.from_numpy(np.stack([it["image"] for it in items]))
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        image = torch.empty((x.shape[0], 3, *x.shape[2:]), dtype=torch.float32)
        image.copy_(x).sub_(self.shift).div_(self.scale)  # copy_ broadcasts grey; in place: 2.5x faster
        labels = torch.stack([it["label"] for it in items])
        return {"image": image, "label": labels, "id": [it["id"] for it in items]}


class ClsDataModule(PartLoaders, L.LightningDataModule):
    """Classification counterpart of `SegDataModule`: file → labels checked → split (split.json) → images
    decoded and resized once at setup → loaders of {"image", "label", "id"} batches.

    Why in memory and not the segmentation cache: a MedMNIST file is small and already decoded (uint8 arrays);
    resizing it once at setup costs less than a cache lookup, and `__getitem__` is a row view (plus the
    augmentation ops on training rows). Batches: "image" float32 (B, 3, H, W) normalised with mean/std;
    "label" float32 (B, L) for binary (L = 1) and multilabel, int64 (B,) class indices for multiclass.
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
        self.augment_name, self.augment_params = parse_augment(augment)
        self.mean, self.std = check_mean_std(mean, std)
        self.image_size, self.batch_size = int(image_size), int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.split_seed = int(self.cfg["split_seed"]) if self.cfg["split_seed"] is not None else self.seed
        self.val_on_test, self.pin_memory = bool(val_on_test), bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.file = self.spec.locate(self.cfg)
        self.facts = self.spec.inspect(self.file)
        self.labels_info = resolve_labels(self.cfg, self.facts)
        counts = [self.facts.count(p) for p in PARTS]
        self._offset = dict(zip(PARTS, np.cumsum([0, *counts[:-1]]).tolist(), strict=True))
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
    def native_size(self) -> int:
        """The file's image side (MedMNIST: 28, 64, 128 or 224); resized from it to image_size at setup."""
        return self.facts.image_shape[0]

    # ------------------------------------------------------------------------------------------- split
    def _rows(self, ids: list[str]) -> list[int]:
        return [self._offset[part] + int(i) for part, i in (x.split("/") for x in ids)]

    @property
    def split(self) -> Split:
        """Computed from the labels on first access (no images read)."""
        if self._split is None:
            self._split = self._make_split()
        return self._split

    def _make_split(self) -> Split:
        items = [Item(f"{p}/{i}", p) for p in PARTS for i in range(self.facts.count(p))]
        split = self.cfg["split"]
        if is_split_file(split):
            s = load_split(Path(split).expanduser())
            if s.dataset and s.dataset != self.name:
                raise ConfigError(f"dataset.split={split}: made for dataset {s.dataset!r}, not {self.name!r}")
            made_for = s.source.get("file")  # absent from a hand-written split file
            if made_for and made_for.get("sha256") != file_record(self.file)["sha256"]:
                raise ConfigError(f"dataset.split={split}: made for file {made_for.get('name')!r} (another "
                                  f"sha256), not {self.file}")
            known = {it.id for it in items}
            missing = [i for part in (s.train, s.val, s.test) for i in part if i not in known]
            if missing:
                raise DataError(f"{split}: {len(missing)} id(s) not in {self.file} (first: {missing[0]!r})")
            return s
        s = make_split(self.name, split, self.spec.all_splits[split], items, self.file.parent,
                       seed=self.split_seed, val_fraction=float(self.cfg["val_fraction"]),
                       n_train=self.cfg["n_train"], fold=self.cfg["fold"], folds=int(self.cfg["folds"]),
                       folds_seed=int(self.cfg["folds_seed"]))
        labels = np.concatenate([self.facts.labels[p] for p in PARTS])
        s.source["file"] = file_record(self.file)
        s.source["label_counts"] = {part: label_counts(labels[self._rows(getattr(s, part))], self.labels_info)
                                    for part in ("train", "val", "test")}
        return s

    def save_split(self, path: str | Path) -> Path:
        return self.split.save(path)

    # ----------------------------------------------------------------------------------- lightning hooks
    def _decode(self) -> np.ndarray:
        """Every image of the file at image_size (bilinear, once), uint8, one array in PARTS order."""
        parts = self.spec.read(self.file)
        s, rgb = self.image_size, self.facts.image_shape[2] == 3
        out = np.empty((sum(self.facts.count(p) for p in PARTS), s, s, *((3,) if rgb else ())), np.uint8)
        for p in PARTS:
            a, start = parts[p], self._offset[p]
            if a.shape[1:3] == (s, s):
                out[start:start + len(a)] = a
            else:
                for i, img in enumerate(a):
                    out[start + i] = cv2.resize(img, (s, s), interpolation=cv2.INTER_LINEAR)
        return out

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit", "validate", "test", "predict"):
            raise ConfigError(f"unknown stage {stage!r}; valid choices: fit, predict, test, validate")
        split = self.split
        if self._images is None:
            self._images = self._decode()
            labels = torch.from_numpy(np.concatenate([self.facts.labels[p] for p in PARTS]))
            self._targets = labels[:, 0].long() if self.label_kind == "multiclass" else labels.float()
        ops = AUGMENTS[self.augment_name](**self.augment_params)
        train_t = A.Compose(ops) if ops else None
        if train_t is not None:
            reseed(train_t, self.seed)
        val_ids = split.test if self.val_on_test else split.val
        self.datasets = {part: ClsDataset(self._images, self._targets, self._rows(ids), ids, t)
                         for part, ids, t in (("train", split.train, train_t), ("val", val_ids, None),
                                              ("test", split.test, None))}

    def collate_fn(self):
        return NormaliseCollate(self.mean, self.std)

