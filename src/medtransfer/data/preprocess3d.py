"""3D preprocessing as data, applied once per case into a cache, and its inverse for predictions.

Why this shape:

* `Preprocessing` is a frozen record (orientation, target spacing, intensity scheme) and `Resolved` its
  concrete values for one dataset (``spacing: median`` → numbers; ``nnunet_ct`` → foreground statistics of
  the training cases). The resolved record is in every cache key and in the split record, so two runs
  that preprocess differently never share decoded arrays and a run says exactly what it trained on.
* The operations are MONAI's, on MetaTensors that carry the affine: `Orientation` (to RAS, as NIfTI
  world coordinates are), `Spacing` (trilinear for images, nearest for labels, ``scale_extent=True`` so the
  field of view is kept and 3 mm → 1.5 mm doubles the axis, nnU-Net's ``round(shape × old / new)``),
  `ScaleIntensityRange` and `NormalizeIntensity`. Intensities are normalised before resampling, on the
  original voxels (nnU-Net's order): statistics see real voxels, not interpolated ones.
* ``spacing: median`` is nnU-Net v2's fullres target: the per-axis median over every case of the dataset
  (headers only), except that a strongly anisotropic axis (median > 3× the others', and fewer than a third
  as many voxels) takes the 10th percentile. ``nnunet_ct`` clips to the 0.5/99.5 percentiles of foreground
  voxels and z-scores with their mean/std (per channel), sampled like nnU-Net (10⁸ voxels over the cases,
  seed 1234) from the *training* cases only — the statistics must not see test labels.
* Each case is cached on its own (``cache_dir/volumes/<dataset>/<case>-<key16>/``: ``image.npy`` float32
  (C, X, Y, Z), ``label.npy`` uint8/int16 (1, X, Y, Z), ``meta.json`` with the original shape, spacing
  and affine and the preprocessed affine), keyed by the sha256 of its files and the resolved
  preprocessing; a directory rename publishes it, so a crash or a concurrent job never leaves half an
  entry. Splits and ``n_train`` subsets of one dataset share the entries; arrays are memory-mapped.
* `to_original` puts a label map (or probabilities) back onto the case's original grid — the recorded
  affines describe the whole mapping (reorientation + resampling), so one MONAI `SpatialResample` inverts it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from medtransfer import settings
from medtransfer.data.volumes import Case, Header, VolumeSource, read_case, read_label, spacing_of
from medtransfer.errors import ConfigError
from medtransfer.files import publish_dir, write_json
from medtransfer.hashing import sha256_file

INTENSITY = ("none", "ct_window", "mr_std", "zscore", "zscore_nonzero", "nnunet_ct")
CACHE_VERSION = 1
ANISOTROPY = 3.0  # nnU-Net's anisotropy_threshold
FG_SAMPLES_TOTAL = 10**8  # nnU-Net's num_foreground_voxels_for_intensitystats (10e7)
FG_SEED = 1234


@dataclass(frozen=True)
class Preprocessing:
    """What to do to every case: ``orientation`` axis codes (null: keep the file's), ``spacing`` (null: keep,
    ``median``, or 3 numbers in mm), ``intensity`` (one of INTENSITY), ``window`` (HU range of ct_window)."""

    orientation: str | None = "RAS"
    spacing: tuple[float, float, float] | str | None = None
    intensity: str = "zscore"
    window: tuple[float, float] = (-1000.0, 1000.0)

    @classmethod
    def from_cfg(cls, cfg: Mapping | None) -> Preprocessing:
        """From ``dataset.preprocessing`` (a mapping), checked: one-line ConfigError per bad option."""
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"orientation", "spacing", "intensity", "window"})
        if unknown:
            raise ConfigError(f"dataset.preprocessing.{unknown[0]}: unknown option; valid choices: "
                              "intensity, orientation, spacing, window")
        o = cfg.get("orientation", "RAS")
        if o is not None and (not isinstance(o, str) or len(o) != 3
                              or sorted(o.upper().translate(str.maketrans("LPI", "RAS"))) != list("ARS")):
            raise ConfigError(f"dataset.preprocessing.orientation={o!r}: expected 3 axis codes, one of L/R, "
                              "P/A, I/S each (e.g. RAS), or null")
        sp = cfg.get("spacing")
        if sp is not None and sp != "median":
            numbers = isinstance(sp, (list, tuple)) and len(sp) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in sp)
            if not numbers:
                raise ConfigError(f"dataset.preprocessing.spacing={sp!r}: expected null, median or 3 "
                                  "positive numbers in mm (e.g. [1.0, 1.0, 1.0])")
            sp = tuple(float(x) for x in sp)
        intensity = cfg.get("intensity", "zscore")
        if intensity not in INTENSITY:
            raise ConfigError(f"dataset.preprocessing.intensity={intensity!r}; valid choices: "
                              f"{', '.join(INTENSITY)}")
        w = cfg.get("window", (-1000.0, 1000.0))
        if (not isinstance(w, (list, tuple)) or len(w) != 2 or not all(isinstance(x, (int, float)) for x in w)
                or not w[0] < w[1]):
            raise ConfigError(f"dataset.preprocessing.window={w!r}: expected [low, high] with low < high")
        return cls(o.upper() if o else None, sp, intensity, (float(w[0]), float(w[1])))


@dataclass(frozen=True)
class Resolved:
    """A `Preprocessing` with its dataset-dependent values filled in; ``key()`` is the cache key part."""

    prep: Preprocessing
    target_spacing: tuple[float, float, float] | None
    ct_stats: tuple[tuple[float, float, float, float], ...] | None = None  # per channel (lo, hi, mean, std)

    def key(self) -> dict:
        return {**asdict(self), "v": CACHE_VERSION}


# ---------------------------------------------------------------------------------------------- resolve
def oriented(header: Header, axcodes: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(spacing, shape) of a case after reorientation to `axcodes` (from its header alone)."""
    spacing, shape = header.spacing, np.asarray(header.shape, np.float64)
    if axcodes is None:
        return spacing, shape
    import nibabel as nib

    ornt = nib.orientations.ornt_transform(nib.io_orientation(header.affine),
                                           nib.orientations.axcodes2ornt(axcodes))
    out_sp, out_sh = np.empty(3), np.empty(3)
    for i, (j, _) in enumerate(ornt):
        out_sp[int(j)], out_sh[int(j)] = spacing[i], shape[i]
    return out_sp, out_sh


