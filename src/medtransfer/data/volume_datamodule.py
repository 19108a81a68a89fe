"""`VolumeDataModule`: a 3D dataset folder → split → decode-once cache → random patches / whole volumes.

Why it is built this way:

* The dataset config is a plain mapping like the 2D ones (``name, root, layout, labels, preprocessing,
  split, split_seed, val_fraction, n_train, fold, folds, folds_seed, splits_final``), checked by
  `validate_volume_cfg` from listings and NIfTI headers alone — cheap enough for every job of a sweep.
* Splits are `splits.make_split`'s (the same seeded, nested ``n_train`` subsets and split.json as 2D);
  paper 003's ``random_70_30`` holds out 30 % for test and carves val from the 70 %. k-fold CV uses
  nnU-Net's ``splits_final.json`` (a list of {"train", "val"}): read when ``splits_final`` names an existing
  file (its folds must cover the train+val part exactly), else computed with nnU-Net's KFold semantics and
  written there, so nnU-Net and this project can train on the same folds.
* Training draws random patches (nnU-Net style, not whole volumes): with probability ``fg_oversample``
  (nnU-Net: 1/3) the patch is centred on a foreground voxel (MONAI `RandCropByPosNegLabeld`), otherwise it
  is uniform (`RandSpatialCropd`); volumes smaller than the patch are zero-padded first. One epoch is
  ``patches_per_epoch`` patches (default: one per training case). The ``paper003`` augmentation adds its
  flips, rotations by multiples of 90° (only in planes where the patch is square, so shapes stay fixed) and
  Gaussian noise — MONAI transforms, seeded from the run seed (in-process loading) or per worker and
  epoch from the loader's seeded generator (num_workers > 0).
* Validation and test yield whole preprocessed volumes (batch size 1, sizes differ) with each case's
  geometry record (``meta``: original shape/spacing/affine and the preprocessed affine), so predictions
  can be put back on the original grid (`preprocess3d.to_original`) and scored in millimetres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from medtransfer import settings
from medtransfer.data import preprocess3d as prep3d
from medtransfer.data.config import is_split_file, to_plain
from medtransfer.data.splits import GENERIC_SPLITS, Split, kfold, load_split, make_split, sorted_ids
from medtransfer.data.volumes import Header, VolumeSource, inspect_source, list_source
from medtransfer.errors import ConfigError, DataError, choices_msg
from medtransfer.files import write_json
from medtransfer.hashing import sha256_file

VOLUME_DEFAULTS = {
    "name": None,
    "root": None,  # absolute, or relative to $MEDTRANSFER_DATA_ROOT
    "layout": "msd",  # msd | nnunet | nifti (volumes.LAYOUTS)
    "labels": None,  # nifti layout: one name per label value 0..K-1 (the others read dataset.json)
    "preprocessing": {},  # preprocess3d.Preprocessing
    "split": "random_70_30",
    "split_seed": None,  # null → the run seed
    "val_fraction": 0.1,
    "n_train": None,
    "fold": None,
    "folds": 5,
    "folds_seed": 12345,
    "splits_final": None,  # path of nnU-Net's splits_final.json: read if present, written if not
}
AUGMENTS_3D = ("none", "paper003")


def volume_options(dataset_cfg) -> dict:
    cfg = {**VOLUME_DEFAULTS, **to_plain(dataset_cfg)}
    unknown = sorted(set(cfg) - set(VOLUME_DEFAULTS) - {"task"})
    if unknown:
        raise ConfigError(f"dataset.{unknown[0]}: unknown option for a 3D dataset; valid choices: "
                          f"{', '.join(sorted(VOLUME_DEFAULTS))}")
    return cfg


def resolve_root(cfg: Mapping) -> Path:
    if not cfg.get("root"):
        raise ConfigError(f"dataset.root is required for 3D dataset {cfg.get('name')!r} (a {cfg['layout']} "
                          "folder)")
    p = Path(str(cfg["root"])).expanduser()
    base = settings.data_root(required=False)
    if not p.is_absolute() and not p.exists() and base is not None:
        p = base / p
    return p.resolve()


def _check_numbers(cfg: Mapping) -> None:
    for key, lo in (("n_train", 1), ("folds", 2), ("folds_seed", 0), ("split_seed", 0), ("fold", 0)):
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise ConfigError(f"dataset.{key}={v!r}: expected null or an integer >= {lo}")
    vf = cfg["val_fraction"]
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0.0 <= vf < 1.0:
        raise ConfigError(f"dataset.val_fraction={vf!r}: expected a number in [0, 1)")
    split = cfg["split"]
    if is_split_file(split):
        if not Path(split).expanduser().is_file():
            raise ConfigError(f"dataset.split: split file {split} does not exist")
    elif split not in GENERIC_SPLITS:
        raise ConfigError(choices_msg("dataset.split for a 3D dataset", split, GENERIC_SPLITS))


def validate_volume_cfg(dataset_cfg, seed: int = 0) -> tuple[dict, VolumeSource, dict[str, Header]]:
    """Options, layout, every case's headers (no voxel decoded) and the split (``n_train``, ``fold``, a
    splits_final.json — read, never written here): one-line ConfigError/DataError, cheap enough for every
    job of a sweep (260 Hippocampus cases: ~0.2 s)."""
    cfg = volume_options(dataset_cfg)
    _check_numbers(cfg)
    prep3d.Preprocessing.from_cfg(cfg["preprocessing"])
    source = list_source(resolve_root(cfg), cfg["layout"], cfg["labels"])
    headers = inspect_source(source)
    split_seed = cfg["split_seed"] if cfg["split_seed"] is not None else seed
    volume_split(cfg, source, int(split_seed), write_folds=False)
    return cfg, source, headers


# ----------------------------------------------------------------------------------------------- folds
def read_splits_final(path: Path) -> list[dict[str, list[str]]]:
    """nnU-Net's splits_final.json: a list of {"train": [...], "val": [...]} (DataError naming the file)."""
    import json

    try:
        folds = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read splits_final.json ({type(e).__name__}: {e})") from e
    if (not isinstance(folds, list) or not folds
            or not all(isinstance(f, dict) and set(f) == {"train", "val"} for f in folds)):
        raise DataError(f"{path}: expected a non-empty list of {{\"train\": [...], \"val\": [...]}} "
                        "(nnU-Net's splits_final.json)")
    return [{"train": [str(i) for i in f["train"]], "val": [str(i) for i in f["val"]]} for f in folds]


