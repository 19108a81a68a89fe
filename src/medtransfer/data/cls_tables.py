"""Folder classification datasets: every one becomes a table of rows (`FileFacts`: image file, labels,
official part, patient), read by a per-dataset parser, then decoded once into a memory-mapped cache.

Why a table per dataset: ChestX-ray14, CheXpert, Shenzhen, a class-per-folder tree and a labels.csv differ
only in how their labels and parts are written down; once they are rows, the DataModule, the split
procedure and split.json are the ones MedMNIST uses (`classification.ClsDataModule`). A parser reads the
tables and lists the folders — no image is decoded — so validation (every job of a sweep) stays cheap, and
it is memoised per (root, options, modification times of the tables and folders). Every problem a table
can have (a missing column, a label that is not 0/1, an image listed but absent) is a one-line DataError
naming the file and row.

Why a cache of its own (``cache_dir/decoded_cls/``) rather than `data/cache.py`'s: that key hashes every
file's bytes, minutes for ChestX-ray14's 112k PNGs at each setup; this one is keyed by each file's identity
(relative path, size, modification time), the working size and the colour mode. An entry is one
``images.npy`` uint8 (N, S, S) grey or (N, S, S, 3) RGB in row order plus meta.json, published by an
atomic rename like `cache.py`'s. Images are resized to S × S (aspect not kept, as the benchmark's
Resize((256, 256))) with INTER_AREA when shrinking, INTER_LINEAR when enlarging.

``dataset.root``: null → ``$MEDTRANSFER_DATA_ROOT/<folder>`` (the registered place, no fingerprint), else
the given folder (the run's condition gets ``data=<hex>`` from it and its tables' contents).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from medtransfer import settings
from medtransfer.data import readers
from medtransfer.data.classification import check_facts, locate_input
from medtransfer.data.cls_batches import check_policy
from medtransfer.data.cls_facts import FileFacts, Official
from medtransfer.data.config import CLS_DEFAULTS
from medtransfer.data.datasets import DATASETS, add_spec
from medtransfer.data.splits import GENERIC_SPLITS, GroupSplit
from medtransfer.errors import ConfigError, DataError, choices_msg
from medtransfer.files import publish_dir
from medtransfer.hashing import sha256_file

log = logging.getLogger(__name__)

CACHE_VERSION = 1
COLORS = ("grey", "rgb")
TABLE_DEFAULTS = {"root": None, "color": "rgb", "uncertain": "ignore"}


@dataclass(frozen=True)
class TableSpec:
    """A folder dataset: ``parse(root, cfg) -> FileFacts`` plus the facts validation and the config need."""

    name: str
    parse: Callable[[Path, Mapping], FileFacts]
    folder: str | None  # under $MEDTRANSFER_DATA_ROOT; None: dataset.root is required
    expected: str  # the layout, for error messages
    label_kind: str | None = None
    labels: tuple[str, ...] | None = None
    official: bool = True  # the data declares parts ("official" split)
    fallback: tuple[float, float, float] | None = None  # official without declared parts: random fractions
    splits: Mapping[str, object] = field(default_factory=dict)
    default_split: str = "official"
    color: str = "rgb"
    uncertain: str = "ignore"  # the default policy for uncertain labels (CheXpert: the benchmark's soft)
    tables: tuple[str, ...] = ()  # files under root whose contents identify the data (fingerprint)
    urls: tuple[str, ...] = ()
    description: str = ""
    task: str = "classification"

    @property
    def all_splits(self) -> dict[str, object]:
        grouped = {"patient_80_10_10": GroupSplit((0.8, 0.1, 0.1))}  # rows without patients: DataError
        official = {"official": Official(fallback=self.fallback)} if self.official else {}
        return {**GENERIC_SPLITS, **grouped, **official, **self.splits}

    @property
    def defaults(self) -> dict:
        base = {k: v for k, v in CLS_DEFAULTS.items() if k != "file"}
        labels = list(self.labels) if self.labels is not None else None
        return {**base, **TABLE_DEFAULTS, "color": self.color, "uncertain": self.uncertain,
                "label_kind": self.label_kind, "labels": labels}

    def root(self, cfg: Mapping) -> Path:
        """``dataset.root``, else the registered folder; missing: a ConfigError saying where."""
        if cfg.get("file"):
            raise ConfigError(f"dataset.file={cfg['file']!r}: {self.name} is a folder dataset "
                              f"({self.expected}); pass dataset.root=PATH instead")
        return locate_input(self.name, "root", cfg.get("root"), self.folder, self.expected, self.urls,
                            required=f"dataset.root is required for dataset {self.name!r}: a folder with "
                                     f"{self.expected}")

    def facts(self, cfg: Mapping) -> FileFacts:
        root = self.root(cfg)
        keys = ("labels", "image_column", "split_column", "group_column", "table", "views")
        options = json.dumps({k: cfg.get(k) for k in keys}, sort_keys=True, default=str)
        return _parse(self.name, root, options, _stamp(root))

    def validate(self, cfg: Mapping) -> None:
        """Tables read and checked, every listed image present; no image decoded."""
        if cfg.get("color") not in COLORS:
            raise ConfigError(choices_msg("dataset.color", cfg.get("color"), COLORS))
        check_policy(cfg.get("uncertain"))
        facts = self.facts(cfg)
        check_facts(self.name, cfg, facts)
        if cfg["split"] == "patient_80_10_10" and facts.groups is None:
            others = ", ".join(sorted(set(self.all_splits) - {"patient_80_10_10"}))
            hint = "; set dataset.group_column" if self.name == "csv" else ""
            raise ConfigError(f"dataset.split=patient_80_10_10: {self.name} at {facts.path} has no patient "
                              f"ids{hint}; valid choices: {others}")

    def decode(self, facts: FileFacts, cfg: Mapping, size: int) -> np.ndarray:
        return load_or_decode(self.name, facts, size, str(cfg.get("color") or self.color))

    def record(self, facts: FileFacts) -> dict:
        """What split.json records of the data: the folder's name and a sha256 of the rows (ids, labels,
        parts, patients), so a split file is refused on other data."""
        h = hashlib.sha256()
        for i, row in enumerate(facts.ids):
            group = facts.groups[i] if facts.groups is not None else ""
            unc = facts.uncertain[i].tobytes() if facts.uncertain is not None else b""
            h.update(f"{row}|{facts.parts[i]}|{group}|".encode() + facts.labels[i].tobytes() + unc + b"\n")
        return {"name": facts.path.name, "sha256": h.hexdigest()}

    def fingerprint_parts(self, cfg: Mapping) -> dict:
        """For `config.data_fingerprint`: a user-given root (not the registered place) and its tables'
        contents (or, for a dataset without tables, its file names and sizes)."""
        if not cfg.get("root"):
            return {}
        root = Path(str(cfg["root"])).expanduser().resolve()
        base = settings.data_root(required=False)
        if self.folder is not None and base is not None and root == (base / self.folder).resolve():
            return {}
        tables = [root / str(cfg.get("table") or t) for t in self.tables]
        listing = [] if tables else sorted((os.path.relpath(os.path.join(d, n), root),
                                            os.path.getsize(os.path.join(d, n)))
                                           for d, _, names in os.walk(root) for n in names)
        return {"root": str(root), "tables": {t.name: _digest(t) for t in tables}, "files": listing}


def register_table(name: str, **facts) -> TableSpec:
    spec = TableSpec(name=name, **facts)
    add_spec(spec)
    return spec


def _digest(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError:
        return f"unreadable:{path}"  # validation names the missing file; the identity still differs


def _stamp(root: Path) -> tuple:
    """Modification times of the root and of everything directly under it (tables, image folders): a
    changed table or an added/removed image there re-reads the table."""
    st = [(".", root.stat().st_mtime_ns)]
    for e in sorted(os.scandir(root), key=lambda e: e.name):
        st.append((e.name, e.stat().st_mtime_ns, e.stat().st_size if e.is_file() else -1))
    return tuple(st)


@lru_cache(maxsize=4)  # a CheXpert table is ~100 MB of rows
def _parse(name: str, root: Path, options: str, stamp: tuple) -> FileFacts:
    return DATASETS[name].parse(root, json.loads(options))


# --------------------------------------------------------------------------------------- table helpers
def read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[dict]]:
    """(columns, rows) of a CSV with a header; a missing file or required column: DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        rows = list(reader)
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; columns: {', '.join(columns) or '(none)'}")
    return columns, rows


