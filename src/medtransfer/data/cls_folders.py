"""Generic folder classification datasets: ``dataset=image_folder`` and ``dataset=csv`` (`cls_tables`).

* ``image_folder``: ``root/<class>/**/*.{png,jpg,...}`` with torchvision ImageFolder's semantics — the
  classes are the sub-folders sorted by name, class index = position, files found recursively, an empty
  class folder is an error. Multiclass (a softmax over C ≥ 2 classes, loss cross_entropy) even for two
  classes, as ImageFolder; ``dataset.label_kind=binary`` (loss bce_logits) makes a 2-class tree binary with
  the second sorted class positive. Official parts: a root whose sub-folders are ``train/`` and ``test/``
  (``val/`` optional) holds one class tree in each; the classes are train's. Without them the default
  split is a seeded random 80/10/10.
* ``csv``: ``root/labels.csv`` (``dataset.table``) with an ``image`` column (``dataset.image_column``; a path
  relative to the csv's folder) and one 0/1 column per label: one column → binary, several → multilabel;
  ``dataset.labels`` picks columns (default: every column but image, split and group). Optional ``split``
  column (train/val/test on every row; ``dataset.split_column``) gives the official parts, else a seeded
  random 80/10/10; optional ``dataset.group_column`` (e.g. a patient id) keeps each group in one part when
  val is carved from train and in the random and k-fold splits.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medtransfer.data.cls_facts import FileFacts
from medtransfer.data.cls_tables import label_value, read_csv, register_table, select_labels
from medtransfer.data.readers import IMAGE_EXTS
from medtransfer.errors import ConfigError, DataError

PARTS = ("train", "val", "test")
RANDOM = (0.8, 0.1, 0.1)


def _class_tree(root: Path) -> dict[str, list[Path]]:
    """class → its image files (recursive, sorted), classes sorted; an empty class folder: DataError."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    out = {}
    for c in classes:
        files = sorted(Path(d) / n for d, dirs, names in os.walk(root / c) for n in names
                       if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTS)
        if not files:
            raise DataError(f"{root / c}: class folder without images ({', '.join(IMAGE_EXTS)})")
        out[c] = files
    return out


def parse_image_folder(root: Path, cfg: Mapping) -> FileFacts:
    subdirs = {e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")}
    official = {"train", "test"} <= subdirs <= set(PARTS)
    if official:
        trees = {p: _class_tree(root / p) for p in PARTS if p in subdirs}
    else:
        trees = {None: _class_tree(root)}
    classes = list(trees["train"] if official else trees[None])
    if len(classes) < 2:
        raise DataError(f"{root}: {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); an image "
                        "folder needs at least 2 (root/<class>/*.png or root/{train,val,test}/<class>/)")
    names = cfg.get("labels")
    if names is not None and [str(n) for n in names] != classes:
        raise ConfigError(f"dataset.labels={list(names)}: an image folder's classes are its sub-folders, "
                          f"sorted: {classes}; leave dataset.labels null")
    ids, labels, parts, images = [], [], [], []
    for part, tree in trees.items():
        for c, files in tree.items():
            if c not in classes:
                raise DataError(f"{root / part / c}: class {c!r} is not a class of {root / 'train'} "
                                f"({', '.join(classes)})")
            for f in files:
                ids.append(os.path.relpath(f, root).replace(os.sep, "/"))
                labels.append(classes.index(c))
                parts.append(part)
                images.append(f)
    return FileFacts(path=root, ids=tuple(ids), labels=np.asarray(labels, np.int64)[:, None],
                     parts=tuple(parts), images=tuple(images), names=tuple(classes))


def parse_csv(root: Path, cfg: Mapping) -> FileFacts:
    table = root / str(cfg.get("table") or "labels.csv")
    image_col = str(cfg.get("image_column") or "image")
    split_col = str(cfg.get("split_column") or "split")
    group_col = cfg.get("group_column")
    columns, rows = read_csv(table, (image_col, *([str(group_col)] if group_col else [])))
    if not rows:
        raise DataError(f"{table}: no rows")
    reserved = {image_col, split_col, *([str(group_col)] if group_col else [])}
    names = select_labels(cfg, [c for c in columns if c not in reserved], table, None)
    has_split = split_col in columns
    ids, labels, parts, images, groups, seen = [], [], [], [], [], {}
    for k, r in enumerate(rows, start=2):
        rel = (r.get(image_col) or "").strip()
        if not rel:
            raise DataError(f"{table}: row {k}: empty {image_col!r}")
        if rel in seen:
            raise DataError(f"{table}: row {k}: image {rel} is listed twice (first in row {seen[rel]})")
        seen[rel] = k
        path = (table.parent / rel).resolve()
        if not path.is_file():
            raise DataError(f"{table}: row {k}: image {rel} does not exist ({path})")
        part = (r.get(split_col) or "").strip() if has_split else None
        if has_split and part not in PARTS:
            raise DataError(f"{table}: row {k}: {split_col} {part!r} is not one of train, val, test")
        if group_col:
            g = (r.get(str(group_col)) or "").strip()
            if not g:
                raise DataError(f"{table}: row {k}: empty group {group_col!r}")
            groups.append(g)
        ids.append(rel)
        labels.append([label_value(r.get(n), table, k, n) for n in names])
        parts.append(part)
        images.append(path)
    if has_split and "train" not in parts:
        raise DataError(f"{table}: column {split_col!r} has no train rows")
    return FileFacts(path=root, ids=tuple(ids), labels=np.asarray(labels, np.int64), parts=tuple(parts),
                     images=tuple(images), groups=tuple(groups) if group_col else None, names=tuple(names))


register_table(
    "image_folder",
    parse=parse_image_folder,
    folder=None,
    expected="root/<class>/*.png|jpg (or root/{train,val,test}/<class>/*)",
    label_kind="multiclass",
    fallback=RANDOM,
    color="rgb",
    description="any class-per-folder tree (torchvision ImageFolder), multiclass; optional train/val/test",
)
register_table(
    "csv",
    parse=parse_csv,
    folder=None,
    expected="root/labels.csv with an image column and one 0/1 column per label (optional split, group)",
    fallback=RANDOM,
    color="rgb",
    tables=("labels.csv",),
    description="any labels.csv: image paths + 0/1 label columns (binary or multilabel), optional split",
)
