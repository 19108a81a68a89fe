"""`SegDataModule`: registry → files → split → n_train subset → decode cache → augment → loaders.

Why it is built this way:

* The split is computed from the file listing alone (no decoding), so ``dm.split`` and ``save_split``
  work before ``setup`` and the run directory records exactly which ids were used.
* With ``cache=True`` the whole dataset (not just this split) is decoded once per working size, so every
  split, seed and ``n_train`` of a study reuses one cache entry; ``cache=False`` decodes only the ids the
  split needs, in memory.
* How files are decoded (``dataset.mask_foreground``, ``dataset.jpeg_draft``: `cache.DecodeOptions`) is part
  of the cache key, so two policies never share an entry.
* Test batches also carry each mask at its native resolution (``mask_native``) because the papers report
  test metrics at the original resolution; train/val work at the (square) working resolution.
* DRIVE-like datasets with a field-of-view mask add ``fov`` (B, 1, S, S) to every batch, and test batches
  ``fov_native`` (a list, like ``mask_native``); ``dataset.metrics_in_fov`` makes the metrics count in it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from medtransfer.data import cache as cache_mod
from medtransfer.data.augment import build_transform, check_mean_std, parse_augment, reseed
from medtransfer.data.config import dataset_options, is_split_file, validate_dataset_cfg
from medtransfer.data.datasets import get_spec, resolve_root
from medtransfer.data.splits import Split, load_split, make_split
from medtransfer.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class SegDataset(Dataset):
    """Rows of a decoded array set, through one albumentations pipeline."""

    def __init__(self, decoded: cache_mod.Decoded, ids: Sequence[str], transform, native: bool = False):
        self.decoded, self.ids, self.transform, self.native = decoded, list(ids), transform, native
        self.rows = np.asarray([decoded.row[i] for i in self.ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> dict:
        d, r = self.decoded, int(self.rows[k])
        inputs = {
            "image": np.array(d.images[r]),
            "mask": np.array(d.masks[r]),
        }  # copies: memmaps are read-only
        if d.fov is not None:
            inputs["fov"] = np.array(d.fov[r])
        out = self.transform(**inputs)
        item = {"image": out["image"], "mask": out["mask"][None].float(), "id": self.ids[k]}
        if d.fov is not None:
            item["fov"] = out["fov"][None].float()
        if self.native:
            item["mask_native"] = torch.from_numpy(d.native_mask(r))
            if d.fov is not None:
                item["fov_native"] = torch.from_numpy(d.native_fov(r))
        return item


def collate(items: list[dict]) -> dict:
    """Stack the fixed-size tensors; ids and native-resolution masks (sizes differ) stay lists."""
    out = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if key in ("image", "mask", "fov") else vals
    return out


def _worker_init(worker_id: int) -> None:
    """Each worker (and each epoch, unless persistent) gets its own augmentation stream, derived from
    the loader's seeded generator, so runs are reproducible and workers do not repeat each other."""
    info = get_worker_info()
    if info.dataset.transform is not None:  # a classification set without augmentation has none
        reseed(info.dataset.transform, info.seed)


