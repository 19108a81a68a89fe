"""MedMNIST v2 / MedMNIST+ 2D files, read from the official .npz: two registered datasets and a generic one.

Why read the .npz ourselves rather than through the ``medmnist`` package: the file already is the whole
dataset with its official parts, reading it is a few lines of numpy, and the package would add a dependency
whose loader decodes to PIL per item. Validation reads only the array headers and the labels (`inspect_npz`,
memoised per file version), so a sweep checks every job's file without touching the images.

The layout (MedMNIST v2, Yang et al., Sci Data 2023; MedMNIST+ sizes): ``{train,val,test}_images`` of shape
(N, H, W) uint8 (grey) or (N, H, W, 3) (RGB), H = W = 28, 64, 128 or 224 — the size is read from the file, so
``pathmnist_224.npz`` needs nothing more than its path; ``{train,val,test}_labels`` of shape (N, 1) (a class
index: binary or multiclass) or (N, L) (0/1 per label: multilabel, ChestMNIST). 3D files (``*mnist3d*.npz``,
(N, D, H, W)) are refused: the encoders here are 2D.

* ``dataset=pneumoniamnist``, ``dataset=breastmnist``: the registered files at
  ``$MEDTRANSFER_DATA_ROOT/medmnist/<name>.npz`` (``dataset.file`` may point at another size of the same
  dataset). BreastMNIST codes 0 = malignant, 1 = normal or benign: its positive class (label 1) is *not* the
  disease, and we keep the file's coding (MedMNIST's published numbers use it) and name it truthfully.
* ``dataset=medmnist dataset.file=PATH``: any 2D MedMNIST file; labels inferred unless the config names them
  (`classification` module docstring).
"""

from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from medtransfer.data.classification import PARTS, FileFacts, register_classification
from medtransfer.errors import DataError

KEYS = tuple(f"{p}_{k}" for p in PARTS for k in ("images", "labels"))
EXPECTED = "a 2D MedMNIST .npz (train/val/test_images (N, H, W[, 3]) uint8 and train/val/test_labels)"
ZENODO = "https://zenodo.org/records/10519652/files/{}.npz?download=1"


def _header(z: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    fmt = np.lib.format
    with z.open(f"{key}.npy") as f:
        version = fmt.read_magic(f)
        shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
    return tuple(shape), dtype


@lru_cache(maxsize=16)
def _inspect(path: Path, size: int, mtime_ns: int) -> FileFacts:
    try:
        with zipfile.ZipFile(path) as z:
            present = {n.removesuffix(".npy") for n in z.namelist()}
            missing = [k for k in KEYS if k not in present]
            if not missing:
                images = {p: _header(z, f"{p}_images") for p in PARTS}
                labels = {}
                for p in PARTS:
                    with z.open(f"{p}_labels.npy") as f:
                        labels[p] = np.lib.format.read_array(f, allow_pickle=False)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz ({type(e).__name__}: {e}); expected {EXPECTED}") from e
    if missing:
        raise DataError(f"{path}: no {missing[0]} array; {EXPECTED} has {', '.join(KEYS)}")
    for p, (s, dtype) in images.items():
        if len(s) == 4 and s[3] != 3:
            raise DataError(f"{path}: {p}_images has shape {s}, a 3D volume per sample; only 2D MedMNIST "
                            "files (N, H, W) or (N, H, W, 3) are supported")
        if dtype != np.uint8 or len(s) not in (3, 4):
            raise DataError(f"{path}: {p}_images is {dtype} {s}; expected {EXPECTED}")
        lab = labels[p]
        if lab.dtype.kind not in "iu" or lab.ndim not in (1, 2) or len(lab) != s[0]:
            raise DataError(f"{path}: {p}_labels is {lab.dtype} {lab.shape}; expected integer labels (N, 1) "
                            f"or (N, L) with N = {s[0]} (the {p}_images count)")
        labels[p] = lab.reshape(len(lab), -1).astype(np.int64)
    if len({lab.shape[1] for lab in labels.values()}) > 1:
        raise DataError(f"{path}: label columns differ between parts "
                        f"({', '.join(f'{p}: {lab.shape[1]}' for p, lab in labels.items())})")
    shapes = {s[1:] for s, _ in images.values()}
    if len(shapes) > 1:
        raise DataError(f"{path}: image shapes differ between parts ({', '.join(map(str, sorted(shapes)))})")
    (h, w, *c), = shapes
    return FileFacts(path=path, ids=tuple(f"{p}/{i}" for p in PARTS for i in range(len(labels[p]))),
                     labels=np.concatenate([labels[p] for p in PARTS]),
                     parts=tuple(p for p in PARTS for _ in range(len(labels[p]))),
                     image_shape=(h, w, c[0] if c else 1))


def inspect_npz(path: Path) -> FileFacts:
    """Array headers and labels, no images; memoised per (path, size, mtime), so a sweep reads each once.
    Rows: the train, val and test arrays in that order, ids ``<part>/<index>``."""
    st = path.stat()
    return _inspect(path, st.st_size, st.st_mtime_ns)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The images of every part, (N, H, W) or (N, H, W, 3) uint8 (checked by `inspect_npz` first)."""
    with np.load(path, allow_pickle=False) as d:
        return {p: d[f"{p}_images"] for p in PARTS}


_COMMON = {"inspect": inspect_npz, "read": read_npz, "expected": EXPECTED}

register_classification(
    "pneumoniamnist",
    file="medmnist/pneumoniamnist.npz",
    label_kind="binary",
    labels=("pneumonia",),
    urls=(ZENODO.format("pneumoniamnist"),),
    description="PneumoniaMNIST (MedMNIST v2): paediatric chest X-rays, 0 normal / 1 pneumonia, 4708/524/624",
    **_COMMON,
)
register_classification(
    "breastmnist",
    file="medmnist/breastmnist.npz",
    label_kind="binary",
    labels=("normal_or_benign",),
    urls=(ZENODO.format("breastmnist"),),
    description="BreastMNIST (MedMNIST v2): breast ultrasound, 0 malignant / 1 normal or benign, 546/78/156",
    **_COMMON,
)
register_classification(
    "medmnist",
    file=None,
    description="any 2D MedMNIST .npz (dataset.file=PATH; 28/64/128/224 px), labels from config or file",
    **_COMMON,
)