def write_splits_final(path: Path, folds: Sequence[Mapping]) -> Path:
    return write_json(path, [{"train": list(f["train"]), "val": list(f["val"])} for f in folds])


@dataclass(frozen=True)
class PresetFolds:
    """A base scheme whose train+val part is replaced by one fold of given cross-validation folds."""

    base: object
    folds: tuple
    fold: int
    where: str
    files: tuple[str, ...] = ()

    def parts(self, samples, root: Path, seed: int) -> dict[str, list[str]]:
        parts = self.base.parts(samples, root, seed)
        pool = set(parts.get("train", [])) | set(parts.get("val", []))
        for k, f in enumerate(self.folds):
            if set(f["train"]) | set(f["val"]) != pool or set(f["train"]) & set(f["val"]):
                raise DataError(f"{self.where}: fold {k} does not split the {len(pool)} train+val cases of "
                                f"this split exactly (train {len(f['train'])}, val {len(f['val'])})")
        return {"train": list(self.folds[self.fold]["train"]), "val": list(self.folds[self.fold]["val"]),
                "test": parts.get("test", [])}


def volume_split(cfg: Mapping, source: VolumeSource, seed: int, write_folds: bool = True) -> Split:
    """The split of a 3D dataset: a split.json, or a named scheme (+ k-fold via splits_final.json, written
    when missing and `write_folds`)."""
    name, split = cfg["name"] or source.root.name, cfg["split"]
    if is_split_file(split):
        s = load_split(Path(split).expanduser())
        known = set(source.ids)
        missing = [i for part in (s.train, s.val, s.test) for i in part if i not in known]
        if missing:
            raise DataError(f"{split}: {len(missing)} id(s) not in {source.root} (first: {missing[0]!r})")
        return s
    base, fold = GENERIC_SPLITS[split], cfg["fold"]
    common = {"seed": seed, "val_fraction": float(cfg["val_fraction"]), "n_train": cfg["n_train"]}
    if fold is None:
        return make_split(name, split, base, list(source.cases), source.root, **common)
    parts = base.parts(list(source.cases), source.root, seed)
    pool = sorted_ids([*parts.get("train", []), *parts.get("val", [])])
    path = Path(cfg["splits_final"]).expanduser() if cfg["splits_final"] else None
    if path is not None and path.is_file():
        folds = read_splits_final(path)
        if len(folds) != cfg["folds"]:
            raise ConfigError(f"dataset.folds={cfg['folds']}: {path} holds {len(folds)} folds; set "
                              f"dataset.folds={len(folds)}")
    else:
        folds = kfold(pool, int(cfg["folds"]), int(cfg["folds_seed"]))
        if path is not None and write_folds:
            write_splits_final(path, folds)
    if not 0 <= fold < len(folds):
        raise ConfigError(f"dataset.fold={fold}: expected 0..{len(folds) - 1} or null")
    scheme = PresetFolds(base, tuple(folds), fold, str(path or "kfold"))
    s = make_split(name, split, scheme, list(source.cases), source.root, **common)
    s.source.update(fold=fold, folds=len(folds), folds_seed=int(cfg["folds_seed"]), all_folds=folds,
                    splits_final={"path": str(path), "sha256": sha256_file(path)}
                    if path is not None and path.is_file() else None)
    return s


