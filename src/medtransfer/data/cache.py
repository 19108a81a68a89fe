"""Decode once: every image and mask of a dataset, at the working resolution, in a memory-mapped cache.

Why: JPEG/TIFF decoding and resizing of large frames dominates a small model's epoch on CPU, and every job
of a sweep would repeat it. Instead each (dataset files, size) pair is decoded once into
``cache_dir/decoded/<dataset>-<size>-<key16>/``, a folder of ``.npy`` files that ``np.load(mmap_mode="r")``
maps without reading — DataLoader workers share the pages and augmentation runs on uint8 arrays.

Layout of one entry (N samples, working size S):

* ``images.npy`` uint8 (N, S, S, 3); ``masks.npy`` uint8 (N, S, S) in {0, 1}; ``fov.npy`` likewise (DRIVE)
* ``fov_native_bits.npy`` / ``fov_native_offsets.npy`` (DRIVE): the field-of-view masks at native
  resolution, packed like the masks below, so test metrics can be counted inside the FOV
* ``native_bits.npy`` uint8, every native-resolution mask bit-packed (``np.packbits``, row-major) and
  concatenated; ``native_offsets.npy`` int64 (N + 1) byte offsets; ``native_shapes.npy`` int32 (N, 2) —
  test metrics are computed at the original mask resolution, and packing keeps Kvasir's native masks
  at ~40 MB instead of ~320 MB.
* ``meta.json`` — ids in row order, key, sizes; written last, and the entry becomes visible only by an
  atomic directory rename, so a crashed or concurrent build never leaves a half entry behind.

The key is a sha256 over (format version, dataset name, size, `DecodeOptions`, and for every sample its id,
file names and the sha256 of each file's bytes): changing, adding or removing any file, or how files are
decoded, makes a new entry. Hashing reads bytes but decodes nothing, so a second setup decodes no image.
``CACHE_VERSION`` is bumped whenever decoding itself changes, so entries of older code are never reused.

Resizing: images with INTER_AREA when shrinking (INTER_LINEAR when enlarging), masks binarised first (readers)
and resized with INTER_NEAREST, so they stay in {0, 1}.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from medtransfer import settings
from medtransfer.data import readers
from medtransfer.errors import DataError
from medtransfer.files import publish_dir
from medtransfer.hashing import sha256_file

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: native-resolution FOV masks; 3: exact JPEG decode, masks read by value (readers)


@dataclass(frozen=True)
class DecodeOptions:
    """The dataset options that change decoded arrays (``dataset.jpeg_draft``, ``dataset.mask_foreground``);
    part of the cache key. FOV masks are always read as ``binary``: the policy is for the targets."""

    jpeg_draft: bool = False
    mask_foreground: str | tuple[int, ...] = "binary"

    @classmethod
    def from_cfg(cls, cfg) -> DecodeOptions:
        fg = cfg.get("mask_foreground") or "binary"
        return cls(bool(cfg.get("jpeg_draft")), fg if isinstance(fg, str) else tuple(int(v) for v in fg))

    def key(self) -> dict:
        fg = self.mask_foreground
        return {"jpeg_draft": self.jpeg_draft, "mask_foreground": fg if isinstance(fg, str) else sorted(fg)}


@dataclass
class Decoded:
    """Arrays for N samples (memory-mapped when loaded from the cache); row i is ``ids[i]``."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray
    native_bits: np.ndarray
    native_offsets: np.ndarray
    native_shapes: np.ndarray
    fov: np.ndarray | None = None
    path: Path | None = None
    fov_native_bits: np.ndarray | None = None
    fov_native_offsets: np.ndarray | None = None

    def __post_init__(self):
        self.row = {i: k for k, i in enumerate(self.ids)}

    def __getstate__(self):
        # spawn-started DataLoader workers pickle the dataset: send the cache path, not gigabytes of arrays
        if self.path is not None:
            return {"path": self.path}
        return self.__dict__

    def __setstate__(self, state):
        self.__dict__.update(load(state["path"]).__dict__ if set(state) == {"path"} else state)

    def _unpack(self, bits: np.ndarray, offsets: np.ndarray, k: int) -> np.ndarray:
        h, w = (int(x) for x in self.native_shapes[k])
        return np.unpackbits(bits[offsets[k] : offsets[k + 1]], count=h * w).reshape(h, w)

    def native_mask(self, k: int) -> np.ndarray:
        return self._unpack(self.native_bits, self.native_offsets, k)

    def native_fov(self, k: int) -> np.ndarray | None:
        """The field-of-view mask at the native mask resolution (same shape as ``native_mask``), or None."""
        if self.fov_native_bits is None:
            return None
        return self._unpack(self.fov_native_bits, self.fov_native_offsets, k)