def label_value(value: str | None, path: Path, row: int, column: str, uncertain: bool = False) -> int:
    """0 or 1 (1.0 and 0.0 too); with `uncertain`, empty → 0 and -1 → -1. Anything else: a DataError
    naming the file, row (1 = the header) and column."""
    v = (value or "").strip()
    if uncertain and v == "":
        return 0
    try:
        x = float(v)
    except ValueError:
        x = None
    allowed = (0, 1, -1) if uncertain else (0, 1)
    if x not in allowed:
        valid = "1, 0, -1 (uncertain) or empty (negative)" if uncertain else "0 or 1"
        raise DataError(f"{path}: row {row}, column {column!r}: label {v!r} is not {valid}")
    return int(x)


def select_labels(cfg: Mapping, available: list[str], path: Path,
                  default: tuple[str, ...] | None) -> list[str]:
    """``dataset.labels`` (which label columns, in that order) or the default (null: all); each must exist."""
    names = cfg.get("labels")
    if names is None:
        names = default if default is not None else available
    names = [str(n) for n in names]
    for n in names:
        if n not in available:
            raise ConfigError(f"dataset.labels: {n!r} is not a label of {path}; valid choices: "
                              f"{', '.join(available)}")
    if not names:
        raise DataError(f"{path}: no label columns")
    return names


