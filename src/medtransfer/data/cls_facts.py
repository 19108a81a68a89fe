"""The row view of a classification dataset (`FileFacts`) and its official split (`Official`).

Why rows: a MedMNIST file and a folder dataset's table (ChestX-ray14's Data_Entry_2017.csv, CheXpert's
train.csv/valid.csv, a class-per-folder tree, a labels.csv) become the same thing — ids, labels, official
part and patient per image — so one DataModule, one split procedure (`splits.make_split`) and one
split.json serve them all. Validation reads only this (no image decoded).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtransfer.data.splits import GroupSplit, RandomSplit, rng_for, sorted_ids


@dataclass(frozen=True)
class FileFacts:
    """What validation and the DataModule need of a labelled dataset, read without decoding an image: one
    row per image, in a fixed order (the decoded array's row order).

    A MedMNIST file gives its three parts' rows (ids ``train/0``...); a folder dataset (`cls_tables`) its
    table's rows (ids from the file names), with each image's file, official part (None: no official
    split) and patient (None: unknown). ``labels`` are 0/1 per column, or one class index (multiclass);
    uncertain entries (CheXpert's -1) are 0 in ``labels`` and True in ``uncertain``."""

    path: Path  # the labelled file, or the dataset folder: named in errors
    ids: tuple[str, ...]
    labels: np.ndarray  # (N, L) int64
    parts: tuple[str | None, ...]
    image_shape: tuple[int, ...] | None = None  # (H, W, C) of every image (MedMNIST); None: read at setup
    images: tuple[Path, ...] | None = None  # one file per row (folder datasets)
    groups: tuple[str, ...] | None = None  # patient per row, where the data says
    uncertain: np.ndarray | None = None  # (N, L) bool
    names: tuple[str, ...] | None = None  # label names the data gives (CSV columns, class folders)

    @property
    def width(self) -> int:
        return int(self.labels.shape[1])

    def count(self, part: str) -> int:
        return sum(p == part for p in self.parts)

    def by_part(self) -> dict[str, np.ndarray]:
        """labels per official part (rows without one under "all"), for error messages that name the part."""
        keys = np.asarray([p or "all" for p in self.parts])
        return {k: self.labels[keys == k] for k in dict.fromkeys(keys.tolist())}


@dataclass(frozen=True)
class Item:
    """What the split schemes read of a row: its id, official part, patient group and file."""

    id: str
    part: str | None
    group: str | None = None
    image: Path | None = None


@dataclass(frozen=True)
class Official:
    """The data's own parts (a MedMNIST file's arrays, test_list.txt, valid.csv, a split column). Without a
    val part, val is carved from train here when the rows have patients — by patient, so no patient is in
    two parts — and otherwise by image in `make_split`. `fallback` (folder and CSV datasets that may
    declare no parts): fractions of a seeded random split of data without parts, by patient where known."""

    val_fraction: float = 0.1
    fallback: tuple[float, float, float] | None = None
    files: tuple[str, ...] = ()

    def parts(self, samples, root: Path, seed: int) -> dict[str, list[str]]:
        if self.fallback is not None and all(s.part is None for s in samples):
            grouped = all(s.group is not None for s in samples)
            scheme = GroupSplit(self.fallback) if grouped else RandomSplit(self.fallback)
            return scheme.parts(samples, root, seed)
        out: dict[str, list[str]] = {}
        for s in samples:
            out.setdefault(s.part, []).append(s.id)
        train = [s for s in samples if s.part == "train"]
        if "val" not in out and train and self.val_fraction > 0 and all(s.group is not None for s in train):
            out["train"], out["val"] = carve_by_group(train, self.val_fraction, seed)
        return out


def carve_by_group(samples, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, val ids): whole groups, shuffled (seeded), go to val until it holds round(fraction × N)
    images or more; at least one group stays in train."""
    members: dict[str, list[str]] = {}
    for s in samples:
        members.setdefault(str(s.group), []).append(s.id)
    names = sorted_ids(members)
    order = [names[i] for i in rng_for(seed, _STREAM_GROUP_VAL).permutation(len(names))]
    want, val = max(1, round(fraction * len(samples))), []
    for g in order[:-1]:
        if len(val) >= want:
            break
        val += members[g]
    held = set(val)
    return [s.id for s in samples if s.id not in held], val


_STREAM_GROUP_VAL = 11  # its own random stream (splits.rng_for): n_train draws never move val
