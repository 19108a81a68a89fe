"""`build(cfg)`: a composed config → the task, its DataModule and the network with its pretrained weights and
fine-tuning applied; `build_module` adds the LightningModule. One place, so a training job and eval.py read
a config the same way (lightning-hydra-template's `instantiate(cfg.model)` idea: the config says what to
build, these functions only wire the pieces; loss, optimizer and schedule are `instantiate`d from their
`_target_`).

The order is part of the result: seed → DataModule → network → pretrained weights → fine-tuning, the order
every recorded run used (the random initialisation of the head/decoder depends on it). The network itself
comes from medtransfer.networks, which `medtransfer analyze` uses too (it may not import train/), so its
rebuilt initialisation is the one training started from (tests/test_train_build.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig


@dataclass
class Built:
    task: object  # train.tasks.SegmentationTask | ClassificationTask | train.tasks3d.Segmentation3DTask
    dm: object  # the task's LightningDataModule
    model: object  # torch.nn.Module, pretrained weights loaded, fine-tuning strategy applied
    normalisation: dict  # {mean, std, origin}: what the DataModule applies (recorded in results.json)
    pretrain: dict  # load_pretrained's key accounting
    finetune: dict  # apply_finetune's record


def build_data(cfg: DictConfig, mean, std, **loader):
    """(task, DataModule) for a config; `loader`: pin_memory / persistent_workers."""
    from medtransfer.train.tasks import task_for

    task = task_for(cfg)
    return task, task.datamodule(cfg, mean, std, **loader)


def build(cfg: DictConfig, **loader) -> Built:
    """The data, network and task of one training job (seeded with cfg.seed)."""
    import lightning as L

    from medtransfer.train.tasks import task_for

    L.seed_everything(int(cfg.seed), workers=True)
    task = task_for(cfg)
    mean, std, origin = task.normalisation(cfg)
    dm = task.datamodule(cfg, mean, std, **loader)
    model = task.build_model(cfg, dm)
    pretrain, finetune = task.initialise(cfg, model)  # weights, then what trains (2D: pretrain + finetune)
    return Built(task, dm, model, {"mean": mean, "std": std, "origin": origin}, pretrain, finetune)


def build_module(cfg: DictConfig, built: Built, model, cfg_dict: dict, channels_last: bool):
    """The task's LightningModule around `model` (the built network, possibly compiled / channels-last)."""
    from hydra.utils import instantiate

    return built.task.module(
        cfg, model, built.dm, channels_last=channels_last, loss=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optimizer), schedule=instantiate(cfg.schedule),
        encoder_lr_factor=float(cfg.encoder_lr_factor), monitor=cfg.monitor, cfg=cfg_dict,
        normalisation=built.normalisation)
