"""The dataset registry: each dataset's facts as data, plus one small function that lists its files.

Why a registry (like timm's model registry): configs name datasets by key, validation can list the valid
keys and each dataset's valid splits without touching a single image, and a new dataset is one decorated
function. Listing is cheap (directory scans and text files, no decoding); decoding happens once in the
cache.

Every listing returns `Sample`s sorted by id and refuses half pairs: an image without its mask (or the
reverse) is a `DataError` naming the file, found before any compute.

Classification datasets (`classification.ClassificationSpec`, one labelled file such as a MedMNIST .npz)
share this registry, so a name is unique across tasks and every "unknown dataset" error lists them all;
each spec says its ``task`` ("segmentation" here), which is how validation and the training code tell
them apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medtransfer import settings
from medtransfer.data.readers import IMAGE_EXTS
from medtransfer.data.splits import (
    GENERIC_SPLITS,
    FixedGroups,
    GroupSplit,
    ListSplit,
    natural_key,
    read_sequences_csv,
)
from medtransfer.errors import ConfigError, DataError, choices_msg

if TYPE_CHECKING:
    from medtransfer.data.classification import ClassificationSpec


@dataclass(frozen=True)
class Sample:
    id: str
    image: Path
    mask: Path
    group: str | None = None  # video sequence (CVC) or official part (DRIVE): used by group-aware splits
    fov: Path | None = None  # field-of-view mask (DRIVE); metrics may restrict themselves to it


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    list_samples: Callable[[Path, Mapping], list[Sample]]
    folder: str | None  # sub-folder of MEDTRANSFER_DATA_ROOT; None: `root` is required or generated
    layout: tuple[str, ...]  # required sub-folders (checked by validate, no listing)
    image_pattern: str
    mask_pattern: str
    splits: Mapping[str, object] = field(default_factory=dict)  # named, dataset-specific schemes
    default_split: str = "random_80_10_10"
    fov_pattern: str | None = None
    urls: tuple[str, ...] = ()
    extra_keys: tuple[str, ...] = ()  # dataset-specific cfg keys (documentation and validation)
    generated: bool = False  # synthetic: built into the cache dir, never read from the data root
    # sample groups are video sequences (near-duplicate frames): k-fold CV keeps each group in one fold
    fold_by_group: bool = False
    description: str = ""
    task: str = "segmentation"

    @property
    def all_splits(self) -> dict[str, object]:
        return {**GENERIC_SPLITS, **self.splits}

    @property
    def has_fov(self) -> bool:
        return self.fov_pattern is not None


DATASETS: dict[str, DatasetSpec | ClassificationSpec] = {}


def add_spec(spec: DatasetSpec | ClassificationSpec) -> None:
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} registered twice")
    DATASETS[spec.name] = spec


def register_dataset(name: str, **facts):
    """Decorator: ``@register_dataset("x", folder=..., ...)`` over ``list_samples(root, cfg)``."""

    def deco(fn):
        add_spec(DatasetSpec(name=name, list_samples=fn, **facts))
        return fn

    return deco


def get_spec(name: str) -> DatasetSpec | ClassificationSpec:
    if name not in DATASETS:
        raise ConfigError(choices_msg("dataset.name", name, DATASETS))
    return DATASETS[name]


# ------------------------------------------------------------------------------------------------ roots
def synthetic_params(cfg: Mapping) -> dict:
    return {
        "n_images": int(cfg.get("n_images") or 64),
        "native_size": int(cfg.get("native_size") or 128),
        "data_seed": int(cfg.get("data_seed") or 0),
    }


def synthetic_root(cfg: Mapping) -> Path:
    from medtransfer.data.synthetic import GENERATOR_VERSION

    params = {**synthetic_params(cfg), "version": GENERATOR_VERSION}
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return settings.cache_dir() / "synthetic" / h


def resolve_root(spec: DatasetSpec, cfg: Mapping, must_exist: bool = True) -> Path:
    """``root`` if given, else the data root's sub-folder; missing data is a ConfigError saying where."""
    root = cfg.get("root")
    if spec.generated and not root:
        return synthetic_root(cfg)
    if root:
        p = Path(str(root)).expanduser().resolve()
        if must_exist and not p.is_dir():
            raise ConfigError(
                f"dataset.root: {p} does not exist (dataset {spec.name}, expected {spec.image_pattern})"
            )
        return p
    if spec.folder is None:
        raise ConfigError(
            f"dataset.root is required for dataset {spec.name!r} (a folder with {spec.image_pattern} "
            f"and {spec.mask_pattern})"
        )
    base = settings.data_root(required=False)
    if base is None:
        raise ConfigError(
            f"{settings.DATA_ROOT} is not set: set it (e.g. in .env) to the folder holding {spec.folder}/ "
            f"or pass dataset.root=PATH"
        )
    p = base / spec.folder
    if must_exist and not p.is_dir():
        hint = f" (python -m medtransfer.data.download {spec.name} fetches it)" if spec.urls else ""
        raise ConfigError(
            f"dataset {spec.name}: {p} does not exist; place the data there (expected {spec.image_pattern}), "
            f"set {settings.DATA_ROOT} (now {base}) or pass dataset.root=PATH{hint}"
        )
    return p


