"""3D layouts, nnU-Net's reader contract and the header-only checks (medtransfer.data.volumes)."""

import json

import nibabel as nib
import numpy as np
import pytest

from medtransfer.data.volumes import inspect_case, inspect_source, list_source, read_case, read_label
from medtransfer.errors import ConfigError, DataError
from tests import _volume_layouts as lay


def test_msd_layout_reads_channels_labels_and_cases(tmp_path):
    src = list_source(lay.msd(tmp_path / "Task99_Tiny", n=4), "msd")
    assert src.channels == ("MR0",)
    assert src.labels == ((0, "background"), (1, "anterior"), (2, "posterior"))
    assert src.ids == ["case_000", "case_001", "case_002", "case_003"]
    image, spacing, affine = read_case(src.cases[1], src)
    assert image.shape == (1, *lay.SHAPE) and image.dtype == np.float32
    np.testing.assert_allclose(image[0], lay.volume(1), rtol=1e-6)
    np.testing.assert_allclose(spacing, lay.SPACING)
    np.testing.assert_allclose(affine, lay.affine())
    lab, _, _ = read_label(src.cases[1], src.label_values)
    assert lab.shape == (1, *lay.SHAPE) and np.issubdtype(lab.dtype, np.integer)
    assert set(np.unique(lab)) == {0, 1, 2}


def test_msd_multimodal_4d_file_becomes_channels_first(tmp_path):
    src = list_source(lay.msd(tmp_path / "t", n=2, channels=3), "msd")
    image, _, _ = read_case(src.cases[0], src)
    assert image.shape == (3, *lay.SHAPE)
    np.testing.assert_allclose(image[2], lay.volume(0 + 20), rtol=1e-6)
    assert inspect_case(src.cases[0], src).channels == 3


def test_nnunet_layout_one_file_per_channel(tmp_path):
    src = list_source(lay.nnunet(tmp_path / "Dataset001_Tiny", n=3, channels=2), "nnunet")
    assert src.channels == ("MR0", "MR1") and src.label_values == (0, 1, 2)
    assert [p.name for p in src.cases[0].images] == ["tiny_000_0000.nii.gz", "tiny_000_0001.nii.gz"]
    image, _, _ = read_case(src.cases[2], src)
    assert image.shape == (2, *lay.SHAPE)
    np.testing.assert_allclose(image[1], lay.volume(2 + 10), rtol=1e-6)


def test_nnunet_explicit_dataset_entry_lists_cases(tmp_path):
    """nnU-Net v2's optional "dataset" key names each case's files (any names) instead of the _XXXX rule."""
    root = tmp_path / "Dataset002_Named"
    lay.save(root / "scans" / "a_t1.nii.gz", lay.volume(0))
    lay.save(root / "scans" / "a_t2.nii.gz", lay.volume(1))
    lay.save(root / "masks" / "a.nii.gz", lay.label(0))
    meta = {"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "a": 1, "b": 2},
            "file_ending": ".nii.gz",
            "dataset": {"a": {"images": ["scans/a_t1.nii.gz", "scans/a_t2.nii.gz"],
                              "label": "masks/a.nii.gz"}}}
    (root / "dataset.json").write_text(json.dumps(meta))
    src = list_source(root, "nnunet")
    assert src.ids == ["a"] and inspect_case(src.cases[0], src).channels == 2
    np.testing.assert_allclose(read_case(src.cases[0], src)[0][1], lay.volume(1), rtol=1e-6)
    meta["dataset"]["a"]["images"] = meta["dataset"]["a"]["images"][:1] + ["scans/a_t1.nii.gz"] * 2
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="has 3 image files for 2 channels"):
        inspect_source(list_source(root, "nnunet"))


