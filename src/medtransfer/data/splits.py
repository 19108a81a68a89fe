"""Train/val/test splits: schemes as data, one seeded procedure, and a JSON record that pins the result.

Why this shape:

* A *scheme* only says which ids form which part (list files, video sequences, random fractions). The
  common steps every scheme shares — carving a validation part out of train when the scheme has none,
  and the low-data ``n_train`` subsample — are applied once in `make_split`, so every dataset gets them
  with the same semantics.
* Determinism across machines: ids are always sorted (naturally: frame ``2`` before ``10``) before a
  numpy ``Generator`` permutes them, and each random step draws from its own stream
  (``default_rng([seed, k])``) so that, e.g., changing ``n_train`` never changes val or test.
* ``n_train`` subsets are nested: with one seed, the 50-image train set is contained in the 100-image one
  (both are prefixes of the same permutation), so a low-data curve varies one thing at a time.
* k-fold cross-validation (``dataset.fold``) follows nnU-Net (fixed folds seed); for datasets whose groups
  are video sequences (CVC-ClinicDB) the folds are grouped (GroupKFold semantics), because a frame-wise fold
  put every validation frame next to its own sequence's frames in training.
* The `Split` serialises to ``split.json`` with the sha256 of its canonical JSON and of every list file
  it read, and nothing machine-specific, so two machines can compare splits by hash.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medtransfer.errors import ConfigError, DataError
from medtransfer.hashing import sha256_file

PARTS = ("train", "val", "test")
_STREAM_SCHEME, _STREAM_VAL, _STREAM_NTRAIN = 0, 1, 2


def natural_key(s: str):
    """Sort key that orders '2' before '10' and never compares int with str."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]


def sorted_ids(ids) -> list[str]:
    return sorted(ids, key=natural_key)


def rng_for(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream])


def read_id_list(path: Path) -> list[str]:
    """Bare ids, one per line; an image extension is tolerated (some lists carry 'x.png') and stripped."""
    from medtransfer.data.readers import IMAGE_EXTS

    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s and not s.startswith("#"):
            stem, ext = os.path.splitext(s)
            ids.append(stem if ext.lower() in IMAGE_EXTS else s)
    return ids


