"""Decode one image or mask file into a plain uint8 array — the only place that knows file formats.

Why a module of its own: the datasets we use break the obvious readers in different ways, and every
quirk must be handled once, here, with a one-line `DataError` naming the file:

* CVC-ClinicDB frame TIFFs carry ``PhotometricInterpretation=MinIsBlack`` with 3 samples: Pillow refuses
  them and OpenCV silently returns one grey channel. ``tifffile`` returns the true RGB array, so every
  ``.tif/.tiff`` goes through tifffile (DRIVE's RGB TIFFs too).
* Kvasir-SEG masks are RGB JPEGs with compression noise (values 0–8 / 247–255), some ClinicDB masks hold
  a few grey values: masks are converted to grey and thresholded at 127 (``> 127`` is foreground).
* DRIVE's manual annotations and FOV masks are palette/bilevel GIFs: Pillow's ``convert("L")`` handles them.

Images may be decoded at reduced scale (JPEG DCT scaling via Pillow's ``draft``) when the caller only needs
a small working resolution — it is several times faster on Kvasir's 1920-px frames and still anti-aliased;
masks are always decoded at full resolution because test metrics use the native mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medtransfer.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
MASK_THRESHOLD = 127  # grey value; strictly greater is foreground

# ITU-R 601-2 luma, the same weights Pillow's convert("L") uses, so TIFF and non-TIFF masks agree.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    arr = tifffile.imread(path)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) TIFFs
    return arr


def _read_pil(path: Path, mode: str, draft_size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    from PIL import Image

    with Image.open(path) as im:
        native_hw = (im.size[1], im.size[0])
        if draft_size and im.format == "JPEG":
            # DCT-domain downscale to the smallest power-of-two reduction still >= draft_size on both sides.
            im.draft("RGB", (draft_size, draft_size))
        return np.asarray(im.convert(mode)), native_hw


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit or float TIFFs exist in the wild; scale them into uint8 rather than wrapping around."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        return (arr.astype(np.float64) * (255.0 / np.iinfo(arr.dtype).max)).round().astype(np.uint8)
    a = arr.astype(np.float64)
    if a.max(initial=0.0) <= 1.0:
        a = a * 255.0
    return np.clip(a, 0, 255).round().astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) at full resolution."""
    return decode_image(path)[0]


def decode_image(path: str | Path, draft_size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB uint8 (h, w, 3) and the file's native (H, W).

    ``draft_size`` permits a reduced-scale JPEG decode of at least that size on both sides, so the
    returned array may be smaller than native; the native size is what mask checks must compare with.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = _to_uint8(_read_tiff(path))
            native_hw = arr.shape[:2]
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=2)
            elif arr.ndim == 3 and arr.shape[2] == 1:
                arr = np.repeat(arr, 3, axis=2)
            elif arr.ndim == 3 and arr.shape[2] >= 4:
                arr = arr[..., :3]
        else:
            arr, native_hw = _read_pil(path, "RGB", draft_size)
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {_one_line(e)})") from e
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise DataError(f"{path}: cannot decode image (unexpected array shape {arr.shape})")
    return np.ascontiguousarray(arr), (int(native_hw[0]), int(native_hw[1]))


def read_mask(path: str | Path) -> np.ndarray:
    """Binary uint8 (H, W) in {0, 1}: grey conversion then ``> 127`` (see module docstring)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = _to_uint8(_read_tiff(path))
            if arr.ndim == 3:
                if arr.shape[2] == 1:
                    arr = arr[..., 0]
                else:
                    arr = (arr[..., :3].astype(np.float32) @ _LUMA).round().astype(np.uint8)
        else:
            arr = _read_pil(path, "L")[0]
    except Exception as e:
        raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {_one_line(e)})") from e
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise DataError(f"{path}: cannot decode image (mask has shape {arr.shape}, expected H x W)")
    return (arr > MASK_THRESHOLD).astype(np.uint8)


def image_size_of(path: str | Path) -> tuple[int, int]:
    """(H, W) from the header only — for size checks without a full decode."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                shape = tf.pages[0].shape
            if len(shape) == 3 and shape[0] in (3, 4) and shape[-1] not in (3, 4):
                shape = shape[1:]
            return int(shape[0]), int(shape[1])
        from PIL import Image

        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception as e:
        raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {_one_line(e)})") from e


def check_same_size(image_path: Path, image_hw: tuple[int, int], mask_path: Path, mask_hw: tuple[int, int]):
    """A mask that does not cover its image exactly is a labelling error, never something to resize away."""
    if tuple(image_hw) != tuple(mask_hw):
        raise DataError(
            f"{mask_path}: mask size {mask_hw[1]}x{mask_hw[0]} (WxH) differs from its image {image_path} "
            f"size {image_hw[1]}x{image_hw[0]}"
        )


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200] or "no detail"