# ------------------------------------------------------------------------------------------------ keys
def cache_key(dataset: str, size: int, samples: Sequence, options: DecodeOptions = DecodeOptions(),
              threads: int | None = None) -> str:
    files = [p for s in samples for p in (s.image, s.mask, s.fov) if p is not None]
    with ThreadPoolExecutor(threads or _threads()) as ex:
        digests = dict(zip(files, ex.map(sha256_file, files), strict=True))
    h = hashlib.sha256()
    head = {"v": CACHE_VERSION, "dataset": dataset, "size": int(size), "decode": options.key()}
    h.update(json.dumps(head, sort_keys=True).encode())
    for s in samples:
        rec = [s.id] + [f"{p.name}:{digests[p]}" if p is not None else "-" for p in (s.image, s.mask, s.fov)]
        h.update(("\n" + "|".join(rec)).encode())
    return h.hexdigest()


def entry_dir(dataset: str, size: int, key: str) -> Path:
    return settings.cache_dir() / "decoded" / f"{dataset}-{int(size)}-{key[:16]}"


# ---------------------------------------------------------------------------------------------- decode
def _threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _resize(arr: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    h, w = arr.shape[:2]
    if (h, w) == (size, size):
        return arr
    if nearest:
        interp = cv2.INTER_NEAREST
    else:
        interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    return cv2.resize(arr, (size, size), interpolation=interp)


def decode_sample(sample, size: int, options: DecodeOptions = DecodeOptions()):
    """(image S×S×3, mask S×S, packed native mask, native (H, W), fov S×S or None, packed native fov or
    None) for one sample."""
    img, img_hw = readers.decode_image(sample.image, draft_size=size if options.jpeg_draft else None)
    mask = readers.read_mask(sample.mask, options.mask_foreground)
    readers.check_same_size(sample.image, img_hw, sample.mask, mask.shape)
    fov = fov_bits = None
    if sample.fov is not None:
        fov_native = readers.read_mask(sample.fov)
        readers.check_same_size(sample.image, img_hw, sample.fov, fov_native.shape)
        fov, fov_bits = _resize(fov_native, size, nearest=True), np.packbits(fov_native.reshape(-1))
    return (
        _resize(img, size, nearest=False),
        _resize(mask, size, nearest=True),
        np.packbits(mask.reshape(-1)),
        mask.shape,
        fov,
        fov_bits,
    )


def _decode_into(samples, size: int, images, masks, fov, options: DecodeOptions):
    """Fill the given arrays row by row (threads: Pillow and OpenCV release the GIL); first error wins.
    Returns the packed native masks, their shapes and the packed native FOV masks (None without FOV)."""
    packed, shapes = [None] * len(samples), [None] * len(samples)
    fov_packed = [None] * len(samples) if fov is not None else None
    with ThreadPoolExecutor(_threads()) as ex:
        decoded = ex.map(lambda s: decode_sample(s, size, options), samples)
        for k, (im, m, bits, hw, fv, fv_bits) in enumerate(decoded):
            images[k], masks[k], packed[k], shapes[k] = im, m, bits, hw
            if fov is not None:
                if fv is None:
                    raise DataError(f"{samples[k].image}: no field-of-view mask, unlike the other images")
                fov[k], fov_packed[k] = fv, fv_bits
    return packed, shapes, fov_packed


def decode_in_memory(samples, size: int, options: DecodeOptions = DecodeOptions()) -> Decoded:
    """cache=False path: the same decoding, held in RAM for this process only."""
    n, has_fov = len(samples), any(s.fov is not None for s in samples)
    images = np.empty((n, size, size, 3), np.uint8)
    masks = np.empty((n, size, size), np.uint8)
    fov = np.empty((n, size, size), np.uint8) if has_fov else None
    packed, shapes, fov_packed = _decode_into(samples, size, images, masks, fov, options)
    bits, offsets = _concat(packed)
    fov_bits, fov_offsets = _concat(fov_packed) if fov_packed is not None else (None, None)
    return Decoded([s.id for s in samples], images, masks, bits, offsets, np.asarray(shapes, np.int32), fov,
                   None, fov_bits, fov_offsets)


def _concat(packed: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(packed) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in packed])
    bits = np.concatenate(packed) if packed else np.zeros(0, np.uint8)
    return bits, offsets