# ---------------------------------------------------------------------------------------------- loaders
def patch_transform(patch_size: Sequence[int], fg_oversample: float, augment: str, noise_std: float = 0.1,
                    noise_prob: float = 0.15):
    """MONAI Compose: pad to the patch → foreground-or-uniform crop → the augmentation preset."""
    from monai.transforms import (
        Compose,
        OneOf,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandGaussianNoised,
        RandRotate90d,
        RandSpatialCropd,
        SpatialPadd,
    )

    keys, size = ("image", "label"), tuple(int(s) for s in patch_size)
    fg = RandCropByPosNegLabeld(keys, "label", size, pos=1.0, neg=0.0, num_samples=1)
    uniform = RandSpatialCropd(keys, size, random_size=False)
    crops = [(t, w) for t, w in ((fg, fg_oversample), (uniform, 1.0 - fg_oversample)) if w > 0]
    ops = [SpatialPadd(keys, size), OneOf([t for t, _ in crops], weights=[w for _, w in crops])]
    if augment == "paper003":
        ops += [RandFlipd(keys, prob=0.5, spatial_axis=a) for a in range(3)]
        ops += [RandRotate90d(keys, prob=0.5, max_k=3, spatial_axes=(a, b))
                for a, b in ((0, 1), (0, 2), (1, 2)) if size[a] == size[b]]
        ops.append(RandGaussianNoised("image", prob=noise_prob, std=noise_std, sample_std=True))
    return Compose(ops)


def _plain(x) -> torch.Tensor:
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


class PatchDataset(Dataset):
    """``length`` random patches per epoch; item k comes from case k mod N (each case once per N items)."""

    def __init__(self, entries: Sequence[prep3d.CaseEntry], length: int, transform):
        self.entries, self.length, self.transform = list(entries), int(length), transform

    def __len__(self) -> int:
        return self.length

    def reseed(self, seed: int) -> None:
        self.transform.set_random_state(seed=seed % (2**32))

    def __getitem__(self, k: int) -> dict:
        e = self.entries[k % len(self.entries)]
        out = self.transform({"image": torch.from_numpy(np.array(e.image)),
                              "label": torch.from_numpy(np.array(e.label, dtype=np.int64))})
        out = out[0] if isinstance(out, list) else out
        return {"image": _plain(out["image"]).float(), "label": _plain(out["label"]).long(), "id": e.id}


class VolumeDataset(Dataset):
    """Whole preprocessed volumes with their geometry record (validation, test)."""

    def __init__(self, entries: Sequence[prep3d.CaseEntry]):
        self.entries = list(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, k: int) -> dict:
        e = self.entries[k]
        return {"image": torch.from_numpy(np.array(e.image, dtype=np.float32)),
                "label": torch.from_numpy(np.array(e.label, dtype=np.int64)), "id": e.id, "meta": e.meta}


def collate_volumes(items: list[dict]) -> dict:
    """Stack image (B, C, X, Y, Z) and label (B, 1, X, Y, Z); ids and geometry records stay lists."""
    return {k: torch.stack([it[k] for it in items]) if k in ("image", "label") else [it[k] for it in items]
            for k in items[0]}


def _worker_init(worker_id: int) -> None:
    info = get_worker_info()
    if isinstance(info.dataset, PatchDataset):
        info.dataset.reseed(info.seed)


