"""Training augmentations by name, as in the papers we compare against; val/test get none.

Why names and not free-form pipelines: augmentation is an experimental factor (`augment=none,flip,...`),
so each choice must mean one fixed, documented thing whose parameters live in ``conf/augment/<name>.yaml``:

* ``none``     — nothing (linear-probe and "pure transfer" baselines).
* ``flip``     — horizontal + vertical flips (orientation is arbitrary in endoscopy and fundus images).
* ``standard`` — flips + colour jitter, in the spirit of MMSeg's PhotoMetricDistortion used by the
  transfer-learning baselines (paper 000).
* ``hflip_jitter`` — paper 000's words: "randomly flip the image with a ratio of 0.5" (horizontal only) and
  "brightness, contrast, and saturation jitter" (no hue), with MMSeg PhotoMetricDistortion's ranges.
* ``flip_rot90_noise`` — paper 003: "flip, rotation by integer multiples of π/2, and addition of random
  Gaussian noise".
* ``rotate_noise_jitter_flips`` — paper 004's fundus (VFS) recipe: "random rotation, Gaussian noise, color
  jittering, and horizontal, vertical and diagonal flips" (the diagonal flip is a transpose).
* ``strong``   — the SSL4GIE recipe (its ``Binary_segmentation/Data``): colour jitter (brightness 0.4,
  contrast 0.5, saturation 0.25, hue 0.01), Gaussian blur (25 px kernel, sigma 0.001–2), flips and an
  affine (rotation ±180°, translation ±1/8, scale 0.5–1.5, x-shear ±22.5°).

Every pipeline ends in Normalize(mean, std) on the 0–1 scale and a CHW float tensor. Pipelines run on the
cached uint8 arrays at working resolution, so they never resize; a training ``crop`` (``train_crop``: MMSeg's
RandomCrop after its resize, paper 000) comes first, as in MMSeg's train pipeline, without MMSeg's
``cat_max_ratio`` re-draws. Geometric transforms apply to the mask
(and the DRIVE FOV) with nearest interpolation and zero fill, keeping masks in {0, 1}.

Randomness: albumentations 2.x seeds each transform from a seed *independently with the same value* when
``set_random_seed`` is used (so h- and v-flip would be drawn identically); `reseed` instead shares one
generator across the pipeline, and the DataModule calls it per DataLoader worker.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

import albumentations as A
import cv2
import numpy as np
from albumentations.pytorch import ToTensorV2

from medtransfer.errors import ConfigError, choices_msg

AUGMENTS: dict[str, Callable[..., list]] = {}


def register_augment(name: str):
    def deco(fn):
        AUGMENTS[name] = fn
        return fn

    return deco


@register_augment("none")
def _none() -> list:
    return []


@register_augment("flip")
def _flip(p_hflip: float = 0.5, p_vflip: float = 0.5) -> list:
    return [A.HorizontalFlip(p=p_hflip), A.VerticalFlip(p=p_vflip)]


@register_augment("standard")
def _standard(
    p_hflip: float = 0.5,
    p_vflip: float = 0.5,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.05,
    p_color: float = 0.8,
) -> list:
    return [
        *_flip(p_hflip, p_vflip),
        A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=p_color),
    ]


@register_augment("hflip_jitter")
def _hflip_jitter(p_hflip: float = 0.5, brightness: float = 0.125, contrast: float = 0.5,
                  saturation: float = 0.5, p_color: float = 0.5) -> list:
    """MMSeg PhotoMetricDistortion: brightness ±32/255, contrast and saturation × 0.5–1.5, each at p 0.5
    (one ColorJitter here, applied with p_color); its hue step is left out, as in the paper's text."""
    return [A.HorizontalFlip(p=p_hflip),
            A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=0.0, p=p_color)]


def _noise(noise_std: float, p_noise: float) -> A.GaussNoise:
    # std as a fraction of the pixel range (albumentations 2.x); drawn uniformly in [0, noise_std]
    return A.GaussNoise(std_range=(0.0, float(noise_std)), mean_range=(0.0, 0.0), per_channel=True, p=p_noise)


@register_augment("flip_rot90_noise")
def _flip_rot90_noise(p_hflip: float = 0.5, p_vflip: float = 0.5, p_rot90: float = 0.5, noise_std: float = 0.05,
                      p_noise: float = 0.5) -> list:
    """The paper states the kinds, not the probabilities or the noise level: ours, in conf/augment."""
    return [*_flip(p_hflip, p_vflip), A.RandomRotate90(p=p_rot90), _noise(noise_std, p_noise)]


@register_augment("rotate_noise_jitter_flips")
def _rotate_noise_jitter_flips(rotate: float = 45.0, p_rotate: float = 0.5, noise_std: float = 0.05,
                               p_noise: float = 0.5, brightness: float = 0.2, contrast: float = 0.2,
                               saturation: float = 0.2, hue: float = 0.05, p_color: float = 0.5,
                               p_hflip: float = 0.5, p_vflip: float = 0.5, p_transpose: float = 0.5) -> list:
    """Paper 004 names the operations only: angles, noise level and probabilities are ours (conf/augment)."""
    return [
        A.Rotate(limit=(-rotate, rotate), interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                 border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=p_rotate),
        _noise(noise_std, p_noise),
        A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=p_color),
        *_flip(p_hflip, p_vflip),
        A.Transpose(p=p_transpose),
    ]


