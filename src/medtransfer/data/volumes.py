"""3D volumes: the three on-disk layouts, header-only checks, and nnU-Net's reader contract.

Why this shape:

* The people who use 3D data know nnU-Net and the Medical Segmentation Decathlon (MSD), so the layouts are
  theirs, read through each one's ``dataset.json``: an MSD task folder (``modality`` → channels, ``labels``
  value → name, ``training`` [{image, label}], multi-modal images stored as one 4D file), nnU-Net v2 raw
  (``imagesTr/<case>_<XXXX><file_ending>`` one file per channel, ``labelsTr/<case><file_ending>``,
  ``channel_names``, ``labels`` name → value) and a plain folder (``images/<case>.nii[.gz]``,
  ``labels/<case>.nii[.gz]``, label names from the config). All become one `VolumeSource`: channels,
  label values and `Case`s sorted by id, so splitting, validation and decoding never look at the layout.
* Reading follows nnU-Net's reader contract: images ``(C, X, Y, Z)`` float32, labels ``(1, X, Y, Z)``
  integers, each with the voxel spacing (the affine's column norms, what resampling uses) and the 4×4
  affine, in the file's own axis order; reorientation is preprocessing (`preprocess3d`), not reading.
* `inspect_case` reads headers only (nibabel loads a proxy: no voxel is decompressed), so checking every
  case of a dataset — a missing modality file, a 2D file, an image/label shape or affine mismatch, a wrong
  channel count — is cheap enough for validating every job of a sweep. Label values need the voxels, so
  that check is `read_label`'s (run once, by the decode step). Every problem is a one-line `DataError`
  naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtransfer.data.splits import natural_key
from medtransfer.errors import ConfigError, DataError, choices_msg

LAYOUTS = ("msd", "nnunet", "nifti")
NIFTI_ENDINGS = (".nii.gz", ".nii")
AFFINE_ATOL = 1e-4  # mm: image and label affines written by different tools differ by float noise


@dataclass(frozen=True)
class Case:
    """One labelled case: its image file(s) — one per channel, or one 4D file holding every channel (MSD)
    — and its label file. ``group`` and ``image`` let `splits.make_split` treat it like a 2D sample."""

    id: str
    images: tuple[Path, ...]
    label: Path
    group: str | None = None

    @property
    def image(self) -> Path:
        return self.images[0]

    @property
    def files(self) -> tuple[Path, ...]:
        return (*self.images, self.label)


@dataclass(frozen=True)
class VolumeSource:
    """A dataset's cases and what its ``dataset.json`` declares (or the config, for a plain folder)."""

    root: Path
    layout: str
    channels: tuple[str, ...]  # channel (modality) names, in channel order
    labels: tuple[tuple[int, str], ...]  # (value, name), sorted by value; 0 is background
    cases: tuple[Case, ...]
    meta_file: Path | None = None  # the dataset.json read (named in errors)

    @property
    def label_values(self) -> tuple[int, ...]:
        return tuple(v for v, _ in self.labels)

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(n for _, n in self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.cases]

    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.id == case_id:
                return c
        raise DataError(f"{self.root}: no case {case_id!r}")


@dataclass(frozen=True)
class Header:
    """What a case's headers say: its spatial shape, affine and channel count (no voxel read)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    channels: int

    @property
    def spacing(self) -> np.ndarray:
        return spacing_of(self.affine)


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel size in mm along each array axis: the norms of the affine's first three columns."""
    return np.linalg.norm(np.asarray(affine, np.float64)[:3, :3], axis=0)


def strip_ending(name: str) -> str:
    for e in NIFTI_ENDINGS:
        if name.endswith(e):
            return name[: -len(e)]
    return name


