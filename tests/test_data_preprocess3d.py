"""3D preprocessing (orientation, spacing, intensity), the per-case cache and the inverse resampling."""

import numpy as np
import pytest
import torch

from medtransfer.data import preprocess3d as p3
from medtransfer.data.volumes import Header, inspect_source, list_source, read_case, read_label
from medtransfer.errors import ConfigError
from tests import _volume_layouts as lay


def _resolved(**kw) -> p3.Resolved:
    spacing = kw.pop("target_spacing", None)
    return p3.Resolved(p3.Preprocessing.from_cfg(kw), spacing)


def test_resampling_3mm_to_1_5mm_doubles_z_and_keeps_the_label_set():
    img, lab = lay.volume(0)[None], lay.label(0)[None].astype(np.int16)
    out_img, out_lab, aff = p3.preprocess(img, lab, lay.affine(), _resolved(intensity="none",
                                                                           target_spacing=(1.0, 1.5, 1.5)))
    assert out_img.shape == (1, 12, 10, 16) and out_lab.shape == (1, 12, 10, 16)
    np.testing.assert_allclose(np.linalg.norm(aff[:3, :3], axis=0), (1.0, 1.5, 1.5))
    assert set(np.unique(out_lab)) == set(np.unique(lab)) == {0, 1, 2}
    # nearest: every new slice pair (2k, 2k+1) is a copy of the original slice k
    np.testing.assert_array_equal(out_lab[0, :, :, 0::2], lab[0])
    np.testing.assert_array_equal(out_lab[0, :, :, 1::2], lab[0])
    # trilinear: values stay within the original range (no ringing as with splines)
    assert img.min() - 1e-3 <= out_img.min() and out_img.max() <= img.max() + 1e-3


def test_ras_reorientation_of_an_lps_affine_flips_the_first_two_axes():
    img, lab = lay.volume(1)[None], lay.label(1)[None].astype(np.int16)
    out_img, out_lab, aff = p3.preprocess(img, lab, lay.affine(flip_xy=True), _resolved(intensity="none"))
    np.testing.assert_array_equal(out_img, img[:, ::-1, ::-1, :])
    np.testing.assert_array_equal(out_lab, lab[:, ::-1, ::-1, :])
    assert (np.diag(aff)[:3] > 0).all()


def test_ct_window_maps_hu_minus_1000_1000_to_0_1_with_clipping():
    hu = np.array([-2000.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0], np.float32).reshape(1, 6, 1, 1)
    img = np.broadcast_to(hu, (1, 6, 2, 2)).copy()
    out = p3.normalise(torch.from_numpy(img), _resolved(intensity="ct_window")).numpy()
    np.testing.assert_allclose(out[0, :, 0, 0], [0.0, 0.0, 0.5, 0.75, 1.0, 1.0], atol=1e-6)


def test_mr_std_divides_by_std_without_centring_and_zscores():
    x = np.random.default_rng(0).normal(50.0, 4.0, (2, 6, 5, 4)).astype(np.float32)
    x[1] *= 3.0
    def r(s):
        return p3.normalise(torch.from_numpy(x.copy()), _resolved(intensity=s)).numpy()

    out = r("mr_std")
    for c in range(2):
        np.testing.assert_allclose(out[c], x[c] / x[c].std(), rtol=1e-5)
    z = r("zscore")
    np.testing.assert_allclose(z.reshape(2, -1).mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.reshape(2, -1).std(1), 1.0, atol=1e-4)
    x[:, :2] = 0.0
    zn = r("zscore_nonzero")
    assert (zn[:, :2] == 0).all()
    np.testing.assert_allclose(zn[0, 2:].mean(), 0.0, atol=1e-5)


def test_nnunet_ct_uses_training_foreground_statistics(tmp_path):
    root = lay.msd(tmp_path / "t", n=3)
    src = list_source(root, "msd")
    train = [src.cases[0], src.cases[1]]
    stats = p3.foreground_stats(train, src)
    fg = np.concatenate([read_case(c, src)[0][0][read_label(c)[0][0] > 0] for c in train]).astype(np.float64)
    lo, hi, mean, std = stats[0]
    np.testing.assert_allclose([lo, hi, mean, std], [*np.percentile(fg, [0.5, 99.5]), fg.mean(), fg.std()],
                               rtol=1e-6)
    res = p3.resolve(p3.Preprocessing(intensity="nnunet_ct"), src, inspect_source(src),
                     ["case_000", "case_001"], "tiny")
    assert res.ct_stats == stats
    out = p3.normalise(torch.tensor([[[[lo - 100.0]], [[mean]]]]).permute(1, 0, 2, 3), res).numpy()
    np.testing.assert_allclose(out.ravel(), [(lo - mean) / std, 0.0], atol=1e-5)