def _fraction_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Counts per part for n items; the first part takes the rounding remainder."""
    counts = [round(f * n) for f in fractions[1:]]
    return [n - sum(counts), *counts]


# --------------------------------------------------------------------------------------------- schemes
@dataclass(frozen=True)
class RandomSplit:
    """Random by item: e.g. ``(0.8, 0.2)`` → train/test (val carved later), ``(0.8, 0.1, 0.1)`` → all three."""

    fractions: tuple[float, ...]
    files: tuple[str, ...] = ()

    def parts(self, samples, root: Path, seed: int) -> dict[str, list[str]]:
        ids = sorted_ids(s.id for s in samples)
        perm = rng_for(seed, _STREAM_SCHEME).permutation(len(ids))
        names = ("train", "test") if len(self.fractions) == 2 else PARTS
        out, start = {}, 0
        for name, k in zip(names, _fraction_counts(len(ids), self.fractions), strict=True):
            out[name] = [ids[i] for i in perm[start : start + k]]
            start += k
        return out


@dataclass(frozen=True)
class AllTest:
    """Everything is test: evaluating a trained model on another (out-of-distribution) dataset."""

    files: tuple[str, ...] = ()

    def parts(self, samples, root: Path, seed: int) -> dict[str, list[str]]:
        return {"train": [], "val": [], "test": [s.id for s in samples]}


@dataclass(frozen=True)
class ListSplit:
    """Published id lists (relative to the dataset root); parts without a list are carved later."""

    train: str
    test: str
    val: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.train, self.val, self.test) if f)

    def parts(self, samples, root: Path, seed: int) -> dict[str, list[str]]:
        known = {s.id for s in samples}
        out = {}
        for part, rel in (("train", self.train), ("val", self.val), ("test", self.test)):
            if rel is None:
                continue
            ids = read_id_list(root / rel)
            missing = [i for i in ids if i not in known]
            if missing:
                raise DataError(
                    f"{root / rel}: {len(missing)} listed id(s) have no image/mask pair in {root} "
                    f"(first: {missing[0]!r})"
                )
            out[part] = ids
        return out


@dataclass(frozen=True)
class GroupSplit:
    """Random by group (video sequence): no group in two parts; parts sized by item count, not groups.

    Groups are shuffled, then each group goes to the part its mid-point falls into along the cumulative
    item count — close to the target fractions even when groups differ in size.
    """

    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    files: tuple[str, ...] = ()  # required list files: none (groups come with the samples)
    record_files: tuple[str, ...] = ()  # hashed into split.json when present (where the groups came from)

    def parts(self, samples, root: Path, seed: int) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for i, g in group_of(samples).items():
            groups.setdefault(g, []).append(i)
        names = sorted_ids(groups)
        if len(names) < 3:
            raise DataError(f"{root}: only {len(names)} group(s); a group split needs at least 3")
        order = [names[i] for i in rng_for(seed, _STREAM_SCHEME).permutation(len(names))]
        n = sum(len(v) for v in groups.values())
        # test first, then val, then train: the small parts get exact-ish sizes, train takes the rest
        bounds = np.cumsum([self.fractions[2], self.fractions[1], self.fractions[0]]) * n
        out: dict[str, list[str]] = {"test": [], "val": [], "train": []}
        done = 0
        for g in order:
            mid = done + len(groups[g]) / 2
            part = ("test", "val", "train")[min(int(np.searchsorted(bounds, mid, side="right")), 2)]
            out[part].extend(groups[g])
            done += len(groups[g])
        for part in ("test", "val"):  # tiny datasets: never leave a requested part empty
            if not out[part]:
                train_groups = [g for g in reversed(order) if set(groups[g]) <= set(out["train"])]
                if len(train_groups) > 1:
                    moved = set(groups[train_groups[0]])
                    out["train"] = [i for i in out["train"] if i not in moved]
                    out[part] = sorted(moved)
        return out


@dataclass(frozen=True)
class FixedGroups:
    """Official parts given by the folder a sample lives in (DRIVE's ``training/`` and ``test/``)."""

    mapping: tuple[tuple[str, str], ...]  # (group, part)
    files: tuple[str, ...] = ()

    def parts(self, samples, root: Path, seed: int) -> dict[str, list[str]]:
        m = dict(self.mapping)
        out: dict[str, list[str]] = {}
        for s in samples:
            if s.group in m:
                out.setdefault(m[s.group], []).append(s.id)
        return out


GENERIC_SPLITS = {
    "random_80_20": RandomSplit((0.8, 0.2)),
    "random_70_30": RandomSplit((0.7, 0.3)),  # paper 003: 70% train+val, 30% test
    "random_80_10_10": RandomSplit((0.8, 0.1, 0.1)),
    "all": AllTest(),
}


def group_of(samples) -> dict[str, str]:
    """id → group (video sequence); a sample without one cannot be kept whole: DataError naming its file."""
    for s in samples:
        if s.group is None:
            raise DataError(f"{s.image}: no sequence/group known for id {s.id!r}; cannot split by group")
    return {s.id: str(s.group) for s in samples}


def read_sequences_csv(path: Path) -> list[tuple[int, int, str]]:
    """``frame_start,frame_end,sequence`` rows (inclusive ranges), as shipped with CVC-ClinicDB here."""
    with open(path, newline="", encoding="utf-8") as f:
        return [(int(r["frame_start"]), int(r["frame_end"]), str(r["sequence"])) for r in csv.DictReader(f)]


# ------------------------------------------------------------------------------------------- the split
@dataclass
class Split:
    name: str
    seed: int
    dataset: str
    train: list[str]
    val: list[str]
    test: list[str]
    source: dict = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_val(self) -> int:
        return len(self.val)

    @property
    def n_test(self) -> int:
        return len(self.test)

    def _body(self) -> dict:
        return {
            "name": self.name,
            "seed": self.seed,
            "dataset": self.dataset,
            "counts": {p: len(getattr(self, p)) for p in PARTS},
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
            "source": self.source,
        }

    @property
    def sha256(self) -> str:
        canon = json.dumps(self._body(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canon.encode()).hexdigest()

    def to_dict(self) -> dict:
        return {**self._body(), "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: Mapping) -> Split:
        s = cls(
            name=d["name"],
            seed=int(d["seed"]),
            dataset=d.get("dataset", ""),
            train=list(d["train"]),
            val=list(d["val"]),
            test=list(d["test"]),
            source=dict(d.get("source", {})),
        )
        if "sha256" in d and d["sha256"] != s.sha256:
            raise DataError(f"split {d['name']!r}: sha256 does not match its content (edited by hand?)")
        return s

    def save(self, path: str | Path) -> Path:
        """Atomic: a crash never leaves a half-written split.json next to a run."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".split-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, indent=1)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def load_split(path: str | Path) -> Split:
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read split json ({type(e).__name__}: {e})") from e
    return Split.from_dict(d)


def kfold(ids, folds: int, seed: int, groups: Mapping[str, str] | None = None) -> list[dict[str, list[str]]]:
    """nnU-Net's cross-validation folds: sklearn KFold(n_splits, shuffle=True, random_state=seed) semantics
    over the sorted ids — one seeded shuffle, then contiguous chunks, the first n % k one id larger.

    With `groups` (id → group), GroupKFold semantics instead: no group in two folds, so a video sequence's
    near-duplicate frames never sit on both sides of a fold. Groups are shuffled (seeded), then, largest
    first (a stable sort, so the shuffle breaks ties), each goes to the fold with the fewest items so far —
    folds balanced by frames to within one group, and the same folds for the same seed.
    """
    ids = sorted_ids(ids)
    n = len(ids)
    if groups is not None:
        return _group_kfold(ids, folds, seed, groups)
    if folds < 2 or folds > n:
        raise ConfigError(f"dataset.folds={folds}: expected 2..{n} (the train+val part has {n} images)")
    perm = np.random.default_rng(seed).permutation(n)
    out, start = [], 0
    for k in range(folds):
        size = n // folds + (1 if k < n % folds else 0)
        held = set(perm[start : start + size].tolist())
        out.append({"train": [ids[i] for i in range(n) if i not in held],
                    "val": sorted_ids(ids[i] for i in held)})
        start += size
    return out


def _group_kfold(ids: list[str], folds: int, seed: int, groups: Mapping[str, str]) -> list[dict]:
    members: dict[str, list[str]] = {}
    for i in ids:
        members.setdefault(str(groups[i]), []).append(i)
    names = sorted_ids(members)
    if folds < 2 or folds > len(names):
        raise ConfigError(f"dataset.folds={folds}: expected 2..{len(names)} (the train+val part has "
                          f"{len(names)} groups, kept whole in one fold each)")
    shuffled = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    held: list[list[str]] = [[] for _ in range(folds)]
    for g in sorted(shuffled, key=lambda g: -len(members[g])):
        min(held, key=len).extend(members[g])
    return [{"train": [i for i in ids if i not in val], "val": sorted_ids(val)} for val in map(set, held)]


def make_split(
    dataset: str,
    scheme_name: str,
    scheme,
    samples,
    root: Path,
    seed: int,
    val_fraction: float = 0.1,
    n_train: int | None = None,
    fold: int | None = None,
    folds: int = 5,
    folds_seed: int = 12345,
    fold_groups: bool = False,
) -> Split:
    """Scheme → parts, then (if no val part) seeded val carve from train, then seeded n_train subsample.

    With `fold`, train+val are pooled and split into `folds` cross-validation folds (fixed `folds_seed`, as
    nnU-Net's 12345, so folds are the same for every run seed); fold k is the val part, the test part is
    untouched, and all folds are recorded in the split (nnU-Net's splits_final.json). With `fold_groups`
    (datasets whose groups are video sequences) the folds keep every sample group whole (`kfold`).
    """
    parts = scheme.parts(samples, root, seed)
    train = sorted_ids(parts.get("train", []))
    val = sorted_ids(parts.get("val", []))
    test = sorted_ids(parts.get("test", []))
    carved = False
    all_folds = None
    if fold is not None:
        all_folds = kfold(train + val, folds, folds_seed, groups=group_of(samples) if fold_groups else None)
        if not 0 <= fold < folds:
            raise ConfigError(f"dataset.fold={fold}: expected 0..{folds - 1} (dataset.folds={folds}) or null")
        train, val = sorted_ids(all_folds[fold]["train"]), all_folds[fold]["val"]
    elif "val" not in parts and train and val_fraction > 0:
        k = max(1, round(val_fraction * len(train))) if len(train) > 1 else 0
        perm = rng_for(seed, _STREAM_VAL).permutation(len(train))
        val = sorted_ids(train[i] for i in perm[:k])
        train = sorted_ids(train[i] for i in perm[k:])
        carved = True
    pool = len(train)
    if n_train is not None:
        if n_train > pool:
            raise ConfigError(
                f"dataset.n_train={n_train} exceeds the {pool} training images of split {scheme_name!r} "
                f"of {dataset}; valid range: 1..{pool} or null"
            )
        perm = rng_for(seed, _STREAM_NTRAIN).permutation(pool)
        train = sorted_ids(train[i] for i in perm[:n_train])
    named = {"train": train, "val": val, "test": test}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        common = set(named[a]) & set(named[b])
        if common:
            raise DataError(
                f"split {scheme_name!r} of {dataset}: {len(common)} id(s) in both {a} and {b} "
                f"(first: {sorted_ids(common)[0]!r})"
            )
    source = {
        "scheme": type(scheme).__name__,
        "files": {
            rel: sha256_file(root / rel)
            for rel in (*scheme.files, *getattr(scheme, "record_files", ()))
            if (root / rel).is_file()
        },
        "val_fraction": float(val_fraction) if carved else None,
        "val_carved_from_train": carved,
        "n_train": n_train,
        "train_pool": pool,
    }
    if all_folds is not None:
        source.update(fold=fold, folds=folds, folds_seed=folds_seed, all_folds=all_folds)
        if fold_groups:
            source["folds_by"] = "group"
    return Split(
        name=scheme_name, seed=int(seed), dataset=dataset, train=train, val=val, test=test, source=source
    )