def existing(folder: Path) -> set[str]:
    """File names in a folder (one listing, no per-file stat)."""
    return set(os.listdir(folder)) if folder.is_dir() else set()


# ------------------------------------------------------------------------------------------------ cache
def _threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def decode_one(path: Path, size: int, color: str) -> np.ndarray:
    """One image at size × size, grey (S, S) or RGB (S, S, 3) uint8; a bad file: DataError naming it."""
    img, _ = readers.decode_image(path)
    if color == "grey":
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    h, w = img.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img


def cache_key(name: str, facts: FileFacts, size: int, color: str) -> str:
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "dataset": name, "size": int(size), "color": color},
                                  sort_keys=True).encode())
    root = facts.path
    for p in facts.images:
        try:
            st = os.stat(p)
        except OSError as e:
            raise DataError(f"{p}: listed by {name} but not readable ({type(e).__name__})") from e
        h.update(f"\n{os.path.relpath(p, root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def load_or_decode(name: str, facts: FileFacts, size: int, color: str) -> np.ndarray:
    """The cached (N, S, S[, 3]) uint8 memmap for these files, size and colour mode, decoding it once."""
    key = cache_key(name, facts, size, color)
    path = settings.cache_dir() / "decoded_cls" / f"{name}-{int(size)}-{color}-{key[:16]}"
    if (path / "meta.json").is_file():
        return np.load(path / "images.npy", mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    n = len(facts.images)
    log.info("decoding %d %s images at %dx%d (%s) into %s", n, name, size, size, color, path)
    try:
        shape = (n, size, size) if color == "grey" else (n, size, size, 3)
        out = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, shape)
        with ThreadPoolExecutor(_threads()) as ex:  # Pillow and OpenCV release the GIL
            for k, img in enumerate(ex.map(lambda p: decode_one(p, size, color), facts.images)):
                out[k] = img
        out.flush()
        del out
        (tmp / "meta.json").write_text(json.dumps({"version": CACHE_VERSION, "dataset": name, "size": size,
                                                   "color": color, "key": key, "n": n}))
        publish_dir(tmp, path)  # a concurrent job may have published the same entry first: theirs is kept
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return np.load(path / "images.npy", mmap_mode="r")