def _header(spacing, shape):
    return Header(tuple(shape), np.diag([*spacing, 1.0]), 1)


def test_median_spacing_plain_and_nnunet_anisotropic_rule():
    hs = [_header((1.0, 1.0, 2.0), (50, 50, 50)), _header((2.0, 1.0, 2.0), (50, 50, 50)),
          _header((1.0, 3.0, 2.0), (50, 50, 50))]
    assert p3.median_spacing(hs, "RAS") == (1.0, 1.0, 2.0)
    # z is > 3x coarser and has < 1/3 of the voxels: nnU-Net takes its 10th percentile, not the median
    aniso = [_header((0.8, 0.8, s), (100, 100, 20)) for s in (5.0, 5.0, 4.0)]
    assert p3.median_spacing(aniso, "RAS") == pytest.approx((0.8, 0.8, 4.2))
    # a volume stored z, y, x: spacing is taken after reorientation
    a = np.array([[0, 0, 2.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    assert tuple(p3.oriented(Header((30, 40, 50), a, 1), "RAS")[0]) == (2.0, 1.0, 1.0)


@pytest.mark.parametrize("cfg, match", [
    ({"spacing": [1, 1]}, "spacing"), ({"intensity": "minmax"}, "valid choices: none, ct_window"),
    ({"orientation": "RAR"}, "orientation"), ({"window": [5, 1]}, "window"),
    ({"resample": 1}, "unknown option"),
])
def test_bad_preprocessing_options(cfg, match):
    with pytest.raises(ConfigError, match=match):
        p3.Preprocessing.from_cfg(cfg)


def test_cache_decodes_once_and_keys_on_files_and_preprocessing(tmp_path, monkeypatch):
    src = list_source(lay.msd(tmp_path / "t", n=2), "msd")
    res = _resolved(intensity="mr_std", target_spacing=(1.0, 1.5, 1.5))
    e = p3.load_or_build(src.cases[0], src, res, "tiny")
    assert e.image.shape == (1, 12, 10, 16) and e.meta["orig_shape"] == [12, 10, 8]
    np.testing.assert_allclose(e.meta["orig_spacing"], lay.SPACING)
    np.testing.assert_allclose(e.meta["orig_affine"], lay.affine())
    monkeypatch.setattr(p3, "read_case", lambda *a: pytest.fail("decoded again"))
    again = p3.load_or_build(src.cases[0], src, res, "tiny")
    np.testing.assert_array_equal(again.image, e.image)
    other = p3.case_key(src.cases[0], _resolved(intensity="zscore", target_spacing=(1.0, 1.5, 1.5)))
    assert other != e.meta["key"]
    lay.save(src.cases[0].image, lay.volume(99))
    p3._digest.cache_clear()
    assert p3.case_key(src.cases[0], res) != e.meta["key"]


def test_to_original_inverts_orientation_and_resampling_exactly():
    lab = lay.label(2)[None].astype(np.int16)
    aff = lay.affine(flip_xy=True)
    res = _resolved(intensity="none", target_spacing=(0.5, 0.75, 1.5))
    _, out_lab, out_aff = p3.preprocess(lay.volume(2)[None], lab, aff, res)
    assert out_lab.shape == (1, 24, 20, 16)
    meta = {"affine": out_aff.tolist(), "orig_affine": aff.tolist(), "orig_shape": list(lay.SHAPE)}
    back = p3.to_original(out_lab[0], meta)
    assert back.shape == lay.SHAPE
    np.testing.assert_array_equal(back, lab[0])
    probs = np.stack([(out_lab[0] == k).astype(np.float32) for k in range(3)])
    back_probs = p3.to_original(probs, meta, mode="bilinear")
    assert back_probs.shape == (3, *lay.SHAPE)
    np.testing.assert_array_equal(back_probs.argmax(0), lab[0])
