"""Decode one image or mask file into a plain uint8 array — the only place that knows file formats.

Why a module of its own: the datasets we use break the obvious readers in different ways, and every
quirk must be handled once, here, with a one-line `DataError` naming the file:

* CVC-ClinicDB frame TIFFs carry ``PhotometricInterpretation=MinIsBlack`` with 3 samples: Pillow refuses
  them and OpenCV silently returns one grey channel. ``tifffile`` returns the true RGB array, so every
  ``.tif/.tiff`` goes through tifffile (DRIVE's RGB TIFFs too).
* 16-bit images (TIFF, and 16-bit greyscale PNGs, which Pillow opens as ``I;16`` and would clip to white
  when converted) are scaled to 8 bits by their dtype's range, never clipped.
* DRIVE's manual annotations and FOV masks are palette/bilevel GIFs: Pillow's ``convert("L")`` handles them.

Masks are read by what their values mean (`mask_from_values`), because the encodings in the wild differ
and a wrong guess is silent — 0/1 masks thresholded at 127 used to become empty targets, and a run scored
Dice 0.0 without a warning. RGB masks are first converted to grey (ITU-R 601 luma, as Pillow's "L"); then
the dataset's ``mask_foreground`` policy decides:

* ``binary`` (default): 0/1 masks (1 is foreground); 0/255 masks (0/65535 at 16 bits) thresholded at half
  range. Lossy-compression noise is tolerated when it stays near the two levels: Kvasir-SEG's RGB JPEG
  masks hold 0–8 / 247–255, some CVC-ClinicDB masks a few greys such as 11 or 17, and both decode exactly
  as "grey > 127". Anything else — a label map (0/1/2), another foreground value (0/100), many mid-range
  greys — is ambiguous and a `DataError` naming the file and the values found, before any training.
* ``nonzero``: every nonzero value is foreground (label maps whose labels are all the object).
* a list of values, e.g. ``[2]``: exactly those values are foreground, every other one background.

JPEG images are decoded in full by default: the decode cache decodes each file once, so the exactness costs
one cache build. ``draft_size`` (the dataset option ``jpeg_draft``) permits Pillow's reduced-scale DCT decode
instead — several times faster on Kvasir's 1920-px frames, but the inputs differ from a full decode + resize
(3.8 grey levels on average at 64 px). Masks are always decoded at full resolution because test metrics use
the native mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medtransfer.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
MASK_POLICIES = ("binary", "nonzero")  # or a list of foreground values
# "binary" masks: values within 1/8 of the range of 0 or of full scale (0-31 / 224-255 at 8 bits) are noise
# around the two levels; at most this fraction of pixels may lie in between (anti-aliased edges;
# CVC-ClinicDB's worst mask: 0.04 %; a JPEG mask at quality 75: 0.02 %)
MAX_MID_FRACTION = 0.01

# ITU-R 601-2 luma, the same weights Pillow's convert("L") uses, so TIFF and non-TIFF masks agree.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_PIL_16BIT = ("I;16", "I;16B", "I;16L", "I;16N")  # Pillow's convert() would clip these to 0..255


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    arr = tifffile.imread(path)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) TIFFs
    return arr


def _read_pil(path: Path, mode: str, draft_size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """In `mode`, except 16-bit greyscale: its raw uint16 values, for the caller to scale or read."""
    from PIL import Image

    with Image.open(path) as im:
        native_hw = (im.size[1], im.size[0])
        if im.mode in _PIL_16BIT:
            return np.asarray(im).astype(np.uint16), native_hw
        if draft_size and im.format == "JPEG":
            # DCT-domain downscale to the smallest power-of-two reduction still >= draft_size on both sides.
            im.draft("RGB", (draft_size, draft_size))
        return np.asarray(im.convert(mode)), native_hw


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit or float files exist in the wild; scale them into uint8 by their range, never wrap or clip."""
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


def _to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] >= 4:
        return arr[..., :3]
    return arr


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
            arr = _read_tiff(path)
            native_hw = arr.shape[:2]
        else:
            arr, native_hw = _read_pil(path, "RGB", draft_size)
        arr = _to_rgb(_to_uint8(arr))
    except Exception as e:
        raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {_one_line(e)})") from e
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise DataError(f"{path}: cannot decode image (unexpected array shape {arr.shape})")
    return np.ascontiguousarray(arr), (int(native_hw[0]), int(native_hw[1]))


def _read_grey(path: Path) -> np.ndarray:
    """The mask's values as one grey channel; integers keep their bit depth (a 16-bit label 2 stays 2)."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return _read_pil(path, "L")[0]
    arr = _read_tiff(path)
    if arr.dtype == bool or np.issubdtype(arr.dtype, np.floating):
        arr = _to_uint8(arr)
    if arr.ndim == 3:
        grey = arr[..., 0] if arr.shape[2] == 1 else (arr[..., :3].astype(np.float32) @ _LUMA).round()
        arr = grey.astype(arr.dtype)
    return arr


def read_mask(path: str | Path, foreground: str | list[int] = "binary") -> np.ndarray:
    """Binary uint8 (H, W) in {0, 1}: grey values read by the `foreground` policy (see module docstring)."""
    path = Path(path)
    try:
        arr = _read_grey(path)
    except Exception as e:
        raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {_one_line(e)})") from e
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise DataError(f"{path}: cannot decode image (mask has shape {arr.shape}, expected H x W)")
    return mask_from_values(arr, foreground, path)


def mask_from_values(values: np.ndarray, foreground: str | list[int], path: str | Path) -> np.ndarray:
    """{0, 1} uint8 from a grey mask under a ``mask_foreground`` policy: binary, nonzero or a value list."""
    if foreground == "binary":
        fg = _binary(values, path)
    elif foreground == "nonzero":
        fg = values != 0
    else:
        fg = np.isin(values, [int(v) for v in foreground])
    return fg.astype(np.uint8)


def _binary(g: np.ndarray, path: str | Path) -> np.ndarray:
    top = np.iinfo(g.dtype).max
    lo, hi = int(g.min()), int(g.max())
    if lo >= 0 and hi <= 1:
        return g == 1
    band = (top + 1) // 8
    if lo >= 0 and hi > top - band and ((g >= band) & (g <= top - band)).mean() <= MAX_MID_FRACTION:
        return g > top // 2
    u = np.unique(g).tolist()
    found = ", ".join(map(str, u[:6])) + (f", ... {u[-1]} ({len(u)} values)" if len(u) > 6 else "")
    raise DataError(
        f"{path}: mask values {found} are ambiguous (neither 0/1 nor 0/{top}, up to compression noise); "
        f"set dataset.mask_foreground to nonzero or to the list of foreground values, e.g. [{u[-1]}]"
    )


def check_same_size(image_path: Path, image_hw: tuple[int, int], mask_path: Path, mask_hw: tuple[int, int]):
    """A mask that does not cover its image exactly is a labelling error, never something to resize away."""
    if tuple(image_hw) != tuple(mask_hw):
        raise DataError(
            f"{mask_path}: mask size {mask_hw[1]}x{mask_hw[0]} (WxH) differs from its image {image_path} "
            f"size {image_hw[1]}x{image_hw[0]}"
        )


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200] or "no detail"
