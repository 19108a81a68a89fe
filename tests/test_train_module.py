"""SegmentationModule: the optimizer it builds (discriminative encoder LR from the composed config) and the
state it keeps across a resume."""

from types import SimpleNamespace

import hydra
import pytest
from hydra import compose, initialize_config_dir

from medtransfer import settings
from medtransfer.models import build_model
from medtransfer.train import resolvers  # noqa: F401
from medtransfer.train.module import SegmentationModule


def _module(overrides):
    with initialize_config_dir(config_dir=str(settings.PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["encoder=r18", "decoder=unet", "dataset=synthetic", *overrides])
    model = build_model(cfg.encoder, cfg.decoder, num_classes=1, image_size=64)
    module = SegmentationModule(model=model, loss=hydra.utils.instantiate(cfg.loss),
                                optimizer=hydra.utils.instantiate(cfg.optimizer),
                                schedule=hydra.utils.instantiate(cfg.schedule),
                                encoder_lr_factor=float(cfg.encoder_lr_factor))
    module._trainer = SimpleNamespace(estimated_stepping_batches=10)  # all configure_optimizers asks of it
    return module, cfg


@pytest.mark.parametrize("finetune,factor", [("discriminative", 0.25), ("full", 1.0)])
def test_encoder_group_lr_is_the_base_lr_times_the_factor(finetune, factor):
    over = [f"finetune={finetune}", "optimizer=adamw", "optimizer.lr=0.002"]
    if finetune == "discriminative":
        over.append(f"finetune.encoder_lr_factor={factor}")
    module, cfg = _module(over)
    opt = module.configure_optimizers()["optimizer"]
    lrs = {g["name"]: g["initial_lr"] if "initial_lr" in g else g["lr"] for g in opt.param_groups}
    assert lrs == {"encoder": pytest.approx(0.002 * factor), "decoder": pytest.approx(0.002)}
    enc_params = {id(p) for p in module.model.param_groups()["encoder"]}
    (enc_group,) = [g for g in opt.param_groups if g["name"] == "encoder"]
    assert {id(p) for p in enc_group["params"]} == enc_params  # the whole encoder, nothing else


def test_checkpoint_carries_history_but_test_loading_keeps_it():
    module, _ = _module([])
    module.val_history = [{"epoch": 0, "dice_per_image": 0.5}, {"epoch": 1, "dice_per_image": 0.6}]
    module._train_images, module._train_time = 64, 2.0
    ckpt = {}
    module.on_save_checkpoint(ckpt)
    fresh, _ = _module([])
    fresh._trainer = SimpleNamespace(state=SimpleNamespace(fn="fit"), estimated_stepping_batches=10)
    fresh.on_load_checkpoint(ckpt)  # a resumed fit
    assert fresh.val_history == module.val_history and fresh.train_images_per_second == 32.0
    best = {}
    module.val_history = module.val_history[:1]
    module.on_save_checkpoint(best)  # best.ckpt from epoch 0
    fresh._trainer = SimpleNamespace(state=SimpleNamespace(fn="test"))
    fresh.on_load_checkpoint(best)  # trainer.test(ckpt_path=best) must not roll the history back
    assert len(fresh.val_history) == 2


def test_native_size_scoring_measures_surface_distances_in_the_datasets_unit():
    """dataset.pixel_spacing reaches HD95/ASSD: isotropic 0.5 mm pixels halve every distance, unit recorded."""
    import torch

    from medtransfer.metrics import SegMetrics
    from medtransfer.train.module import score_at_native_size
    from medtransfer.train.tasks import pixel_spacing, summarise_surface

    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 8:20] = 1
    logits = torch.full((1, 1, 16, 16), -10.0)
    logits[..., 5:12, 4:10] = 10.0  # a shifted, larger square at half the resolution
    batch = {"id": ["a"], "mask_native": [mask[0, 0]]}
    out = {}
    for spacing in (None, [0.5, 0.5]):
        surface = []
        score_at_native_size(logits, batch, SegMetrics(), 0.5, surface, spacing=pixel_spacing({"pixel_spacing": spacing}))
        out[str(spacing)] = summarise_surface(surface, pixel_spacing({"pixel_spacing": spacing}))
    px, mm = out["None"], out["[0.5, 0.5]"]
    assert (px["surface_unit"], mm["surface_unit"]) == ("px", "mm")
    assert px["hd95"] > 1 and mm["hd95"] == pytest.approx(px["hd95"] / 2)
    assert mm["assd"] == pytest.approx(px["assd"] / 2)
