"""Procedural polyp-like images: an offline dataset that a tiny U-Net can actually learn in a minute.

Why: demos, smoke runs and tests must train a real model without any downloaded data, and a model that
learns *something* tells us the whole pipeline (files → cache → augment → loss → metrics) is wired right.
The task is made learnable but not trivial: smooth, lobed blobs that are shaded and textured differently
from a textured, vignetted pinkish mucosa background, with some colour variation between images, so a
colour threshold alone does not solve it but a few conv layers do.

Generation is deterministic in (n_images, native_size, data_seed, GENERATOR_VERSION) and written once as
PNG into ``cache_dir/synthetic/<params-hash>/{images,masks}``; after that it is read like any folder
dataset (and decoded into the cache like any other). Bump GENERATOR_VERSION whenever the pictures change.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

GENERATOR_VERSION = 1


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: random grid upsampled (cubic) — cheap 'tissue' texture."""
    g = max(2, size // scale)
    small = rng.standard_normal((g, g)).astype(np.float32)
    big = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    return big / (np.abs(big).max() + 1e-6)


def _blob_mask(rng: np.random.Generator, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """A lobed ellipse: radius modulated by a few low harmonics, so shapes are smooth but not circles."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    ax = rng.uniform(0.7, 1.0)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(ang) + dy * np.sin(ang)) / ax
    v = -dx * np.sin(ang) + dy * np.cos(ang)
    theta = np.arctan2(v, u)
    rad = np.ones_like(theta)
    for k in (2, 3, 5):
        rad += rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.sqrt(u**2 + v**2) <= r * rad


def make_pair(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, uint8 mask in {0, 255}) pair."""
    # background: pink-red mucosa, texture + vignette, per-image colour shift
    base = np.array([200, 110, 105], np.float32) + rng.uniform(-25, 25, 3).astype(np.float32)
    tex = _smooth_noise(rng, size, 8)[..., None] * 22 + _smooth_noise(rng, size, 3)[..., None] * 8
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy, xx = gy / (size - 1) - 0.5, gx / (size - 1) - 0.5
    vignette = 1.0 - 0.9 * (xx**2 + yy**2)
    img = (base + tex) * vignette[..., None]

    mask = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 3))):  # 1–2 polyps, never empty (keeps Dice well defined)
        r = rng.uniform(0.10, 0.24) * size
        cx, cy = rng.uniform(r, size - r, 2)
        m = _blob_mask(rng, size, cx, cy, r)
        if (m & mask).any() and mask.any():
            continue
        # polyp: lighter/yellower dome with a shading gradient, fine texture and a specular highlight
        col = np.array([225, 150, 120], np.float32) + rng.uniform(-20, 20, 3).astype(np.float32)
        d = np.sqrt((gx - cx) ** 2 + (gy - cy) ** 2) / r
        shade = np.clip(1.15 - 0.45 * d, 0.6, 1.15)[..., None]
        fine = _smooth_noise(rng, size, 2)[..., None] * 12
        polyp = col * shade + fine
        hx, hy = cx - 0.3 * r, cy - 0.3 * r
        spec = np.exp(-((gx - hx) ** 2 + (gy - hy) ** 2) / (2 * (0.12 * r) ** 2))[..., None] * 90
        soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigmaX=max(0.8, size / 160))[..., None]
        img = img * (1 - soft) + (polyp + spec) * soft
        mask |= m
    img = img + rng.normal(0, 3, img.shape).astype(np.float32)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


def generate(root: Path, cfg: Mapping) -> Path:
    """Write the dataset into ``root`` once (atomic directory rename); a complete root is left alone."""
    from PIL import Image

    from medtransfer.data.datasets import synthetic_params

    root = Path(root)
    if (root / "params.json").is_file():
        return root
    params = synthetic_params(cfg)
    n, size = params["n_images"], params["native_size"]
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        width = max(3, len(str(n - 1)))
        for i in range(n):
            rng = np.random.default_rng([params["data_seed"], i])  # per image: n_images only appends
            img, mask = make_pair(rng, size)
            name = f"syn{i:0{width}d}.png"
            Image.fromarray(img).save(tmp / "images" / name)
            Image.fromarray(mask).save(tmp / "masks" / name)
        (tmp / "params.json").write_text(json.dumps({**params, "version": GENERATOR_VERSION}, indent=1))
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first: theirs is identical
            if not (root / "params.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
