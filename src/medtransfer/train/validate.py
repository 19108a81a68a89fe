"""Config-time checks: every reason a job would fail that can be known without compute, as one line.

Run for a single job at the start of `run`, and for a whole `-m` grid before any job starts
(see `sweep.ValidateGridCallback`), so a 1,000-job sweep never dies at job 731 on a typo.
"""

from __future__ import annotations

from omegaconf import DictConfig

from medtransfer.errors import ConfigError


def validate(cfg: DictConfig) -> None:
    from medtransfer.data import validate_dataset_cfg
    from medtransfer.models import check_combination
    from medtransfer.pretrain import check_pretrain
    from medtransfer.pretrain.finetune import check_finetune

    if int(cfg.image_size) <= 0:
        raise ConfigError(f"image_size must be a positive integer, got {cfg.image_size}")
    if int(cfg.batch_size) <= 0:
        raise ConfigError(f"batch_size must be a positive integer, got {cfg.batch_size}")
    if float(cfg.encoder_lr_factor) < 0:
        raise ConfigError(f"encoder_lr_factor must be >= 0, got {cfg.encoder_lr_factor}")
    check_combination(cfg.encoder, cfg.decoder, int(cfg.image_size))
    crop = cfg.get("train_crop")
    if crop is not None:
        if isinstance(crop, bool) or not isinstance(crop, int) or not 16 <= crop <= int(cfg.image_size):
            raise ConfigError(f"train_crop={crop!r}: expected null or an integer in 16..image_size "
                              f"({cfg.image_size})")
        if cfg.encoder.get("family") != "cnn":
            raise ConfigError(f"train_crop={crop} trains on crops and tests on the {cfg.image_size} frame: "
                              f"encoder {cfg.encoder.name} ({cfg.encoder.get('family')}) is built for one input "
                              "size; use a CNN encoder or train_crop=null")
        check_combination(cfg.encoder, cfg.decoder, int(crop))
    check_pretrain(cfg.pretrain, cfg.encoder.name, cfg.encoder, cfg.decoder)
    check_finetune(cfg.finetune, cfg.encoder.name, cfg.pretrain)
    validate_dataset_cfg(cfg.dataset)
    valid_monitors = {"val/dice_per_image", "val/iou_per_image", "val/dice_pooled", "val/iou_pooled"}
    if cfg.monitor not in valid_monitors:
        raise ConfigError(f"unknown monitor {cfg.monitor!r}; valid choices: {', '.join(sorted(valid_monitors))}")
    accel = str(cfg.trainer.get("accelerator", "auto"))
    if accel in {"gpu", "cuda"}:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accel} but no CUDA device is visible; use trainer=cpu or "
                              "trainer=default (auto)")