@register_augment("strong")
def _strong(
    p_hflip: float = 0.5,
    p_vflip: float = 0.5,
    rotate: float = 180.0,
    translate: float = 0.125,
    scale: Sequence[float] = (0.5, 1.5),
    shear: Sequence[float] = (-22.5, 22.5),
    p_affine: float = 1.0,
    blur_limit: Sequence[int] = (25, 25),
    blur_sigma: Sequence[float] = (0.001, 2.0),
    p_blur: float = 1.0,
    brightness: float = 0.4,
    contrast: float = 0.5,
    saturation: float = 0.25,
    hue: float = 0.01,
    p_color: float = 1.0,
) -> list:
    """Defaults follow SSL4GIE's segmentation loader: colour jitter and blur always, then flips and an
    always-on affine (rotation ±180°, translation ±1/8 of the side, scale 0.5–1.5, x-shear ±22.5°)."""
    return [
        A.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue, p=p_color),
        A.GaussianBlur(blur_limit=tuple(blur_limit), sigma_limit=tuple(blur_sigma), p=p_blur),
        *_flip(p_hflip, p_vflip),
        A.Affine(
            rotate=(-rotate, rotate),
            translate_percent=(-translate, translate),
            scale=tuple(scale),
            shear={"x": tuple(shear), "y": (0.0, 0.0)},
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=0,
            p=p_affine,
        ),
    ]


def parse_augment(augment: str | Mapping) -> tuple[str, dict]:
    """``"flip"`` or a mapping ``{name: flip, p_hflip: 0.5, ...}`` (conf/augment/*.yaml) → (name, params)."""
    if isinstance(augment, str):
        name, params = augment, {}
    elif isinstance(augment, Mapping):
        params = {str(k): v for k, v in augment.items()}
        name = params.pop("name", None)
    else:
        raise ConfigError(f"augment must be a name or a mapping with 'name', got {type(augment).__name__}")
    if name not in AUGMENTS:
        raise ConfigError(choices_msg("augment", name, AUGMENTS))
    import inspect

    allowed = set(inspect.signature(AUGMENTS[name]).parameters)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown augment.{unknown[0]} for augment {name!r}; valid keys: "
            f"{', '.join(sorted(allowed)) or '(none)'}"
        )
    return name, params


def check_mean_std(
    mean: Sequence[float], std: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = tuple(float(x) for x in mean), tuple(float(x) for x in std)
    if len(mean) != 3 or len(std) != 3:
        raise ConfigError(f"mean/std need 3 values (RGB), got mean={mean} std={std}")
    if any(m > 1.0 or m < 0 for m in mean) or any(s > 1.0 or s <= 0 for s in std):
        raise ConfigError(
            f"mean/std are on the 0-1 scale (e.g. ImageNet 0.485,0.456,0.406 / 0.229,0.224,0.225), "
            f"got mean={mean} std={std}"
        )
    return mean, std


def build_transform(
    augment: str | Mapping,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    with_fov: bool = False,
    seed: int = 0,
    crop: int | None = None,
) -> A.Compose:
    """The full per-sample pipeline; ``train=False`` ignores ``augment`` and ``crop`` (evaluation is never
    augmented and sees the whole frame)."""
    name, params = parse_augment(augment)
    mean, std = check_mean_std(mean, std)
    ops = AUGMENTS[name](**params) if train else []
    if train and crop:
        ops = [A.RandomCrop(height=int(crop), width=int(crop), p=1.0), *ops]
    t = A.Compose(
        [*ops, A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()],
        additional_targets={"fov": "mask"} if with_fov else None,
    )
    reseed(t, seed)
    return t


def reseed(transform: A.Compose, seed: int) -> None:
    """One shared generator for the whole pipeline (see module docstring)."""
    seed = int(seed) % (2**32)
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


@register_augment("cls_benchmark")
def _cls_benchmark(size: int | None = None, scale: Sequence[float] = (0.08, 1.0),
                   ratio: Sequence[float] = (0.75, 4 / 3), p_hflip: float = 0.5, rotate: float = 7.0) -> list:
    """The JLiangLab transfer-learning benchmark's training transform (torchvision there): RandomResizedCrop
    to the working size (scale 0.08–1, ratio 3/4–4/3, bilinear), RandomHorizontalFlip, RandomRotation(7)
    (torchvision's default nearest interpolation, zero fill). Its crop resizes, so it needs the working
    size, which the classification DataModule passes as `size`; its evaluation half (``test_resize``,
    ``ten_crop``: `EVAL_OPTIONS`) lives beside it in conf/augment/cls_benchmark.yaml."""
    if size is None:
        raise ConfigError("augment=cls_benchmark is a classification preset (its random resized crop is made "
                          "to image_size by the classification DataModule); for segmentation choose e.g. "
                          "augment=flip")
    return [
        A.RandomResizedCrop(size=(int(size), int(size)), scale=tuple(scale), ratio=tuple(ratio),
                            interpolation=cv2.INTER_LINEAR, p=1.0),
        A.HorizontalFlip(p=p_hflip),
        A.Rotate(limit=(-rotate, rotate), interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT,
                 fill=0, p=1.0),
    ]


#: Evaluation options an augment config may carry beside its training ops (classification only): the val and
#: test images are resized to ``test_resize`` (null: image_size, no crop) and centre-cropped to image_size;
#: with ``ten_crop`` the test images give torchvision's TenCrop instead and the module averages the ten
#: probabilities (the JLiangLab benchmark: Resize(256), CenterCrop(224) at val, TenCrop(224) at test).
EVAL_OPTIONS = {"test_resize": None, "ten_crop": False}


def split_eval_options(augment: str | Mapping) -> tuple[str | Mapping, dict]:
    """(the augment config without the `EVAL_OPTIONS` keys, those options with their defaults)."""
    if not isinstance(augment, Mapping):
        return augment, dict(EVAL_OPTIONS)
    rest = {str(k): v for k, v in augment.items() if k not in EVAL_OPTIONS}
    return rest, {k: augment.get(k, default) for k, default in EVAL_OPTIONS.items()}
