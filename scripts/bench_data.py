"""Section 2 of `make bench`: the data pipeline alone, out of `SegDataModule` (decode cache → augment →
collate → workers from config), cold cache vs warm cache, and the cache's size on disk.

cold = a fresh `MEDTRANSFER_CACHE_DIR`: `prepare_data` decodes every image of the dataset once (JPEG/TIFF →
uint8 at the working size), then setup + one training epoch; warm = a new DataModule on the same cache
(another job of the study: the cache key is re-hashed from the file bytes, nothing is decoded), then
`repeats` training epochs, median images/s. Every epoch builds a fresh loader iterator as Lightning does
(non-persistent workers restart each epoch, which is included).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import bench_common as bc


def dataset_cfg(name: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(bc.load_yaml("dataset", name), resolve=True)


def pick_dataset(requested: str) -> str:
    """`auto`: Kvasir-SEG when the data root holds it (../shared/data via .env), else synthetic."""
    if requested != "auto":
        return requested
    from medtransfer import settings

    root = settings.data_root(required=False)
    if root is not None and (root / "kvasir_seg" / "images").is_dir():
        return "kvasir_seg"
    return "synthetic"


def _datamodule(cfg: dict, size: int, batch: int, workers: int, augment: str):
    from omegaconf import OmegaConf

    from medtransfer.data import SegDataModule
    from medtransfer.pretrain.registry import IMAGENET_MEAN, IMAGENET_STD

    aug = OmegaConf.to_container(bc.load_yaml("augment", augment), resolve=True)
    return SegDataModule(cfg, image_size=size, augment=aug, batch_size=batch, num_workers=workers, seed=0,
                         mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))


def _epoch(dm) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for b in dm.train_dataloader():
        n += len(b["image"])
    return n, time.perf_counter() - t0


def bench_pipeline(dataset: str, size: int, batch: int, workers: int, cache_dir: Path, augment: str = "standard",
                   repeats: int = 3, log=print) -> dict:
    """Cold (fresh cache dir) then warm; `cache_dir` must be a bench-owned folder (it is pointed at)."""
    from medtransfer.data import cache as cache_mod

    os.environ["MEDTRANSFER_CACHE_DIR"] = str(cache_dir)
    cfg = dataset_cfg(dataset)
    log(f"[bench] pipeline {dataset} {size}px batch {batch} augment={augment} workers={workers}")
    with bc.PeakMemory("cpu") as mem:
        dm = _datamodule(cfg, size, batch, workers, augment)
        n_total = len(dm.samples())  # listing (and, for synthetic, generation) is not decoding: outside timing
        existed = any((Path(cache_dir) / "decoded").glob(f"{dm.name}-{size}-*")) if (
            Path(cache_dir) / "decoded").is_dir() else False
        t0 = time.perf_counter()
        dm.prepare_data()
        build_s = time.perf_counter() - t0
        dm.setup("fit")
        setup_s = time.perf_counter() - t0 - build_s
        n_cold, epoch_s = _epoch(dm)
        cold_s = time.perf_counter() - t0
        log(f"[bench]   cold: decode {n_total} images {build_s:.1f} s, first epoch {n_cold} images "
            f"{cold_s:.1f} s in all = {n_cold / cold_s:.1f} img/s")

        t1 = time.perf_counter()
        dm2 = _datamodule(cfg, size, batch, workers, augment)
        dm2.prepare_data()
        dm2.setup("fit")
        warm_setup_s = time.perf_counter() - t1
        warm = []
        for r in range(repeats):
            n, s = _epoch(dm2)
            warm.append(n / s)
            log(f"[bench]   warm epoch {r + 1}: {n} images {s:.2f} s = {n / s:.1f} img/s")
        entry = cache_mod.entry_dir(dm.name, size, cache_mod.cache_key(dm.name, size, dm.samples(), dm.decode))
    return {
        "dataset": dataset, "image_size": size, "batch_size": batch, "augment": augment, "num_workers": workers,
        "n_images": n_total, "n_train": n_cold, "cache_was_warm": existed,
        "cache_build_s": bc.rnd(build_s), "decode_images_per_s": bc.rnd(n_total / build_s) if build_s else None,
        "cold_setup_s": bc.rnd(setup_s), "cold_first_epoch_s": bc.rnd(epoch_s),
        "cold_images_per_s": bc.rnd(n_cold / cold_s),
        "warm_setup_s": bc.rnd(warm_setup_s),
        "warm_images_per_s": bc.rnd(bc.median(warm)), "warm_repeats_images_per_s": [bc.rnd(x) for x in warm],
        "cache_bytes": bc.dir_bytes(entry) if entry.is_dir() else None,
        "cache_entry": entry.name, "peak_rss_mb": mem.rss_mb,
    }


def realistic_surface_s(dataset: str, size: int, cache_dir: Path, split_part: str = "test") -> dict:
    """`surface_metrics` timed on the test masks at native resolution against a plausible prediction (the mask
    dilated by 2 % of its size and shifted): what the surface metrics cost for a model that finds the polyp.
    """
    import cv2
    import numpy as np

    from medtransfer.data import cache as cache_mod
    from medtransfer.metrics import surface_metrics

    os.environ["MEDTRANSFER_CACHE_DIR"] = str(cache_dir)
    dm = _datamodule(dataset_cfg(dataset), size, 8, 0, "none")
    dec = cache_mod.load_or_build(dm.name, size, dm.samples())
    ids = getattr(dm.split, split_part)
    pairs = []
    for i in ids:
        t = dec.native_mask(dec.row[i]).astype(bool)
        k = max(3, int(0.02 * max(t.shape)) | 1)
        p = cv2.dilate(t.astype(np.uint8), np.ones((k, k), np.uint8))
        p = np.roll(p, k // 2, axis=1).astype(bool)
        pairs.append((p, t))
    surface_metrics(*pairs[0])  # MONAI import outside the timing
    t0 = time.perf_counter()
    for p, t in pairs:
        surface_metrics(p, t)
    s = time.perf_counter() - t0
    return {"n_images": len(pairs), "surface_s": bc.rnd(s), "surface_ms_per_image": bc.rnd(1000 * s / len(pairs), 2),
            "mean_pixels": int(np.mean([t.size for _, t in pairs]))}