class VolumeDataModule(L.LightningDataModule):
    """Batches: train {"image" (B, C, *patch) float32, "label" (B, 1, *patch) int64, "id"}; val/test the same
    keys for whole volumes (B = 1) plus "meta" (each case's geometry record, `preprocess3d.CaseEntry`)."""

    def __init__(self, dataset_cfg: Mapping, patch_size: Sequence[int], batch_size: int, num_workers: int,
                 seed: int, augment: str = "paper003", fg_oversample: float = 1 / 3,
                 patches_per_epoch: int | None = None, pin_memory: bool = False):
        super().__init__()
        if (not isinstance(patch_size, (list, tuple)) or len(patch_size) != 3
                or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 4 for p in patch_size)):
            raise ConfigError(f"patch_size={patch_size!r}: expected 3 integers >= 4 (paper 003: "
                              "[96, 96, 96])")
        if augment not in AUGMENTS_3D:
            raise ConfigError(choices_msg("augment for 3D volumes", augment, AUGMENTS_3D))
        if isinstance(fg_oversample, bool) or not 0.0 <= float(fg_oversample) <= 1.0:
            raise ConfigError(f"fg_oversample={fg_oversample!r}: expected a fraction in [0, 1] "
                              "(nnU-Net: 0.33)")
        if int(batch_size) < 1 or int(num_workers) < 0:
            raise ConfigError(f"batch_size={batch_size} must be >= 1 and num_workers={num_workers} >= 0")
        if patches_per_epoch is not None and int(patches_per_epoch) < 1:
            raise ConfigError(f"patches_per_epoch={patches_per_epoch!r}: expected null or an integer >= 1")
        self.cfg, self.source, self.headers = validate_volume_cfg(dataset_cfg, int(seed))
        self.prep = prep3d.Preprocessing.from_cfg(self.cfg["preprocessing"])
        self.patch_size, self.augment = tuple(patch_size), augment
        self.fg_oversample, self.patches_per_epoch = float(fg_oversample), patches_per_epoch
        self.batch_size, self.num_workers, self.seed = int(batch_size), int(num_workers), int(seed)
        self.pin_memory = bool(pin_memory)
        self.split_seed = int(self.cfg["split_seed"]) if self.cfg["split_seed"] is not None else self.seed
        self.split = volume_split(self.cfg, self.source, self.split_seed)
        self.resolved: prep3d.Resolved | None = None
        self.entries: dict[str, prep3d.CaseEntry] = {}
        self.datasets: dict[str, Dataset] = {}

    @property
    def name(self) -> str:
        return self.cfg["name"] or self.source.root.name

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def in_channels(self) -> int:
        return len(self.source.channels)

    def save_split(self, path: str | Path) -> Path:
        return self.split.save(path)

    def prepare_data(self) -> None:
        """Resolve the preprocessing and decode every case of the split into the cache (once)."""
        self.resolved = prep3d.resolve(self.prep, self.source, self.headers, self.split.train, self.name)
        todo = [self.source.case(i) for i in (*self.split.train, *self.split.val, *self.split.test)
                if i not in self.entries]
        self.entries.update(prep3d.load_or_build_all(todo, self.source, self.resolved, self.name))

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit", "validate", "test", "predict"):
            raise ConfigError(f"unknown stage {stage!r}; valid choices: fit, predict, test, validate")
        wanted = (*self.split.train, *self.split.val, *self.split.test)
        if self.resolved is None or any(i not in self.entries for i in wanted):
            self.prepare_data()  # a process that did not run prepare_data (DDP ranks > 0): reads the cache
        train = [self.entries[i] for i in self.split.train]
        transform = patch_transform(self.patch_size, self.fg_oversample, self.augment)
        transform.set_random_state(seed=self.seed)
        length = (self.patches_per_epoch or len(train)) if train else 0
        self.datasets = {"train": PatchDataset(train, length, transform),
                         "val": VolumeDataset([self.entries[i] for i in self.split.val]),
                         "test": VolumeDataset([self.entries[i] for i in self.split.test])}

    def _loader(self, part: str, shuffle: bool, batch_size: int) -> DataLoader:
        if not self.datasets:
            raise RuntimeError("call setup() before asking for a dataloader")
        if len(self.datasets[part]) == 0:
            raise ConfigError(f"dataset.split={self.split.name!r} of {self.name} has no {part} cases")
        n = len(self.datasets[part])
        drop_last = shuffle and n % batch_size == 1 and n > 1  # BatchNorm in training fails on a batch of 1
        return DataLoader(self.datasets[part], batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=self.num_workers, collate_fn=collate_volumes,
                          pin_memory=self.pin_memory,
                          worker_init_fn=_worker_init if self.num_workers > 0 else None,
                          generator=torch.Generator().manual_seed(self.seed) if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, 1)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, 1)