# ---------------------------------------------------------------------------------------------- layouts
def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: dataset.json not found (needed to read the layout's channels and labels)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read dataset.json ({type(e).__name__}: {e})") from e
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a JSON object")
    return d


def _labels(pairs, path: Path) -> tuple[tuple[int, str], ...]:
    """(value, name) sorted; values must be distinct integers >= 0 and include background 0."""
    out = []
    for value, name in pairs:
        if isinstance(value, (list, tuple)):
            raise DataError(f"{path}: label {name!r} is a region ({value}); region-based labels are not "
                            "supported, give one integer per class")
        try:
            v = int(value)
        except (TypeError, ValueError):
            raise DataError(f"{path}: label value {value!r} of {name!r} is not an integer") from None
        out.append((v, str(name)))
    out.sort()
    values = [v for v, _ in out]
    if not values or len(set(values)) != len(values) or values[0] != 0:
        raise DataError(f"{path}: labels {dict(out)} must be distinct integers >= 0 including 0 (background)")
    return tuple(out)


def _msd(root: Path) -> VolumeSource:
    meta = root / "dataset.json"
    d = _read_json(meta)
    for key in ("modality", "labels", "training"):
        if key not in d:
            raise DataError(f"{meta}: no {key!r} entry (an MSD dataset.json has modality, labels, training)")
    channels = tuple(str(d["modality"][k]) for k in sorted(d["modality"], key=int))
    try:
        cases = [Case(strip_ending(Path(e["image"]).name), (root / e["image"],), root / e["label"])
                 for e in d["training"]]
    except (KeyError, TypeError) as e:
        raise DataError(f"{meta}: 'training' must be a list of {{\"image\": ..., \"label\": ...}} "
                        f"({e!r})") from e
    return VolumeSource(root, "msd", channels, _labels(d["labels"].items(), meta), _sorted(cases, meta), meta)


def _nnunet(root: Path) -> VolumeSource:
    meta = root / "dataset.json"
    d = _read_json(meta)
    for key in ("channel_names", "labels", "file_ending"):
        if key not in d:
            raise DataError(f"{meta}: no {key!r} entry (an nnU-Net v2 dataset.json has channel_names, "
                            "labels, file_ending)")
    ending = str(d["file_ending"])
    if ending not in NIFTI_ENDINGS:
        raise DataError(f"{meta}: file_ending {ending!r} is not NIfTI; valid choices: "
                        f"{', '.join(NIFTI_ENDINGS)}")
    channels = tuple(str(d["channel_names"][k]) for k in sorted(d["channel_names"], key=int))
    if "dataset" in d:  # nnU-Net v2's explicit case list: {case: {"images": [...], "label": ...}}
        try:
            cases = [Case(str(cid), tuple(root / p for p in e["images"]), root / e["label"])
                     for cid, e in d["dataset"].items()]
        except (KeyError, TypeError, AttributeError) as e:
            raise DataError(f"{meta}: 'dataset' must map case ids to {{\"images\": [...], \"label\": ...}} "
                            f"({e!r})") from e
    else:
        labels_dir = root / "labelsTr"
        if not labels_dir.is_dir():
            raise DataError(f"{labels_dir}: not found (nnU-Net raw layout: imagesTr/, labelsTr/, "
                            "dataset.json)")
        cases = []
        for label in labels_dir.glob(f"*{ending}"):
            cid = label.name[: -len(ending)]
            images = tuple(root / "imagesTr" / f"{cid}_{k:04d}{ending}" for k in range(len(channels)))
            cases.append(Case(cid, images, label))
    labels = _labels(((v, n) for n, v in d["labels"].items()), meta)
    return VolumeSource(root, "nnunet", channels, labels, _sorted(cases, meta), meta)


def _nifti(root: Path, label_names: Sequence[str] | None) -> VolumeSource:
    images_dir, labels_dir = root / "images", root / "labels"
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise DataError(f"{d}: not found (plain NIfTI layout: images/<case>.nii.gz, "
                            "labels/<case>.nii.gz)")
    if not label_names:
        raise ConfigError(f"dataset.labels is required for the plain NIfTI folder {root}: one name per label "
                          "value 0..K-1, e.g. [background, tumour]")
    found = {kind: {strip_ending(p.name): p for p in d.iterdir() if p.name.endswith(NIFTI_ENDINGS)}
             for kind, d in (("image", images_dir), ("label", labels_dir))}
    for kind, other in (("image", "label"), ("label", "image")):
        for cid in sorted(set(found[kind]) - set(found[other])):
            raise DataError(f"{found[kind][cid]}: no matching {other} file for case {cid!r} in "
                            f"{root}/{other}s")
    cases = [Case(cid, (found["image"][cid],), found["label"][cid]) for cid in found["image"]]
    channels = ("0",) if not cases else tuple(str(k) for k in range(inspect_image_channels(cases[0].image)))
    labels = tuple(enumerate(map(str, label_names)))
    return VolumeSource(root, "nifti", channels, labels, _sorted(cases, root))


def _sorted(cases: list[Case], where: Path) -> tuple[Case, ...]:
    if not cases:
        raise DataError(f"{where}: no labelled cases found")
    ids = [c.id for c in cases]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DataError(f"{where}: case id {dup[0]!r} listed more than once")
    return tuple(sorted(cases, key=lambda c: natural_key(c.id)))


def list_source(root: str | Path, layout: str, label_names: Sequence[str] | None = None) -> VolumeSource:
    """The cases and declared channels/labels of a dataset folder (a listing and dataset.json; no header)."""
    if layout not in LAYOUTS:
        raise ConfigError(choices_msg("dataset.layout", layout, LAYOUTS))
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"dataset.root: {root} does not exist (a {layout} dataset folder)")
    if layout == "msd":
        return _msd(root)
    if layout == "nnunet":
        return _nnunet(root)
    return _nifti(root, label_names)


# ---------------------------------------------------------------------------------------------- headers
def _load(path: Path):
    import nibabel as nib

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return nib.load(str(path))
    except Exception as e:  # nibabel raises many types (ImageFileError, OSError, gzip errors): name the file
        raise DataError(f"{path}: cannot read NIfTI header ({type(e).__name__}: {e})") from e


def _spatial(path: Path, shape: tuple[int, ...], channels_last: bool) -> tuple[int, int, int]:
    spatial = shape[:3]
    if len(shape) < 3 or min(spatial) < 2:
        raise DataError(f"{path}: shape {tuple(shape)} is 2D; a 3D volume (X, Y, Z) is expected")
    if len(shape) > (4 if channels_last else 3):
        raise DataError(f"{path}: shape {tuple(shape)} has {len(shape)} dimensions; expected 3"
                        + (" or 4 (channels last)" if channels_last else ""))
    return tuple(int(s) for s in spatial)


