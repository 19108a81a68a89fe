"""Tiny classification datasets in each source's published layout, for the data and training tests.

Images are small grey or RGB PNG/JPEG files whose brightness shows the (first) label, so a smoke run can learn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

NIH = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
       "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
CHEXPERT_COLUMNS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                    "Pleural Other", "Fracture", "Support Devices")


def save_image(path: Path, positive: bool, size: int = 40, rgb: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if rgb else (size, size)
    img = rng.integers(0, 60, shape, dtype=np.uint8)
    if positive:
        c = size // 4
        img[c:-c, c:-c] += 150
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def make_chestxray14(root: Path, patients: int = 12, per_patient: int = 2, test_from: int = 9) -> Path:
    """Data_Entry_2017.csv (the NIH columns), train_val_list.txt, test_list.txt, images/; patients >=
    test_from are test. Findings cycle through 'No Finding', 'Effusion|Mass' and 'Hernia'."""
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    rows, tv, te = [header], [], []
    for p in range(patients):
        for f in range(per_patient):
            name = f"{p + 1:08d}_{f:03d}.png"
            finding = ("No Finding", "Effusion|Mass", "Hernia")[(p + f) % 3]
            save_image(root / "images" / name, finding != "No Finding", seed=p * 10 + f)
            rows.append(f"{name},{finding},{f},{p + 1},58,M,PA,2682,2749,0.143,0.143")
            (te if p >= test_from else tv).append(name)
    (root / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(tv) + "\n")
    (root / "test_list.txt").write_text("\n".join(te) + "\n")
    return root


def chexpert_row(path: str, values: dict[str, str], view: str = "Frontal") -> str:
    cells = [path, "Female", "68", view, "AP" if view == "Frontal" else ""]
    return ",".join(cells + [values.get(c, "") for c in CHEXPERT_COLUMNS])


def make_chexpert(parent: Path, train_patients: int = 10, valid_patients: int = 4) -> Path:
    """CheXpert-v1.0-small/{train,valid}.csv + {train,valid}/patientNNNNN/study1/view1_frontal.jpg and
    view2_lateral.jpg under `parent`; returns the dataset folder. Training rows carry 1.0, 0.0, -1.0 and empty
    cells, validation rows 0/1 only."""
    folder = parent / "CheXpert-v1.0-small"
    header = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_COLUMNS)
    cycle = ("1.0", "0.0", "-1.0", "")
    for part, n, start in (("train", train_patients, 1), ("valid", valid_patients, 64541)):
        rows = [header]
        for i in range(n):
            pid = f"patient{start + i:05d}"
            for view in (1, 2):
                kind = "Frontal" if view == 1 else "Lateral"
                rel = f"{part}/{pid}/study1/view{view}_{kind.lower()}.jpg"
                if part == "train":
                    values = {c: cycle[(i + view + j) % 4] for j, c in enumerate(CHEXPERT_COLUMNS)}
                else:  # the official validation set: radiologists' consensus, 0/1 only
                    values = {c: ("1.0" if (i + view + j) % 2 else "0.0") for j, c in enumerate(CHEXPERT_COLUMNS)}
                save_image(folder / rel, values["Atelectasis"] == "1.0", seed=i * 3 + view)
                rows.append(chexpert_row(f"CheXpert-v1.0-small/{rel}", values, kind))
        (folder / f"{part}.csv").write_text("\n".join(rows) + "\n")
    return folder


def make_shenzhen(root: Path, n: int = 20) -> Path:
    for i in range(n):
        save_image(root / f"CHNCXR_{i + 1:04d}_{i % 2}.png", bool(i % 2), seed=i)
    (root / "Thumbs.db").write_bytes(b"\x00")
    return root


def make_image_folder(root: Path, classes=("cat", "dog", "owl"), n: int = 6, official: bool = False) -> Path:
    parts = (("train", n), ("test", max(2, n // 2))) if official else ((None, n),)
    for part, k in parts:
        for ci, c in enumerate(classes):
            for i in range(k):
                base = root / part / c if part else root / c
                save_image(base / f"img{i}.png", ci > 0, rgb=True, seed=ci * 100 + i)
    return root


def make_csv(root: Path, n: int = 20, labels=("a", "b"), split: bool = False, groups: bool = False) -> Path:
    cols = ["image", *labels, *(["split"] if split else []), *(["patient"] if groups else [])]
    rows = [",".join(cols)]
    for i in range(n):
        values = [str((i + j) % 2) for j in range(len(labels))]
        save_image(root / "img" / f"{i}.png", values[0] == "1", rgb=True, seed=i)
        extra = ([("train", "train", "val", "test")[i % 4]] if split else []) + ([f"p{i // 2}"] if groups else [])
        rows.append(",".join([f"img/{i}.png", *values, *extra]))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root