# ----------------------------------------------------------------------------------------------- cache
def load(path: Path) -> Decoded:
    meta = json.loads((path / "meta.json").read_text())
    mm = {
        n: np.load(path / f"{n}.npy", mmap_mode="r")
        for n in ("images", "masks", "native_bits", "native_offsets", "native_shapes")
    }
    has_fov = meta.get("has_fov")
    fov, fov_bits, fov_offsets = (
        (np.load(path / f"{n}.npy", mmap_mode="r") for n in ("fov", "fov_native_bits", "fov_native_offsets"))
        if has_fov else (None, None, None))
    return Decoded(
        list(meta["ids"]),
        mm["images"],
        mm["masks"],
        mm["native_bits"],
        mm["native_offsets"],
        mm["native_shapes"],
        fov,
        path,
        fov_bits,
        fov_offsets,
    )


def load_or_build(dataset: str, size: int, samples: Sequence,
                  options: DecodeOptions = DecodeOptions()) -> Decoded:
    """The cache entry for these exact files, size and decode options, building it (atomically) if absent."""
    key = cache_key(dataset, size, samples, options)
    path = entry_dir(dataset, size, key)
    if (path / "meta.json").is_file():
        return load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, has_fov = len(samples), any(s.fov is not None for s in samples)
    t0 = time.perf_counter()
    log.info("decoding %d %s images at %dx%d into %s", n, dataset, size, size, path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        fmt = np.lib.format
        images = fmt.open_memmap(tmp / "images.npy", "w+", np.uint8, (n, size, size, 3))
        masks = fmt.open_memmap(tmp / "masks.npy", "w+", np.uint8, (n, size, size))
        fov = fmt.open_memmap(tmp / "fov.npy", "w+", np.uint8, (n, size, size)) if has_fov else None
        packed, shapes, fov_packed = _decode_into(samples, size, images, masks, fov, options)
        for a in (images, masks, fov):
            if a is not None:
                a.flush()
        del images, masks, fov
        bits, offsets = _concat(packed)
        np.save(tmp / "native_bits.npy", bits)
        np.save(tmp / "native_offsets.npy", offsets)
        np.save(tmp / "native_shapes.npy", np.asarray(shapes, np.int32).reshape(n, 2))
        if fov_packed is not None:
            fov_bits, fov_offsets = _concat(fov_packed)
            np.save(tmp / "fov_native_bits.npy", fov_bits)
            np.save(tmp / "fov_native_offsets.npy", fov_offsets)
        meta = {
            "version": CACHE_VERSION,
            "dataset": dataset,
            "size": int(size),
            "key": key,
            "decode": options.key(),
            "n": n,
            "has_fov": has_fov,
            "ids": [s.id for s in samples],
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        publish_dir(tmp, path)  # a concurrent job may have published the same entry first: theirs is kept
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("decoded %d images in %.1f s", n, time.perf_counter() - t0)
    return load(path)
