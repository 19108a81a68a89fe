"""Chest X-ray classification sources in their official layouts: ChestX-ray14, CheXpert, Shenzhen TB.

* ``chestxray14`` (NIH, Wang et al. 2017): ``Data_Entry_2017.csv`` ("Image Index", "Finding Labels" with
  '|'-separated findings or "No Finding", "Patient ID", ...), ``train_val_list.txt``, ``test_list.txt`` and
  ``images/`` (1024² grey PNGs). 14 findings, multilabel. Official test = test_list; val carved from
  train_val **by patient** (seeded, ``dataset.val_fraction``), so no patient is in two parts. Ids: the image
  file names without ``.png``.
* ``chexpert`` (Irvin et al. 2019): ``train.csv`` and ``valid.csv`` (Path, Sex, Age, Frontal/Lateral, AP/PA,
  then 14 observations: 1.0, 0.0, -1.0 = uncertain, or empty = negative). ``dataset.root`` is the dataset
  folder, the one holding train.csv (``CheXpert-v1.0-small/`` as unzipped); a parent holding
  ``CheXpert-v1.0-small/`` or ``CheXpert-v1.0/`` is accepted too. The csv's paths start with that folder's
  name, which is dropped, so a renamed folder works. Labels: the 5 competition observations by default
  (``dataset.labels`` may name any of the 14). The official valid.csv is the test part (the competition's
  test set is hidden); val is carved from train by patient. Uncertain labels: ``dataset.uncertain``
  (`cls_batches`), by default the benchmark's ``soft``. ``dataset.views: frontal`` keeps frontal images only (default: all).
* ``shenzhen`` (Jaeger et al. 2014): ``CHNCXR_<nnnn>_<0|1>.png`` in one folder (``CXR_png/`` under root is
  found too), 0 normal, 1 tuberculosis; binary. No official split: the default is ``random_70_10_20``, the
  JLiangLab benchmark's proportions (its exact lists are not published with the data), seeded by split_seed.

Chest X-rays are decoded grey (``dataset.color: grey``) and broadcast to three channels in the batch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medtransfer.data.cls_facts import FileFacts
from medtransfer.data.cls_tables import existing, label_value, read_csv, register_table, select_labels
from medtransfer.data.splits import RandomSplit
from medtransfer.errors import ConfigError, DataError, choices_msg

NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
                "Hernia")
CHEXPERT_OBSERVATIONS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
                         "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
                         "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices")
CHEXPERT_COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
VIEWS = ("all", "frontal")


# -------------------------------------------------------------------------------------------- NIH
def _id_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: not found (ChestX-ray14 layout: Data_Entry_2017.csv, train_val_list.txt, "
                        "test_list.txt, images/)")
    return [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


def parse_chestxray14(root: Path, cfg: Mapping) -> FileFacts:
    table = root / "Data_Entry_2017.csv"
    _, rows = read_csv(table, ("Image Index", "Finding Labels", "Patient ID"))
    names = select_labels(cfg, list(NIH_FINDINGS), table, NIH_FINDINGS)
    part_of: dict[str, str] = {}
    for part, rel in (("train", "train_val_list.txt"), ("test", "test_list.txt")):
        for line, name in enumerate(_id_list(root / rel), start=1):
            if part_of.setdefault(name, part) != part:
                raise DataError(f"{root / rel}: line {line}: {name} is in both train_val_list.txt and "
                                "test_list.txt")
    on_disk = existing(root / "images")
    column = {n: j for j, n in enumerate(names)}
    ids, labels, parts, images, groups, seen = [], [], [], [], [], set()
    for k, r in enumerate(rows, start=2):
        name = r["Image Index"].strip()
        if name not in part_of:
            raise DataError(f"{table}: row {k}: {name} is in neither train_val_list.txt nor test_list.txt")
        if name not in on_disk:
            raise DataError(f"{table}: row {k}: image {root / 'images' / name} does not exist")
        y = np.zeros(len(names), np.int64)
        findings = [f.strip() for f in r["Finding Labels"].split("|")]
        for f in findings:
            if f not in NIH_FINDINGS and f != "No Finding":
                raise DataError(f"{table}: row {k}: unknown finding {f!r}; valid: {', '.join(NIH_FINDINGS)}, "
                                "No Finding")
            if f in column:
                y[column[f]] = 1
        if "No Finding" in findings and len(findings) > 1:
            raise DataError(f"{table}: row {k}: 'No Finding' together with findings ({r['Finding Labels']})")
        patient = r["Patient ID"].strip()
        if not patient:
            raise DataError(f"{table}: row {k}: empty 'Patient ID'")
        ids.append(name.rsplit(".", 1)[0])
        labels.append(y)
        parts.append(part_of[name])
        images.append(root / "images" / name)
        groups.append(patient)
        seen.add(name)
    missing = [n for n in part_of if n not in seen]
    if missing:
        raise DataError(f"{root}: {len(missing)} listed image(s) have no row in Data_Entry_2017.csv "
                        f"(first: {missing[0]})")
    if not ids:
        raise DataError(f"{table}: no rows")
    return FileFacts(path=root, ids=tuple(ids), labels=np.stack(labels), parts=tuple(parts),
                     images=tuple(images), groups=tuple(groups), names=tuple(names))


# --------------------------------------------------------------------------------------- CheXpert
_CHEXPERT_DIR = re.compile(r"CheXpert-v1\.0(-small)?$")
_PATIENT = re.compile(r"patient\d+")


def chexpert_folder(root: Path) -> Path:
    """The folder holding train.csv: `root` itself or its CheXpert-v1.0[-small]/ sub-folder."""
    if (root / "train.csv").is_file():
        return root
    for sub in ("CheXpert-v1.0-small", "CheXpert-v1.0"):
        if (root / sub / "train.csv").is_file():
            return root / sub
    raise DataError(f"{root}: no train.csv (CheXpert layout: train.csv, valid.csv, train/, valid/ in the "
                    "dataset folder, e.g. CheXpert-v1.0-small/; dataset.root may be that folder or its "
                    "parent)")


def parse_chexpert(root: Path, cfg: Mapping) -> FileFacts:
    folder = chexpert_folder(root)
    views = cfg.get("views") or "all"
    if views not in VIEWS:
        raise ConfigError(choices_msg("dataset.views", views, VIEWS))
    names = select_labels(cfg, list(CHEXPERT_OBSERVATIONS), folder / "train.csv", CHEXPERT_COMPETITION)
    ids, labels, unc, parts, images, groups = [], [], [], [], [], []
    for part, csv_name in (("train", "train.csv"), ("test", "valid.csv")):
        table = folder / csv_name
        _, rows = read_csv(table, ("Path", "Frontal/Lateral", *names))
        for k, r in enumerate(rows, start=2):
            if views == "frontal" and r["Frontal/Lateral"].strip() != "Frontal":
                continue
            rel = Path(r["Path"].strip())
            if rel.parts and _CHEXPERT_DIR.match(rel.parts[0]):
                rel = Path(*rel.parts[1:])
            patient = next((p for p in rel.parts if _PATIENT.fullmatch(p)), None)
            if patient is None:
                raise DataError(f"{table}: row {k}: Path {r['Path']!r} has no patientNNNNN folder")
            path = folder / rel
            if not path.is_file():
                raise DataError(f"{table}: row {k}: image {path} does not exist")
            values = [label_value(r[n], table, k, n, uncertain=True) for n in names]
            ids.append(rel.with_suffix("").as_posix())
            labels.append([max(v, 0) for v in values])
            unc.append([v == -1 for v in values])
            parts.append(part)
            images.append(path)
            groups.append(f"{part}/{patient}")
    if "train" not in parts:
        which = " with Frontal views" if views == "frontal" else ""
        raise DataError(f"{folder / 'train.csv'}: no rows{which}")
    return FileFacts(path=folder, ids=tuple(ids), labels=np.asarray(labels, np.int64), parts=tuple(parts),
                     images=tuple(images), groups=tuple(groups), uncertain=np.asarray(unc, bool),
                     names=tuple(names))


# ---------------------------------------------------------------------------------------- Shenzhen
_SHENZHEN = re.compile(r"CHNCXR_(\d{4})_([01])\.png$", re.IGNORECASE)


def parse_shenzhen(root: Path, cfg: Mapping) -> FileFacts:
    folder = root / "CXR_png" if (root / "CXR_png").is_dir() else root
    names = select_labels(cfg, ["tuberculosis"], folder, ("tuberculosis",))
    ids, labels, images = [], [], []
    for name in sorted(existing(folder)):
        if not name.lower().endswith(".png"):
            continue  # the download also holds Thumbs.db and the clinical readings (ClinicalReadings/ .txt)
        m = _SHENZHEN.match(name)
        if m is None:
            raise DataError(f"{folder / name}: not a Shenzhen file name (CHNCXR_<4 digits>_<0 normal|1 TB>"
                            ".png)")
        ids.append(name[:-4])
        labels.append([int(m.group(2))])
        images.append(folder / name)
    if not ids:
        raise DataError(f"{folder}: no CHNCXR_<nnnn>_<0|1>.png images")
    return FileFacts(path=folder, ids=tuple(ids), labels=np.asarray(labels, np.int64),
                     parts=(None,) * len(ids), images=tuple(images), names=tuple(names))


register_table(
    "chestxray14",
    parse=parse_chestxray14,
    folder="chestxray14",
    expected="Data_Entry_2017.csv, train_val_list.txt, test_list.txt and images/*.png (NIH official layout)",
    label_kind="multilabel",
    labels=NIH_FINDINGS,
    color="grey",
    tables=("Data_Entry_2017.csv", "train_val_list.txt", "test_list.txt"),
    urls=("https://nihcc.app.box.com/v/ChestXray-NIHCC",),
    description="NIH ChestX-ray14: 112,120 frontal X-rays of 30,805 patients, 14 findings (multilabel)",
)
register_table(
    "chexpert",
    parse=parse_chexpert,
    folder="chexpert",
    expected="train.csv, valid.csv, train/ and valid/ (CheXpert-v1.0-small as unzipped)",
    label_kind="multilabel",
    labels=CHEXPERT_COMPETITION,
    color="grey",
    uncertain="soft",
    tables=("train.csv", "valid.csv"),
    urls=("https://stanfordmlgroup.github.io/competitions/chexpert/",),
    description="CheXpert: 224,316 chest X-rays of 65,240 patients; the 5 competition labels (uncertain)",
)
register_table(
    "shenzhen",
    parse=parse_shenzhen,
    folder="shenzhen",
    expected="CHNCXR_<nnnn>_<0|1>.png in one folder (or its CXR_png/)",
    label_kind="binary",
    labels=("tuberculosis",),
    official=False,
    splits={"random_70_10_20": RandomSplit((0.7, 0.1, 0.2))},
    default_split="random_70_10_20",
    color="grey",
    urls=("https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets",),
    description="Shenzhen chest X-ray set: 662 images (326 normal, 336 tuberculosis), binary",
)