def test_plain_folder_matches_by_case_name_and_needs_label_names(tmp_path):
    root = lay.nifti(tmp_path / "plain", n=3)
    src = list_source(root, "nifti", ["background", "lesion"])
    assert src.ids == ["c0", "c1", "c2"] and src.labels == ((0, "background"), (1, "lesion"))
    with pytest.raises(ConfigError, match="dataset.labels is required"):
        list_source(root, "nifti")
    (root / "labels" / "c2.nii.gz").unlink()
    with pytest.raises(DataError, match=r"c2\.nii\.gz: no matching label file"):
        list_source(root, "nifti", ["background", "lesion"])


def test_unknown_layout_and_missing_dataset_json(tmp_path):
    with pytest.raises(ConfigError, match="valid choices: msd, nifti, nnunet"):
        list_source(tmp_path, "decathlon")
    with pytest.raises(DataError, match="dataset.json not found"):
        list_source(tmp_path, "msd")


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_label_value_not_in_dataset_json_names_file_and_values(tmp_path):
    root = lay.msd(tmp_path / "t", n=2)
    bad = lay.label(1)
    bad[0, 0, 0] = 5
    lay.save(root / "labelsTr" / "case_001.nii.gz", bad)
    src = list_source(root, "msd")
    inspect_source(src)  # headers are fine: the values need the voxels
    with pytest.raises(DataError) as e:
        read_label(src.cases[1], src.label_values)
    assert "case_001.nii.gz" in _one_line(e) and "[5]" in str(e.value) and "valid: 0, 1, 2" in str(e.value)


def test_shape_mismatch_names_the_label(tmp_path):
    root = lay.msd(tmp_path / "t", n=2)
    lay.save(root / "labelsTr" / "case_000.nii.gz", np.zeros((12, 10, 7), np.uint8))
    with pytest.raises(DataError) as e:
        inspect_source(list_source(root, "msd"))
    assert "labelsTr/case_000.nii.gz: shape (12, 10, 7) differs" in _one_line(e)


def test_affine_mismatch_names_the_label(tmp_path):
    root = lay.msd(tmp_path / "t", n=2)
    lay.save(root / "labelsTr" / "case_001.nii.gz", lay.label(1), lay.affine((1.0, 1.5, 2.0)))
    with pytest.raises(DataError) as e:
        inspect_source(list_source(root, "msd"))
    assert "case_001.nii.gz: affine differs" in _one_line(e)


def test_missing_modality_file_names_it(tmp_path):
    root = lay.nnunet(tmp_path / "Dataset001_Tiny", n=2, channels=2)
    (root / "imagesTr" / "tiny_001_0001.nii.gz").unlink()
    with pytest.raises(DataError) as e:
        inspect_source(list_source(root, "nnunet"))
    assert "tiny_001_0001.nii.gz: missing modality file, channel 1 (MR1)" in _one_line(e)


def test_msd_channel_count_differs_from_modality(tmp_path):
    root = lay.msd(tmp_path / "t", n=2)
    meta = json.loads((root / "dataset.json").read_text())
    meta["modality"] = {"0": "T1", "1": "T2"}
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"case_000\.nii\.gz: 1 channel\(s\) but .*dataset\.json declares 2"):
        inspect_source(list_source(root, "msd"))


@pytest.mark.parametrize("shape", [(12, 10), (12, 10, 1)])
def test_2d_file_where_3d_expected(tmp_path, shape):
    root = lay.msd(tmp_path / "t", n=2)
    flat = nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4))
    nib.save(flat, str(root / "imagesTr" / "case_001.nii.gz"))
    with pytest.raises(DataError) as e:
        inspect_source(list_source(root, "msd"))
    assert "imagesTr/case_001.nii.gz: shape" in _one_line(e) and "is 2D" in str(e.value)


def test_corrupt_file_is_a_dataerror_naming_it(tmp_path):
    root = lay.msd(tmp_path / "t", n=2)
    (root / "imagesTr" / "case_000.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DataError, match=r"case_000\.nii\.gz: cannot read NIfTI header"):
        inspect_source(list_source(root, "msd"))


def test_region_labels_rejected(tmp_path):
    root = lay.nnunet(tmp_path / "Dataset001_Tiny", n=2)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole": [1, 2]}
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="region-based labels are not supported"):
        list_source(root, "nnunet")