def median_spacing(headers: Sequence[Header], axcodes: str | None) -> tuple[float, float, float]:
    """nnU-Net v2's fullres target spacing (module docstring), over the given cases' headers."""
    pairs = [oriented(h, axcodes) for h in headers]
    spacings, shapes = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    target, size = np.percentile(spacings, 50, axis=0), np.percentile(shapes, 50, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(3) if i != worst]
    if (target[worst] > ANISOTROPY * max(target[others])
            and size[worst] * ANISOTROPY < min(size[others])):
        t = float(np.percentile(spacings[:, worst], 10))
        if t < max(target[others]):
            t = max(max(target[others]), t) + 1e-5
        target[worst] = t
    return tuple(float(x) for x in target)


def foreground_stats(cases: Sequence[Case], source: VolumeSource) -> tuple[tuple[float, ...], ...]:
    """Per channel (0.5 %, 99.5 % percentile, mean, std) of foreground voxels (label > 0), nnU-Net-sampled."""
    rng = np.random.default_rng(FG_SEED)
    per_case = max(1, FG_SAMPLES_TOTAL // max(1, len(cases)))
    samples: list[list[np.ndarray]] = [[] for _ in source.channels]
    for case in cases:
        image, _, _ = read_case(case, source)
        fg = read_label(case, source.label_values)[0][0] > 0
        for c in range(image.shape[0]):
            v = image[c][fg]
            if v.size:
                samples[c].append(rng.choice(v, per_case, replace=True) if v.size > per_case else v)
    out = []
    for c, parts in enumerate(samples):
        if not parts:
            raise ConfigError(f"dataset.preprocessing.intensity=nnunet_ct: no foreground voxels in the "
                              f"training cases of {source.root} (channel {c}); choose ct_window or zscore")
        v = np.concatenate(parts).astype(np.float64)
        lo, hi = np.percentile(v, [0.5, 99.5])
        out.append((float(lo), float(hi), float(v.mean()), float(v.std())))
    return tuple(out)


def resolve(prep: Preprocessing, source: VolumeSource, headers: Mapping[str, Header],
            train_ids: Sequence[str], dataset: str) -> Resolved:
    """Fill in ``median`` (over all cases' headers) and the nnunet_ct statistics (training cases; cached)."""
    spacing = prep.spacing
    if spacing == "median":
        spacing = median_spacing(list(headers.values()), prep.orientation)
    stats = None
    if prep.intensity == "nnunet_ct":
        cases = [source.case(i) for i in train_ids]
        key = hashlib.sha256(json.dumps([file_key(c) for c in cases]).encode()).hexdigest()
        path = settings.cache_dir() / "volumes" / dataset / f"ctstats-{key[:16]}.json"
        if path.is_file():
            stats = tuple(tuple(s) for s in json.loads(path.read_text())["stats"])
        else:
            stats = foreground_stats(cases, source)
            write_json(path, {"cases": [c.id for c in cases], "stats": stats})
    return Resolved(prep, spacing, stats)


# ---------------------------------------------------------------------------------------------- apply
def normalise(image: torch.Tensor, resolved: Resolved) -> torch.Tensor:
    """The intensity scheme on a (C, X, Y, Z) float tensor (MONAI transforms, per channel)."""
    from monai.transforms import NormalizeIntensity, ScaleIntensityRange

    scheme, n = resolved.prep.intensity, image.shape[0]
    if scheme == "ct_window":
        lo, hi = resolved.prep.window
        return ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(image)
    if scheme == "mr_std":  # paper 003: "dividing each image by the standard deviation" (no centring)
        return NormalizeIntensity(subtrahend=[0.0] * n, channel_wise=True)(image)
    if scheme in ("zscore", "zscore_nonzero"):
        return NormalizeIntensity(nonzero=scheme == "zscore_nonzero", channel_wise=True)(image)
    if scheme == "nnunet_ct":
        lo, hi, mean, std = (torch.tensor(v, dtype=image.dtype).view(-1, 1, 1, 1)
                             for v in zip(*resolved.ct_stats, strict=True))
        return (torch.clamp(image, lo, hi) - mean) / torch.clamp(std, min=1e-8)
    return image


def preprocess(image: np.ndarray, label: np.ndarray, affine: np.ndarray,
               resolved: Resolved) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32, label int16, affine) on the preprocessed grid: orientation → intensity → spacing."""
    from monai.data import MetaTensor
    from monai.transforms import Orientation, Spacing

    aff = torch.as_tensor(affine, dtype=torch.float64)
    img = MetaTensor(torch.as_tensor(image, dtype=torch.float32), affine=aff)
    lab = MetaTensor(torch.as_tensor(label.astype(np.float32)), affine=aff.clone())
    prep = resolved.prep
    if prep.orientation:
        orient = Orientation(axcodes=prep.orientation, labels=None)
        img, lab = orient(img), orient(lab)
    normalised = normalise(img.as_tensor().clone(), resolved)  # MONAI may return a MetaTensor: keep its data
    img = MetaTensor(getattr(normalised, "as_tensor", lambda: normalised)(), affine=img.affine)
    if resolved.target_spacing is not None:
        img = Spacing(pixdim=resolved.target_spacing, mode="bilinear", scale_extent=True)(img)
        lab = Spacing(pixdim=resolved.target_spacing, mode="nearest", scale_extent=True)(lab)
    new_affine = img.affine.numpy().astype(np.float64)
    return (np.ascontiguousarray(img.as_tensor().numpy(), dtype=np.float32),
            np.ascontiguousarray(np.rint(lab.as_tensor().numpy())).astype(np.int16), new_affine)


def to_original(volume: np.ndarray | torch.Tensor, meta: Mapping, mode: str = "nearest") -> np.ndarray:
    """A (X', Y', Z') label map or (C, X', Y', Z') probabilities on the preprocessed grid → the case's
    original grid (``meta``: a case's `CaseEntry.meta`); ``nearest`` for labels (int64), ``bilinear`` for
    probabilities (float32)."""
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    v = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume).float()
    squeeze = v.ndim == 3
    v = v[None] if squeeze else v
    src = MetaTensor(v, affine=torch.as_tensor(np.asarray(meta["affine"]), dtype=torch.float64))
    out = SpatialResample(mode=mode)(src, dst_affine=torch.as_tensor(np.asarray(meta["orig_affine"])),
                                     spatial_size=tuple(meta["orig_shape"]))
    out = out.as_tensor().numpy()
    out = out[0] if squeeze else out
    return np.rint(out).astype(np.int64) if mode == "nearest" else out


# ---------------------------------------------------------------------------------------------- cache
@cache
def _digest(path: str, mtime_ns: int, size: int) -> str:
    """sha256 of a file, once per process per version of the file (resolve and each cache lookup ask)."""
    return sha256_file(path)


def file_key(case: Case) -> list[str]:
    """The case's id and each file's name and sha256: what its cache entry is keyed by."""
    out = [case.id]
    for p in case.files:
        st = p.stat()
        out.append(f"{p.name}:{_digest(str(p), st.st_mtime_ns, st.st_size)}")
    return out


def case_key(case: Case, resolved: Resolved) -> str:
    body = {"files": file_key(case), "prep": resolved.key()}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class CaseEntry:
    """One cached case: memory-mapped arrays and its geometry record (``meta``)."""

    id: str
    image: np.ndarray  # (C, X, Y, Z) float32
    label: np.ndarray  # (1, X, Y, Z) uint8 or int16
    meta: dict  # orig_shape, orig_spacing, orig_affine, shape, spacing, affine, key, files
    path: Path

    def __getstate__(self):
        # spawn-started DataLoader workers and DDP processes pickle datasets: send the path, not the voxels
        return {"path": self.path}

    def __setstate__(self, state):
        self.__dict__.update(_load_entry(state["path"]).__dict__)


def _load_entry(path: Path) -> CaseEntry:
    meta = json.loads((path / "meta.json").read_text())
    return CaseEntry(meta["id"], np.load(path / "image.npy", mmap_mode="r"),
                     np.load(path / "label.npy", mmap_mode="r"), meta, path)


def load_or_build(case: Case, source: VolumeSource, resolved: Resolved, dataset: str) -> CaseEntry:
    """The cache entry of this case under this preprocessing, decoding it (once, atomically) if absent; a
    label value not declared by the dataset is a DataError naming the label file (`volumes.read_label`)."""
    key = case_key(case, resolved)
    path = settings.cache_dir() / "volumes" / dataset / f"{case.id}-{key[:16]}"
    if (path / "meta.json").is_file():
        return _load_entry(path)
    image, spacing, affine = read_case(case, source)
    label, _, _ = read_label(case, source.label_values)
    out_img, out_lab, out_aff = preprocess(image, label, affine, resolved)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        np.save(tmp / "image.npy", out_img)
        np.save(tmp / "label.npy", out_lab.astype(np.uint8) if out_lab.max(initial=0) < 256 else out_lab)
        meta = {"id": case.id, "key": key, "files": file_key(case), "preprocessing": resolved.key(),
                "orig_shape": list(image.shape[1:]), "orig_spacing": spacing.tolist(),
                "orig_affine": affine.tolist(), "shape": list(out_img.shape[1:]),
                "spacing": spacing_of(out_aff).tolist(), "affine": out_aff.tolist()}
        (tmp / "meta.json").write_text(json.dumps(meta))
        publish_dir(tmp, path)  # a concurrent job may have published the same entry first: theirs is kept
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _load_entry(path)


def load_or_build_all(cases: Sequence[Case], source: VolumeSource, resolved: Resolved,
                      dataset: str) -> dict[str, CaseEntry]:
    """`load_or_build` for many cases on a few threads (gzip inflation and MONAI's resampling release the
    GIL); the first error wins."""
    threads = max(1, min(8, os.cpu_count() or 1, len(cases)))
    with ThreadPoolExecutor(threads) as ex:
        entries = list(ex.map(lambda c: load_or_build(c, source, resolved, dataset), cases))
    return {e.id: e for e in entries}
