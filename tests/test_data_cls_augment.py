"""augment=cls_benchmark: the benchmark's training ops, centre-crop validation and ten-crop testing (torchvision's
geometry), and the module's exact averaging of the ten crops' probabilities."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms import CenterCrop, TenCrop

from medtransfer import settings
from medtransfer.data import AUGMENTS, ClsDataModule
from medtransfer.data.cls_batches import centre_crop, ten_crop
from medtransfer.errors import ConfigError
from tests._cls_layouts import make_shenzhen

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # batches in 0..1: comparable with the cached uint8 / 255
BENCH = {**OmegaConf.to_container(OmegaConf.load(settings.PROJECT_ROOT / "conf/augment/cls_benchmark.yaml")),
         "test_resize": 40}


@pytest.mark.parametrize("shape", [(40, 40), (40, 40, 3), (41, 45)])
def test_crops_match_torchvision(shape):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    t = torch.from_numpy(img if img.ndim == 2 else img.transpose(2, 0, 1).copy())
    want = torch.stack(TenCrop(32)(t))
    got = torch.from_numpy(ten_crop(img, 32).copy())
    assert torch.equal(got if got.ndim == 3 else got.permute(0, 3, 1, 2), want)
    c = torch.from_numpy(centre_crop(img, 32).copy())
    assert torch.equal(c if c.ndim == 2 else c.permute(2, 0, 1), CenterCrop(32)(t))


def test_benchmark_preset_trains_on_random_resized_crops_and_tests_on_ten_crops(tmp_path):
    root = make_shenzhen(tmp_path / "sz", n=20)
    dm = ClsDataModule({"name": "shenzhen", "root": str(root)}, 32, BENCH, 4, 0, 0, MEAN, STD)
    assert dm.decode_size == 40
    dm.setup("fit")
    assert dm._images.shape == (20, 40, 40)  # decoded once, at test_resize
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (4, 3, 32, 32)
    val, test = next(iter(dm.val_dataloader())), next(iter(dm.test_dataloader()))
    assert val["image"].shape == (2, 3, 32, 32) and test["image"].shape == (4, 10, 3, 32, 32)
    rows = [dm._row_of[i] for i in test["id"]]
    want = torch.stack([torch.from_numpy(ten_crop(dm._images[r], 32).copy()) for r in rows]).float() / 255
    assert torch.allclose(test["image"][:, :, 0], want, atol=1e-6)
    r = dm._row_of[val["id"][0]]
    assert torch.allclose(val["image"][0, 0], torch.from_numpy(centre_crop(dm._images[r], 32).copy()) / 255,
                          atol=1e-6)
    no_ten = ClsDataModule({"name": "shenzhen", "root": str(root)}, 32, {**BENCH, "ten_crop": False}, 4, 0, 0,
                           MEAN, STD)
    no_ten.setup("test")
    assert next(iter(no_ten.test_dataloader()))["image"].shape == (4, 3, 32, 32)


def test_training_ops_are_the_benchmarks():
    from medtransfer.data.classification import check_augment

    name, params, options, decode = check_augment({**BENCH, "test_resize": 256}, 224)  # config time, no data
    assert (name, options, decode) == ("cls_benchmark", {"test_resize": 256, "ten_crop": True}, 256)
    assert check_augment("flip", 224)[3] == 224
    ops = AUGMENTS["cls_benchmark"](size=224, **params)
    assert [type(o).__name__ for o in ops] == ["RandomResizedCrop", "HorizontalFlip", "Rotate"]
    assert ops[0].size == (224, 224) and tuple(ops[0].scale) == (0.08, 1.0) and ops[2].limit == (-7.0, 7.0)
    with pytest.raises(ConfigError, match="augment=cls_benchmark is a classification preset"):
        AUGMENTS["cls_benchmark"]()


@pytest.mark.parametrize("augment, match", [
    ({**BENCH, "test_resize": None}, "augment.ten_crop=true needs augment.test_resize"),
    ({**BENCH, "test_resize": 24}, r"augment.test_resize=24: expected an integer >= image_size=32"),
    ({**BENCH, "test_resize": 32}, "would be five copies of the image"),
    ({"name": "flip", "test_resize": 40}, "augment=flip does not crop its training images"),
    ({**BENCH, "size": 32}, r"augment.size=32: the crop size of augment=cls_benchmark is image_size"),
    ({**BENCH, "ten_crop": "yes"}, "augment.ten_crop='yes': expected true or false"),
])
def test_eval_options_are_checked(tmp_path, augment, match):
    root = make_shenzhen(tmp_path / "sz", n=10)
    with pytest.raises(ConfigError, match=match):
        ClsDataModule({"name": "shenzhen", "root": str(root)}, 32, augment, 4, 0, 0, MEAN, STD)


class CropBrightness(torch.nn.Module):
    """A 'model' whose logit is each input's mean pixel × 4 - 2: every crop gets its own probability."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3))[:, None] * 4 - 2


def test_test_step_averages_the_ten_crops_probabilities_exactly():
    from medtransfer.train.classification import ClassificationModule

    module = ClassificationModule(CropBrightness(), torch.nn.BCEWithLogitsLoss(), None, None, kind="binary",
                                  labels=["x"])
    image = torch.rand(3, 10, 3, 8, 8)
    image[0, :5] = 0.0  # image 0: half its crops dark, half bright → mean prob != prob of the mean logit
    image[0, 5:] = 0.75
    module.test_step({"image": image, "label": torch.tensor([[1.0], [0.0], [1.0]]), "id": ["a", "b", "c"]}, 0)
    rows = module.test_metrics.per_case()
    want = torch.sigmoid(image.mean(dim=(2, 3, 4)) * 4 - 2).mean(dim=1)
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert torch.allclose(torch.tensor([r["prob/x"] for r in rows], dtype=torch.float64), want.double(), atol=1e-6)
    mean_prob = (5 * torch.sigmoid(torch.tensor(-2.0)) + 5 * torch.sigmoid(torch.tensor(1.0))) / 10
    assert abs(rows[0]["prob/x"] - float(mean_prob)) < 1e-6
    assert abs(rows[0]["prob/x"] - float(torch.sigmoid(torch.tensor(-0.5)))) > 0.04  # not the mean logit's
    plain = ClassificationModule(CropBrightness(), torch.nn.BCEWithLogitsLoss(), None, None, kind="binary",
                                 labels=["x"])
    plain.test_step({"image": image[:, 0], "label": torch.tensor([[1.0], [0.0], [1.0]]), "id": ["a", "b", "c"]}, 0)
    first = torch.sigmoid(image[:, 0].mean(dim=(1, 2, 3)) * 4 - 2)
    assert torch.allclose(torch.tensor([r["prob/x"] for r in plain.test_metrics.per_case()]), first, atol=1e-6)
