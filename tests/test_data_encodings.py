"""Mask and image encodings (issue 9, defect 5) and the exact JPEG decode: masks are read by what their
values mean, never silently emptied; 16-bit images are scaled by their range; JPEGs are decoded in full."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from medtransfer.data import SegDataModule, readers
from medtransfer.data import cache as cache_mod
from medtransfer.data.cache import _resize, cache_key, decode_sample
from medtransfer.data.datasets import Sample, pair_by_stem
from medtransfer.errors import DataError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def disc(n=48, r=12, inside=1, outside=0, dtype=np.uint8):
    yy, xx = np.mgrid[:n, :n]
    inner = (yy - n // 2) ** 2 + (xx - n // 2) ** 2 <= r * r
    return np.where(inner, inside, outside).astype(dtype), inner.astype(np.uint8)


def test_mask_0_1_is_foreground_not_empty(tmp_path):
    m, want = disc(inside=1)
    Image.fromarray(m).save(tmp_path / "m.png")
    np.testing.assert_array_equal(readers.read_mask(tmp_path / "m.png"), want)


def test_mask_0_255(tmp_path):
    m, want = disc(inside=255)
    Image.fromarray(m).save(tmp_path / "m.png")
    tifffile.imwrite(tmp_path / "m.tif", m)
    for name in ("m.png", "m.tif"):
        np.testing.assert_array_equal(readers.read_mask(tmp_path / name), want, err_msg=name)


def test_mask_0_255_jpeg_noise_is_thresholded(tmp_path):
    m, want = disc(inside=255)
    Image.fromarray(m).convert("RGB").save(tmp_path / "m.jpg", quality=75)  # like Kvasir-SEG: RGB JPEG masks
    grey = np.asarray(Image.open(tmp_path / "m.jpg").convert("L"))
    assert len(np.unique(grey)) > 2  # the compression noise is really there
    np.testing.assert_array_equal(readers.read_mask(tmp_path / "m.jpg"), want)


def test_label_map_with_declared_foreground(tmp_path):
    labels = np.zeros((20, 30), np.uint8)
    labels[2:8, 2:8], labels[10:18, 10:25] = 1, 2
    Image.fromarray(labels).save(tmp_path / "l.png")
    np.testing.assert_array_equal(readers.read_mask(tmp_path / "l.png", foreground=[2]), labels == 2)
    np.testing.assert_array_equal(readers.read_mask(tmp_path / "l.png", foreground=[1, 2]), labels > 0)
    np.testing.assert_array_equal(readers.read_mask(tmp_path / "l.png", foreground="nonzero"), labels > 0)
    m100, want = disc(inside=100)
    Image.fromarray(m100).save(tmp_path / "h.png")
    np.testing.assert_array_equal(readers.read_mask(tmp_path / "h.png", foreground="nonzero"), want)


@pytest.mark.parametrize("values", [(0, 1, 2), (0, 100), (0, 100, 255)])
def test_label_map_without_policy_is_a_one_line_error(tmp_path, values):
    labels = np.zeros((20, 30), np.uint8)
    for k, v in enumerate(values):
        labels[:, k * 10 : (k + 1) * 10] = v
    Image.fromarray(labels).save(tmp_path / "l.png")
    with pytest.raises(DataError) as e:
        readers.read_mask(tmp_path / "l.png")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "l.png") in msg and "dataset.mask_foreground" in msg
    assert ", ".join(map(str, values)) in msg  # the values found


def test_16bit_images_are_scaled_by_their_range(tmp_path):
    a16 = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491
    want = np.round(a16 / 257.0).astype(np.uint8)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    tifffile.imwrite(tmp_path / "g16.tif", a16)
    tifffile.imwrite(tmp_path / "rgb16.tif", np.dstack([a16] * 3), photometric="rgb")
    for name in ("g16.png", "g16.tif", "rgb16.tif"):
        img = readers.read_image(tmp_path / name)
        assert img.dtype == np.uint8 and img.shape == (48, 64, 3), name
        assert np.abs(img[..., 0].astype(int) - want).max() <= 1, name


def test_16bit_masks_follow_the_same_rules(tmp_path):
    m, want = disc(inside=65535, dtype=np.uint16)
    Image.fromarray(m).save(tmp_path / "m.png")
    np.testing.assert_array_equal(readers.read_mask(tmp_path / "m.png"), want)
    m1, want1 = disc(inside=1, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "m1.tif", m1)
    np.testing.assert_array_equal(readers.read_mask(tmp_path / "m1.tif"), want1)


def test_real_masks_decode_as_grey_above_127(shared_data):
    """Every CVC-ClinicDB mask (up to 64 distinct greys, lossless) and every Kvasir-SEG JPEG mask decodes
    exactly as before the value rules: grey > 127 (a few seconds)."""
    paths = sorted((shared_data / "cvc_clinicdb" / "masks").iterdir())
    paths += sorted((shared_data / "kvasir_seg" / "masks").iterdir())
    assert len(paths) == 1612
    for p in paths:
        grey = tifffile.imread(p) if p.suffix == ".tif" else np.asarray(Image.open(p).convert("L"))
        np.testing.assert_array_equal(readers.read_mask(p), (grey > 127).astype(np.uint8), err_msg=str(p))


def _folder(root, mask_values=(0, 1), n=6, ext=".png"):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / "images" / f"{i}{ext}")
        m = np.full((40, 48), mask_values[0], np.uint8)
        m[5:30, 10 : 20 + i] = mask_values[1]
        Image.fromarray(m).save(root / "masks" / f"{i}.png")
    return root


def test_folder_dataset_with_0_1_masks_has_foreground(tmp_path):
    root = _folder(tmp_path / "f", (0, 1))
    dm = SegDataModule({"name": "folder", "root": str(root), "split": "all"}, 32, "none", 2, 0, 0, MEAN, STD)
    dm.setup()
    assert dm._decoded.masks.sum() > 0
    assert all(dm._decoded.native_mask(k).sum() == 25 * (10 + k) for k in range(6))


def test_folder_dataset_label_map_needs_a_policy(tmp_path):
    root = _folder(tmp_path / "f", (0, 2))
    Image.fromarray(np.array([[0, 1, 2] * 16] * 40, np.uint8)).save(root / "masks" / "3.png")
    cfg = {"name": "folder", "root": str(root), "split": "all"}
    with pytest.raises(DataError, match=r"0\.png: mask values 0, 2 .*dataset\.mask_foreground"):
        SegDataModule(cfg, 32, "none", 2, 0, 0, MEAN, STD).setup()
    dm = SegDataModule({**cfg, "mask_foreground": [2]}, 32, "none", 2, 0, 0, MEAN, STD)
    dm.setup()
    assert dm._decoded.native_mask(dm._decoded.row["0"]).sum() == 25 * 10
    assert dm._decoded.native_mask(dm._decoded.row["3"]).sum() == 40 * 16


# ------------------------------------------------------------------------------------------ JPEG decode
def _jpeg(tmp_path, hw=(400, 600)):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(img).resize((hw[1] // 8, hw[0] // 8)).resize((hw[1], hw[0])))  # texture
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=90)
    Image.fromarray(np.zeros(hw, np.uint8)).save(tmp_path / "a.png")
    return Sample("a", tmp_path / "a.jpg", tmp_path / "a.png")


def test_jpeg_default_decode_is_exact(tmp_path):
    s = _jpeg(tmp_path)
    full = _resize(np.asarray(Image.open(s.image).convert("RGB")), 64, nearest=False)
    np.testing.assert_array_equal(decode_sample(s, 64)[0], full)


def test_jpeg_draft_is_an_option_and_part_of_the_cache_key(tmp_path):
    s = _jpeg(tmp_path)
    with Image.open(s.image) as im:
        im.draft("RGB", (64, 64))
        drafted = _resize(np.asarray(im.convert("RGB")), 64, nearest=False)
    got = decode_sample(s, 64, cache_mod.DecodeOptions(jpeg_draft=True))[0]
    np.testing.assert_array_equal(got, drafted)
    assert not np.array_equal(got, decode_sample(s, 64)[0])
    exact = cache_key("folder", 64, [s])
    assert exact != cache_key("folder", 64, [s], cache_mod.DecodeOptions(jpeg_draft=True))
    assert exact != cache_key("folder", 64, [s], cache_mod.DecodeOptions(mask_foreground="nonzero"))


def test_jpeg_draft_through_the_dataset_config(tmp_path):
    root = _folder(tmp_path / "f", (0, 255), n=2, ext=".jpg")
    cfg = {"name": "folder", "root": str(root), "split": "all"}
    exact = SegDataModule(cfg, 16, "none", 2, 0, 0, MEAN, STD)
    exact.setup()
    drafted = SegDataModule({**cfg, "jpeg_draft": True}, 16, "none", 2, 0, 0, MEAN, STD)
    drafted.setup()
    assert exact._decoded.path != drafted._decoded.path
    for s in pair_by_stem(root):
        full = _resize(np.asarray(Image.open(s.image).convert("RGB")), 16, nearest=False)
        np.testing.assert_array_equal(exact._decoded.images[exact._decoded.row[s.id]], full)