# -------------------------------------------------------------------------------------------- listings
def _files_by_stem(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in IMAGE_EXTS:
            continue
        if p.stem in out:
            raise DataError(
                f"{p}: ambiguous, {out[p.stem].name} has the same id {p.stem!r}; keep one of them"
            )
        out[p.stem] = p
    return out


def pair_by_stem(root: Path, images: str = "images", masks: str = "masks") -> list[Sample]:
    """``root/images/<id>.*`` with ``root/masks/<id>.*``; any half pair is an error naming the file."""
    idir, mdir = root / images, root / masks
    for d in (idir, mdir):
        if not d.is_dir():
            raise DataError(f"{d}: folder not found (expected {images}/ and {masks}/ under {root})")
    imgs, msks = _files_by_stem(idir), _files_by_stem(mdir)
    for stem in sorted(imgs.keys() - msks.keys(), key=natural_key):
        raise DataError(
            f"{imgs[stem]}: image has no mask (expected {mdir}/{stem}.<{'|'.join(e[1:] for e in IMAGE_EXTS)}>)"
        )
    for stem in sorted(msks.keys() - imgs.keys(), key=natural_key):
        raise DataError(f"{msks[stem]}: mask has no image in {idir}")
    if not imgs:
        raise DataError(f"{idir}: no images ({', '.join(IMAGE_EXTS)})")
    return [Sample(id=k, image=imgs[k], mask=msks[k]) for k in sorted(imgs, key=natural_key)]


@register_dataset(
    "kvasir_seg",
    folder="kvasir_seg",
    layout=("images", "masks"),
    image_pattern="images/<id>.jpg",
    mask_pattern="masks/<id>.jpg",
    splits={
        # the official 880/120 (MediaEval 2020 Medico): its "val" list is the held-out TEST part
        "medico2020": ListSplit(train="splits/train.txt", test="splits/val.txt"),
        "pranet": ListSplit(train="splits/pranet_train.txt", test="splits/pranet_test.txt"),
    },
    default_split="medico2020",
    urls=("https://datasets.simula.no/downloads/kvasir-seg.zip",),
    description="Kvasir-SEG, 1000 polyp images (Jha et al., MMM 2020); RGB JPEG masks, threshold 127",
)
def _list_kvasir(root: Path, cfg: Mapping) -> list[Sample]:
    return pair_by_stem(root)


# CVC-ClinicDB frame → video sequence, from the authors' README (29 contiguous, inclusive ranges).
# Used when sequences.csv is absent (a fresh download), so the leakage-free split works everywhere.
CVC_SEQUENCES = (
    (1, 25), (26, 50), (51, 67), (68, 78), (79, 103), (104, 126), (127, 151), (152, 177), (178, 199),
    (200, 205), (206, 227), (228, 252), (253, 277), (278, 297), (298, 317), (318, 342), (343, 363),
    (364, 383), (384, 408), (409, 428), (429, 447), (448, 466), (467, 478), (479, 503), (504, 528),
    (529, 546), (547, 571), (572, 591), (592, 612),
)  # fmt: skip


@register_dataset(
    "cvc_clinicdb",
    folder="cvc_clinicdb",
    layout=("images", "masks"),
    image_pattern="images/<n>.tif|png",
    mask_pattern="masks/<n>.tif|png",
    splits={
        "pranet": ListSplit(train="splits/pranet_train.txt", test="splits/pranet_test.txt"),
        # by video sequence: consecutive frames are near-duplicates, so a random frame split leaks
        "sequence": GroupSplit((0.8, 0.1, 0.1), record_files=("sequences.csv",)),
    },
    default_split="sequence",
    fold_by_group=True,
    urls=("https://www.dropbox.com/s/p5qe9eotetjnbmq/CVC-ClinicDB.rar?dl=1",),
    description="CVC-ClinicDB (CVC-612), 612 frames from 29 sequences (Bernal et al., 2015); TIFFs via tifffile",
)
def _list_cvc(root: Path, cfg: Mapping) -> list[Sample]:
    samples = pair_by_stem(root)
    csv_path = root / "sequences.csv"
    table = (
        read_sequences_csv(csv_path)
        if csv_path.is_file()
        else [(a, b, str(i + 1)) for i, (a, b) in enumerate(CVC_SEQUENCES)]
    )
    seq_of = {n: seq for a, b, seq in table for n in range(a, b + 1)}
    out = []
    for s in samples:
        group = seq_of.get(int(s.id)) if s.id.isdigit() else None
        out.append(Sample(id=s.id, image=s.image, mask=s.mask, group=group))
    return out


@register_dataset(
    "drive",
    folder="drive",
    layout=("training/images", "training/1st_manual", "training/mask", "test/images"),
    image_pattern="{training,test}/images/<n>_{training,test}.tif",
    mask_pattern="{training,test}/1st_manual/<n>_manual1.gif",
    fov_pattern="{training,test}/mask/<n>_{training,test}_mask.gif",
    splits={"official": FixedGroups((("training", "train"), ("test", "test")))},
    default_split="official",
    description="DRIVE retinal vessels (Staal et al., 2004), the user's own download in the official layout",
)
def _list_drive(root: Path, cfg: Mapping) -> list[Sample]:
    out = []
    for part in ("training", "test"):
        idir = root / part / "images"
        if not idir.is_dir():
            raise DataError(
                f"{idir}: folder not found (DRIVE official layout: {part}/images, {part}/1st_manual, "
                f"{part}/mask)"
            )
        for img in sorted(
            p for p in idir.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
        ):
            n = img.stem.split("_")[0]
            manual = _one(root / part / "1st_manual", f"{n}_manual1", img, "manual annotation")
            fov = _one(root / part / "mask", f"{n}_{part}_mask", img, "FOV mask")
            out.append(Sample(id=img.stem, image=img, mask=manual, group=part, fov=fov))
    if not out:
        raise DataError(f"{root}: no DRIVE images under training/images or test/images")
    return sorted(out, key=lambda s: natural_key(s.id))


def _one(folder: Path, stem: str, image: Path, what: str) -> Path:
    hits = [folder / f"{stem}{e}" for e in IMAGE_EXTS if (folder / f"{stem}{e}").is_file()]
    if not hits:
        raise DataError(f"{image}: image has no {what} (expected {folder}/{stem}.gif)")
    return hits[0]


@register_dataset(
    "folder",
    folder=None,
    layout=("images", "masks"),
    image_pattern="images/<id>.{png,jpg,jpeg,tif,tiff,bmp,gif}",
    mask_pattern="masks/<id>.<any of those>",
    default_split="random_80_10_10",
    description="any root/images/* + root/masks/* matched by file stem",
)
def _list_folder(root: Path, cfg: Mapping) -> list[Sample]:
    return pair_by_stem(root)


@register_dataset(
    "synthetic",
    folder=None,
    layout=("images", "masks"),
    image_pattern="images/<id>.png",
    mask_pattern="masks/<id>.png",
    default_split="random_80_10_10",
    extra_keys=("n_images", "native_size", "data_seed"),
    generated=True,
    description="procedural polyp-like blobs, generated offline into the cache dir (demos and tests)",
)
def _list_synthetic(root: Path, cfg: Mapping) -> list[Sample]:
    return pair_by_stem(root)
