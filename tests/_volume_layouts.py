"""Tiny NIfTI datasets in each 3D layout (MSD task folder, nnU-Net v2 raw, plain folder), for the 3D tests.

Volumes are 12×10×8 voxels at an anisotropic (1.0, 1.5, 3.0) mm spacing; each label holds a small labelled
box whose position depends on the case, so foreground-centred patches can be told from uniform ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (12, 10, 8)
SPACING = (1.0, 1.5, 3.0)


def affine(spacing=SPACING, flip_xy: bool = False) -> np.ndarray:
    """Diagonal affine with an origin offset; flip_xy gives an LPS-stored volume (x and y axes negated)."""
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = (-20.0, 7.5, 12.0)
    if flip_xy:
        a[0, 0], a[1, 1] = -a[0, 0], -a[1, 1]
    return a


def volume(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, shape).astype(np.float32)


def label(seed: int, shape=SHAPE, classes: int = 3) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    x = 2 + seed % 4
    lab[x:x + 3, 3:6, 2:5] = 1
    if classes > 2:
        lab[x:x + 3, 6:8, 2:5] = 2
    return lab


def save(path: Path, data: np.ndarray, aff: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine(SPACING) if aff is None else aff), str(path))
    return path


def msd(root: Path, n: int = 6, channels: int = 1, shape=SHAPE) -> Path:
    """MSD task folder: imagesTr/labelsTr and dataset.json (multi-modal images as one 4D file)."""
    training = []
    for i in range(n):
        name = f"case_{i:03d}.nii.gz"
        img = (volume(i, shape) if channels == 1
               else np.stack([volume(i + 10 * c, shape) for c in range(channels)], -1))
        save(root / "imagesTr" / name, img)
        save(root / "labelsTr" / name, label(i, shape))
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"name": "Tiny", "tensorImageSize": "4D" if channels > 1 else "3D",
            "modality": {str(c): f"MR{c}" for c in range(channels)},
            "labels": {"0": "background", "1": "anterior", "2": "posterior"},
            "numTraining": n, "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def nnunet(root: Path, n: int = 6, channels: int = 2) -> Path:
    """nnU-Net v2 raw: imagesTr/<case>_<XXXX>.nii.gz per channel, labelsTr/<case>.nii.gz, dataset.json."""
    for i in range(n):
        for c in range(channels):
            save(root / "imagesTr" / f"tiny_{i:03d}_{c:04d}.nii.gz", volume(i + 10 * c))
        save(root / "labelsTr" / f"tiny_{i:03d}.nii.gz", label(i))
    meta = {"channel_names": {str(c): f"MR{c}" for c in range(channels)},
            "labels": {"background": 0, "anterior": 1, "posterior": 2},
            "numTraining": n, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def nifti(root: Path, n: int = 6, aff: np.ndarray | None = None) -> Path:
    """Plain folder: images/<case>.nii.gz and labels/<case>.nii.gz (label names come from the config)."""
    for i in range(n):
        save(root / "images" / f"c{i}.nii.gz", volume(i), aff)
        save(root / "labels" / f"c{i}.nii.gz", label(i, classes=2), aff)
    return root