def inspect_image_channels(path: Path) -> int:
    shape = _load(path).shape
    return int(shape[3]) if len(shape) == 4 else 1


def inspect_case(case: Case, source: VolumeSource) -> Header:
    """Headers only: every file present and 3D, channel count as declared, image and label on one grid."""
    n = len(source.channels)
    if len(case.images) not in (1, n):
        raise DataError(f"{case.image}: case {case.id!r} has {len(case.images)} image files for {n} channels "
                        f"({', '.join(source.channels)}); expected {n} files or one 4D file")
    ref = None
    for k, path in enumerate(case.images):
        if not path.is_file():
            what = f"channel {k} ({source.channels[k]})" if len(case.images) > 1 else "image"
            raise DataError(f"{path}: missing modality file, {what} of case {case.id!r}")
        img = _load(path)
        shape = _spatial(path, img.shape, channels_last=len(case.images) == 1)
        got = int(img.shape[3]) if len(img.shape) == 4 else 1
        want = n if len(case.images) == 1 else 1
        if got != want:
            raise DataError(f"{path}: {got} channel(s) but {source.meta_file or 'the dataset'} declares "
                            f"{want} ({', '.join(source.channels)})")
        if ref is None:
            ref = (path, shape, np.asarray(img.affine, np.float64))
        else:
            _same_grid(ref, path, shape, img.affine)
    lab = _load(case.label)
    if len(lab.shape) == 4 and lab.shape[3] == 1:
        lab_shape = _spatial(case.label, lab.shape[:3], channels_last=False)
    else:
        lab_shape = _spatial(case.label, lab.shape, channels_last=False)
    _same_grid(ref, case.label, lab_shape, lab.affine)
    return Header(ref[1], ref[2], n)


def _same_grid(ref, path: Path, shape, affine) -> None:
    ref_path, ref_shape, ref_affine = ref
    if tuple(shape) != tuple(ref_shape):
        raise DataError(f"{path}: shape {tuple(shape)} differs from {ref_path.name}'s {tuple(ref_shape)}")
    if not np.allclose(np.asarray(affine, np.float64), ref_affine, rtol=1e-5, atol=AFFINE_ATOL):
        diff = np.abs(np.asarray(affine) - ref_affine).max()
        raise DataError(f"{path}: affine differs from {ref_path.name}'s (max difference {diff:.3g}); image "
                        "and label must share a grid")


def inspect_source(source: VolumeSource, ids: Sequence[str] | None = None) -> dict[str, Header]:
    """`inspect_case` for every case (or the given ids): the validation every sweep job can afford."""
    wanted = set(ids) if ids is not None else None
    return {c.id: inspect_case(c, source) for c in source.cases if wanted is None or c.id in wanted}


# ---------------------------------------------------------------------------------------------- voxels
def read_case(case: Case, source: VolumeSource) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image (C, X, Y, Z) float32, spacing (3,), affine (4, 4)) — nnU-Net's reader contract."""
    arrays, affine = [], None
    for path in case.images:
        img = _load(path)
        try:
            a = np.asarray(img.get_fdata(dtype=np.float32))
        except Exception as e:  # a truncated gzip or short file shows only when the voxels are read
            raise DataError(f"{path}: cannot read voxels ({type(e).__name__}: {e})") from e
        arrays.append(np.moveaxis(a, 3, 0) if a.ndim == 4 else a[None])
        affine = np.asarray(img.affine, np.float64) if affine is None else affine
    image = np.ascontiguousarray(np.concatenate(arrays, axis=0), dtype=np.float32)
    if image.shape[0] != len(source.channels):
        raise DataError(f"{case.image}: {image.shape[0]} channel(s), expected {len(source.channels)}")
    return image, spacing_of(affine), affine


def read_label(case: Case, allowed: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label (1, X, Y, Z) int16, spacing, affine); values outside `allowed` (the declared classes) or not
    integers are a DataError naming the file and the values."""
    img = _load(case.label)
    try:
        raw = np.asanyarray(img.dataobj)
    except Exception as e:
        raise DataError(f"{case.label}: cannot read voxels ({type(e).__name__}: {e})") from e
    if raw.ndim == 4:
        raw = raw[..., 0]
    values = np.unique(raw)
    if not np.all(np.mod(values, 1) == 0):
        raise DataError(f"{case.label}: label values are not integers (e.g. "
                        f"{values[np.mod(values, 1) != 0][0]})")
    if allowed is not None:
        bad = sorted(set(values.astype(np.int64).tolist()) - {int(v) for v in allowed})
        if bad:
            raise DataError(f"{case.label}: label value(s) {bad} not declared; valid: "
                            f"{', '.join(map(str, allowed))}")
    affine = np.asarray(img.affine, np.float64)
    return raw.astype(np.int16)[None], spacing_of(affine), affine