class PartLoaders:
    """train/val/test DataLoaders over ``self.datasets[part]``, shared by every task's DataModule: seeded
    shuffling, worker seeding, and no trailing batch of one (BatchNorm in training mode fails on it). A
    DataModule gives ``collate_fn()``, ``datasets``, ``split``, ``name`` and the loader settings."""

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            raise RuntimeError("call setup() before asking for a dataloader")
        ds = self.datasets[part]
        if len(ds) == 0:
            hint = " (set dataset.val_fraction > 0)" if part == "val" else ""
            raise ConfigError(f"dataset.split={self.split.name!r} of {self.name} has no {part} images{hint}")
        drop_last = shuffle and len(ds) % self.batch_size == 1 and len(ds) > 1
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn(),
            pin_memory=self.pin_memory,
            drop_last=drop_last,
            persistent_workers=self.persistent_workers,
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class SegDataModule(PartLoaders, L.LightningDataModule):
    def __init__(
        self,
        dataset_cfg: Mapping,
        image_size: int,
        augment: str | Mapping,
        batch_size: int,
        num_workers: int,
        seed: int,
        mean: Sequence[float],
        std: Sequence[float],
        cache: bool = True,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        train_crop: int | None = None,
        val_on_test: bool = False,
    ):
        super().__init__()
        validate_dataset_cfg(dataset_cfg)
        self.cfg = dataset_options(dataset_cfg)
        self.spec = get_spec(self.cfg["name"])
        if self.spec.task != "segmentation":
            raise ConfigError(f"dataset={self.cfg['name']} is a {self.spec.task} dataset: it has no masks to "
                              "segment (its DataModule is ClsDataModule)")
        try:
            ok = (
                not isinstance(image_size, bool)
                and int(image_size) == image_size
                and 16 <= image_size <= 4096
            )
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"image_size={image_size!r}: expected an integer in 16..4096")
        if int(batch_size) < 1 or int(num_workers) < 0:
            raise ConfigError(f"batch_size={batch_size} must be >= 1 and num_workers={num_workers} >= 0")
        self.augment_name, self.augment_params = parse_augment(augment)
        self.mean, self.std = check_mean_std(mean, std)
        self.image_size, self.batch_size, self.num_workers = (
            int(image_size),
            int(batch_size),
            int(num_workers),
        )
        self.seed = int(seed)
        if train_crop is not None and not 16 <= int(train_crop) <= self.image_size:
            raise ConfigError(f"train_crop={train_crop!r}: expected null or an integer in 16..{self.image_size}")
        self.train_crop = int(train_crop) if train_crop is not None else None
        # paper 001's (optimistic) protocol: the epoch is selected on the test images themselves
        self.val_on_test = bool(val_on_test)
        self.split_seed = int(self.cfg["split_seed"]) if self.cfg["split_seed"] is not None else self.seed
        self.use_cache, self.pin_memory = bool(cache), bool(pin_memory)
        self.decode = cache_mod.DecodeOptions.from_cfg(self.cfg)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self._samples = None
        self._split: Split | None = None
        self._decoded: cache_mod.Decoded | None = None
        self.datasets: dict[str, SegDataset] = {}

    # ------------------------------------------------------------------------------------ files, split
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def has_fov(self) -> bool:
        return self.spec.has_fov

    def _root(self) -> Path:
        root = resolve_root(self.spec, self.cfg, must_exist=not self.spec.generated)
        if self.spec.generated and not (root / "params.json").is_file():
            from medtransfer.data.synthetic import generate

            generate(root, self.cfg)
        return root

    def samples(self) -> list:
        if self._samples is None:
            root = self._root()
            self._samples = self.spec.list_samples(root, self.cfg)
            self._root_path = root
        return self._samples

    @property
    def split(self) -> Split:
        """Computed from the listing on first access (no decoding)."""
        if self._split is None:
            self._split = self._make_split()
        return self._split

    def _make_split(self) -> Split:
        samples = self.samples()
        split = self.cfg["split"]
        if is_split_file(split):
            s = load_split(Path(split).expanduser())
            if s.dataset and s.dataset != self.name:
                raise ConfigError(f"dataset.split={split}: made for dataset {s.dataset!r}, not {self.name!r}")
            known = {x.id for x in samples}
            missing = [i for part in (s.train, s.val, s.test) for i in part if i not in known]
            if missing:
                raise DataError(
                    f"{split}: {len(missing)} id(s) not in {self._root_path} (first: {missing[0]!r})"
                )
            return s
        return make_split(
            self.name,
            split,
            self.spec.all_splits[split],
            samples,
            self._root_path,
            seed=self.split_seed,
            val_fraction=float(self.cfg["val_fraction"]),
            n_train=self.cfg["n_train"],
            fold=self.cfg["fold"],
            folds=int(self.cfg["folds"]),
            folds_seed=int(self.cfg["folds_seed"]),
            fold_groups=self.spec.fold_by_group,
        )

    def save_split(self, path: str | Path) -> Path:
        return self.split.save(path)

    # ----------------------------------------------------------------------------------- lightning hooks
    def prepare_data(self) -> None:
        """Generate (synthetic) and decode into the cache once; runs on one process per node."""
        if self.use_cache:
            cache_mod.load_or_build(self.name, self.image_size, self.samples(), self.decode)
        else:
            self.samples()

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit", "validate", "test", "predict"):
            raise ConfigError(f"unknown stage {stage!r}; valid choices: fit, predict, test, validate")
        split = self.split
        if self._decoded is None:
            if self.use_cache:
                self._decoded = cache_mod.load_or_build(
                    self.name, self.image_size, self.samples(), self.decode
                )
            else:
                wanted = set(split.train) | set(split.val) | set(split.test)
                self._decoded = cache_mod.decode_in_memory(
                    [s for s in self.samples() if s.id in wanted], self.image_size, self.decode
                )
        fov = self._decoded.fov is not None
        mk = {"mean": self.mean, "std": self.std, "with_fov": fov}
        aug = {"name": self.augment_name, **self.augment_params}
        self.datasets = {
            "train": SegDataset(
                self._decoded, split.train,
                build_transform(aug, train=True, seed=self.seed, crop=self.train_crop, **mk),
            ),
            "val": SegDataset(self._decoded, split.test if self.val_on_test else split.val,
                              build_transform(aug, train=False, **mk)),
            "test": SegDataset(
                self._decoded, split.test, build_transform(aug, train=False, **mk), native=True
            ),
        }

    def collate_fn(self):
        return collate

