"""Classification items and batches: rows of decoded uint8 images → normalised (B, 3, H, W) tensors, the
evaluation views (centre crop, ten-crop) and the training targets of uncertain labels.

Why evaluation views are plain numpy slicing and not albumentations: they are deterministic, run once per
image per epoch on the cached arrays, and their exact geometry is part of the protocol being reproduced
(the JLiangLab benchmark: val = Resize(256) + CenterCrop(224), test = Resize(256) + TenCrop(224), with the
offsets of torchvision's ``center_crop`` and ``five_crop``).

Why uncertain labels are resolved here, per row and split part, rather than in the table: the policy
(``dataset.uncertain``) is about *training* targets. Validation and test entries that are uncertain are
always left out (target -1: `MaskedBCEWithLogits` skips them, `ClsMetrics` drops them per label), because
a metric must not score guesses; CheXpert's official validation set (our test) has no uncertain labels.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import Dataset

from medtransfer.errors import ConfigError, choices_msg

UNCERTAIN_POLICIES = ("ignore", "zeros", "ones", "soft")
SOFT_RANGE = (0.55, 0.85)  # the benchmark's (after Pham et al.'s label smoothing for CheXpert): U(0.55, 0.85)
IGNORE = -1.0  # MaskedBCEWithLogits' ignore_value and ClsMetrics' IGNORE


# ----------------------------------------------------------------------------------------- eval views
def _offset(n: int, size: int) -> int:
    return round((n - size) / 2.0)  # torchvision's center_crop


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    t, left = _offset(img.shape[0], size), _offset(img.shape[1], size)
    return img[t:t + size, left:left + size]


def _five(img: np.ndarray, size: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    return [img[:size, :size], img[:size, w - size:], img[h - size:, :size], img[h - size:, w - size:],
            centre_crop(img, size)]


def ten_crop(img: np.ndarray, size: int) -> np.ndarray:
    """torchvision's TenCrop(size): five_crop (top-left, top-right, bottom-left, bottom-right, centre) of the
    image, then five_crop of the horizontally flipped image; (10, S, S[, 3])."""
    return np.stack([*_five(img, size), *_five(img[:, ::-1], size)])


class EvalView:
    """An evaluation crop to `size`: "centre" (one image) or "ten" (`ten_crop`: an item of ten crops, which
    the collate stacks as (B, 10, 3, S, S) and the module averages). A class, not a lambda: DataLoader
    workers may pickle it."""

    def __init__(self, kind: str, size: int):
        if kind not in ("centre", "ten"):
            raise ValueError(f"unknown evaluation view {kind!r}; valid choices: centre, ten")
        self.kind, self.size, self.crops = kind, int(size), 10 if kind == "ten" else 1

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return ten_crop(img, self.size) if self.kind == "ten" else centre_crop(img, self.size)


# ------------------------------------------------------------------------------------------- targets
def check_policy(policy) -> str:
    if policy not in UNCERTAIN_POLICIES:
        raise ConfigError(choices_msg("dataset.uncertain", policy, UNCERTAIN_POLICIES))
    return policy


def soft_values(image_id: str, width: int) -> np.ndarray:
    """The benchmark's soft labels for one image, U(0.55, 0.85) per label; seeded by the image's id, so an
    image keeps its values across runs, seeds, splits and subsets."""
    seed = int.from_bytes(hashlib.blake2b(image_id.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).uniform(*SOFT_RANGE, size=width)


def training_targets(labels: np.ndarray, uncertain: np.ndarray | None, train_rows: np.ndarray,
                     ids: list[str], policy: str) -> np.ndarray:
    """float32 (N, L) targets: labels as they are; uncertain entries -1 (ignored) outside the training rows
    and, in them, by `policy`: ignore → -1, zeros → 0, ones → 1, soft → `soft_values`."""
    out = labels.astype(np.float32)
    if uncertain is None:
        return out
    out[uncertain] = IGNORE
    if policy == "ignore":
        return out
    rows = np.zeros(len(out), bool)
    rows[train_rows] = True
    mask = uncertain & rows[:, None]
    if policy in ("zeros", "ones"):
        out[mask] = 0.0 if policy == "zeros" else 1.0
    else:
        for r in np.flatnonzero(mask.any(axis=1)):
            out[r, mask[r]] = soft_values(ids[r], out.shape[1])[mask[r]]
    return out


# ------------------------------------------------------------------------------------- items, batches
class ClsDataset(Dataset):
    """Rows of the decoded uint8 images (in memory or a memory-mapped cache). Training rows go through the
    augmentation ops (`transform`, image only); evaluation rows through a deterministic `view` (crops)."""

    def __init__(self, images: np.ndarray, targets: torch.Tensor, rows: list[int], ids: list[str], transform,
                 view: EvalView | None = None):
        self.images, self.targets, self.transform, self.view = images, targets, transform, view
        self.rows, self.ids = np.asarray(rows, dtype=np.int64), list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> dict:
        r = int(self.rows[k])
        img = self.images[r]
        if self.transform is not None:
            if img.ndim == 2:  # colour ops need three channels (grey stays grey: they are equal)
                img = np.repeat(img[:, :, None], 3, axis=2)
            img = self.transform(image=np.ascontiguousarray(img))["image"]
        elif self.view is not None:
            img = self.view(img)
            if self.view.crops > 1:
                return {"image": img, "label": self.targets[r], "id": self.ids[k], "crops": self.view.crops}
        return {"image": img, "label": self.targets[r], "id": self.ids[k]}


class NormaliseCollate:
    """Stacks a batch and normalises it in one tensor op, not per item: uint8 (H, W) or (H, W, 3) arrays →
    float32 (B, 3, H, W) with (x / 255 - mean) / std; grey broadcasts to three channels (the encoders are
    RGB-pretrained); ten-crop items (10, H, W[, 3]) → (B, 10, 3, H, W); labels stacked; ids a list. The
    images are stacked by numpy: torch.stack's parallel copy stalled for up to a second per batch on a busy
    2-core machine, numpy's takes milliseconds."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.scale = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.shift = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0

    def __call__(self, items: list[dict]) -> dict:
        x = torch.from_numpy(np.stack([it["image"] for it in items]))
        crops = items[0].get("crops")
        if crops is not None:
            x = x.flatten(0, 1)
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        image = torch.empty((x.shape[0], 3, *x.shape[2:]), dtype=torch.float32)
        image.copy_(x).sub_(self.shift).div_(self.scale)  # copy_ broadcasts grey; in place: 2.5x faster
        if crops is not None:
            image = image.view(len(items), crops, *image.shape[1:])
        labels = torch.stack([it["label"] for it in items])
        return {"image": image, "label": labels, "id": [it["id"] for it in items]}
