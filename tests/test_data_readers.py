"""readers: the format quirks of the real datasets, and one-line errors naming the file."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from medtransfer.data import readers
from medtransfer.data.cache import decode_sample
from medtransfer.data.datasets import Sample
from medtransfer.errors import DataError


def test_clinicdb_tif_frame_is_rgb(shared_data):
    p = shared_data / "cvc_clinicdb" / "images" / "1.tif"
    img = readers.read_image(p)
    assert img.shape == (288, 384, 3) and img.dtype == np.uint8
    assert not (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]))
    r, g, b = img.reshape(-1, 3).mean(0)
    assert r > g > b  # PROVENANCE: mean ≈ (111, 69, 40), channel order R, G, B


def test_clinicdb_tif_mask_binary(shared_data):
    m = readers.read_mask(shared_data / "cvc_clinicdb" / "masks" / "1.tif")
    assert m.shape == (288, 384) and set(np.unique(m)) == {0, 1}


def test_kvasir_mask_binarised_at_127(shared_data):
    p = next(iter(sorted((shared_data / "kvasir_seg" / "masks").glob("*.jpg"))))
    m = readers.read_mask(p)
    grey = np.asarray(Image.open(p).convert("L"))
    assert len(np.unique(grey)) > 2  # the JPEG noise is really there
    assert set(np.unique(m)) == {0, 1}
    np.testing.assert_array_equal(m, (grey > 127).astype(np.uint8))


def test_noisy_rgb_mask_threshold(tmp_path):
    a = np.zeros((40, 40, 3), np.uint8)
    a[:, 20:] = 255
    a[3, 30] = 127  # exactly the threshold: background, even inside the foreground
    a[3, 10] = 128  # just above: foreground, even inside the background
    tifffile.imwrite(tmp_path / "m.tif", a, photometric="rgb")
    Image.fromarray(a).save(tmp_path / "m.png")
    want = (a[..., 0] > 127).astype(np.uint8)
    for name in ("m.tif", "m.png"):
        m = readers.read_mask(tmp_path / name)
        np.testing.assert_array_equal(m, want, err_msg=name)
        assert m[3, 30] == 0 and m[3, 10] == 1, name


def test_grey_and_16bit_images_become_rgb_uint8(tmp_path):
    Image.fromarray(np.full((5, 6), 200, np.uint8)).save(tmp_path / "g.png")
    tifffile.imwrite(tmp_path / "w.tif", np.full((5, 6), 65535, np.uint16))
    for name in ("g.png", "w.tif"):
        img = readers.read_image(tmp_path / name)
        assert img.shape == (5, 6, 3) and img.dtype == np.uint8
    assert readers.read_image(tmp_path / "w.tif").max() == 255


@pytest.mark.parametrize("name", ["bad.jpg", "bad.png", "bad.tif"])
def test_corrupt_file_names_the_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"\xff\xd8\xff\xe0 this is not an image")
    with pytest.raises(DataError, match=r"bad\.\w+: cannot decode image") as e:
        readers.read_image(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DataError, match="cannot decode image"):
        readers.read_mask(p)


def test_truncated_jpeg_is_an_error(tmp_path):
    p = tmp_path / "t.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(DataError, match="t.jpg: cannot decode image"):
        readers.read_image(p)


def test_size_mismatched_mask_names_both_files(tmp_path):
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((10, 11), np.uint8)).save(tmp_path / "a_mask.png")
    s = Sample("a", tmp_path / "a.png", tmp_path / "a_mask.png")
    with pytest.raises(DataError) as e:
        decode_sample(s, 8)
    msg = str(e.value)
    assert "a_mask.png" in msg and "a.png" in msg and "11x10" in msg and "12x10" in msg


def test_draft_decode_reports_native_size(tmp_path):
    Image.fromarray(np.zeros((400, 600, 3), np.uint8)).save(tmp_path / "big.jpg")
    img, hw = readers.decode_image(tmp_path / "big.jpg", draft_size=64)
    assert hw == (400, 600) and min(img.shape[:2]) >= 64 and img.shape[0] < 400
