"""What differs between tasks, in one object per task (timm's `timm/task/` idea: a task owns its loss, head
and scoring), so `run` stays task-agnostic.

A dataset declares its task (`dataset.task`: segmentation, the default, classification, or segmentation3d in
train/tasks3d.py). The task object builds the DataModule, the network and the LightningModule, says which
monitors and losses make sense, and turns a finished test into the `metrics.test` record and the per-case CSV
rows. Why here and not branches in `run`: 3D volumes added one class (and `uses_encoder`, which tells
validation whether the 2D encoder checks apply), not an `if` in every stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from medtransfer.errors import ConfigError, choices_msg
from medtransfer.runs import HEADLINE
from medtransfer.train.tasks3d import Segmentation3DTask

SEGMENTATION_LOSSES = ("medtransfer.train.losses.BCEDiceLoss",)
BCE_LOSS, CE_LOSS = "medtransfer.train.losses.MaskedBCEWithLogits", "medtransfer.train.losses.CrossEntropy"


def pixel_spacing(dataset_cfg) -> tuple[float, float] | None:
    """The dataset's native (row, column) pixel size in mm (`dataset.pixel_spacing`), None when unknown."""
    spacing = dataset_cfg.get("pixel_spacing") if hasattr(dataset_cfg, "get") else None
    return None if spacing is None else (float(spacing[0]), float(spacing[1]))


def summarise_surface(surface: list[dict], spacing: tuple[float, float] | None = None) -> dict:
    from medtransfer.metrics import aggregate_surface

    agg = aggregate_surface(surface, spacing=spacing)
    agg.pop("n_images")
    return agg


def plain_metrics(values: dict) -> dict:
    """A metrics object's compute() as JSON numbers: counts (`n_*`) as int, the rest as float."""
    return {k: (int(v) if k.startswith("n_") else float(v)) for k, v in values.items()}


def net3d_with_2d(cfg: DictConfig) -> str | None:
    """A 3D network (net3d) with a 2D dataset: an impossible cell, like a decoder with a classifier."""
    net = cfg.get("net3d")
    if net is not None and net.name != "none":
        return (f"net3d={net.name} with dataset={cfg.dataset.name}: a 2D dataset takes an encoder (and decoder), "
                "not a 3D network (net3d=none, the default)")
    return None


class EncoderWeights:
    """What the 2D tasks share: input mean/std from the pretraining source, then its weights loaded into the
    encoder and the fine-tuning strategy applied (the order every recorded run used)."""

    uses_encoder = True

    def normalisation(self, cfg: DictConfig):
        from medtransfer.pretrain import resolve_normalisation

        return resolve_normalisation(cfg.pretrain, cfg.encoder.name)

    def initialise(self, cfg: DictConfig, model) -> tuple[dict, dict]:
        from medtransfer.pretrain import apply_finetune, load_pretrained

        pretrain = load_pretrained(model, cfg.pretrain, cfg.encoder.name)
        return pretrain, apply_finetune(model, cfg.finetune, pretrain)


def merge_rows(rows: list[dict], surface: list[dict]) -> list[dict]:
    """Per-image overlap rows with each image's surface metrics (HD95/ASSD) joined by id."""
    by_id = {s["id"]: s for s in surface}
    return [{**r, **{k: v for k, v in by_id.get(r.get("id"), {}).items() if k != "id"}} for r in rows]


@dataclass(frozen=True)
class SegmentationTask(EncoderWeights):
    name: str = "segmentation"
    report_metric: str = HEADLINE["segmentation"]
    monitors: tuple[str, ...] = ("val/dice_per_image", "val/iou_per_image", "val/dice_pooled", "val/iou_pooled")

    def not_applicable(self, cfg: DictConfig, image_size: int) -> str | None:
        """Why this encoder × decoder × size cell cannot be built, else None."""
        from medtransfer.models import check_combination

        if (reason := net3d_with_2d(cfg)) is not None:
            return reason
        if cfg.decoder.name == "none":
            return None  # an error, not an impossible cell: check() names it
        try:
            check_combination(cfg.encoder, cfg.decoder, image_size)
        except ConfigError as e:
            return str(e)
        return None

    def check(self, cfg: DictConfig) -> None:
        """Config-time: a decoder is needed, and a segmentation loss."""
        if cfg.decoder.name == "none":
            raise ConfigError(f"decoder=none is for classification datasets; dataset={cfg.dataset.name} is "
                              "segmentation: choose a decoder (e.g. decoder=unet)")
        target = str(cfg.loss.get("_target_"))
        if target not in SEGMENTATION_LOSSES:
            raise ConfigError(f"loss ({target}) is not a segmentation loss; valid choices: bce, dice, bce_dice")
        from medtransfer.data.augment import EVAL_OPTIONS

        cls_only = sorted(k for k in EVAL_OPTIONS if cfg.augment.get(k) not in (None, False))
        if cls_only or cfg.augment.get("name") == "cls_benchmark":
            raise ConfigError(f"augment={cfg.augment.get('name')} ({', '.join(f'augment.{k}' for k in cls_only)}) "
                              "is classification-only (crops and ten-crop testing of images without masks); for "
                              "segmentation choose e.g. augment=flip")

    def datamodule(self, cfg: DictConfig, mean, std, **loader):
        from medtransfer.data import SegDataModule

        return SegDataModule(cfg.dataset, image_size=int(cfg.image_size), augment=cfg.augment,
                             batch_size=int(cfg.batch_size), num_workers=int(cfg.num_workers), seed=int(cfg.seed),
                             mean=mean, std=std, train_crop=cfg.get("train_crop"),
                             val_on_test=cfg.get("select") == "best_on_test", **loader)

    def build_model(self, cfg: DictConfig, dm):
        from medtransfer.networks import build_network

        return build_network(cfg)

    def module(self, run_cfg: DictConfig, model, dm, **common):
        """The LightningModule; `common` holds what every task's module takes (loss, optimizer, schedule,
        monitor, the resolved config as `cfg`, ...)."""
        from medtransfer.data import metrics_region
        from medtransfer.train.module import SegmentationModule

        return SegmentationModule(model=model, threshold=float(run_cfg.threshold),
                                  eval_surface=bool(run_cfg.eval_surface),
                                  metrics_in_fov=metrics_region(run_cfg.dataset) == "fov",
                                  spacing=pixel_spacing(run_cfg.dataset), **common)

    def record(self, cfg: DictConfig, dm) -> dict:
        from medtransfer.data import metrics_region

        return {"metrics_region": metrics_region(cfg.dataset)}

    def test_results(self, cfg: DictConfig, module) -> tuple[dict, list[dict]]:
        """`metrics.test` and the per-image rows (overlap + surface metrics merged by id). Under DDP the
        per-image gather is a collective: every rank calls this."""
        test = plain_metrics(module.test_metrics.compute())
        if cfg.eval_surface:
            test.update(summarise_surface(module.test_surface, pixel_spacing(cfg.dataset)))
        return test, merge_rows(module.test_metrics.per_image(), module.test_surface)


@dataclass(frozen=True)
class ClassificationTask(EncoderWeights):
    name: str = "classification"
    report_metric: str = HEADLINE["classification"]
    monitors: tuple[str, ...] = ("val/auroc", "val/loss", "val/accuracy", "val/balanced_accuracy", "val/f1")

    def not_applicable(self, cfg: DictConfig, image_size: int) -> str | None:
        """A decoder (or a 3D network) with a classification dataset: a grid cell that cannot exist."""
        if (reason := net3d_with_2d(cfg)) is not None:
            return reason
        if cfg.decoder.name != "none":
            return (f"decoder={cfg.decoder.name} with dataset={cfg.dataset.name}: a classification dataset "
                    "takes no decoder (decoder=none, the dataset's default)")
        return None

    def check(self, cfg: DictConfig) -> None:
        """Config-time: the loss the label kind needs; the options that only mean something for masks are
        refused rather than silently ignored."""
        from medtransfer.configs import plain
        from medtransfer.data import dataset_labels
        from medtransfer.data.classification import check_augment
        from medtransfer.models import check_classifier

        labels = dataset_labels(cfg.dataset)  # reads the label arrays only (inferred kind for dataset=medmnist)
        check_classifier(cfg.encoder, labels.num_outputs, int(cfg.image_size),
                         pooling=str(cfg.decoder.get("pooling", "auto")), dropout=float(cfg.decoder.get("dropout", 0.0)))
        kind = labels.kind
        want = CE_LOSS if kind == "multiclass" else BCE_LOSS
        target = str(cfg.loss.get("_target_"))
        if target != want:
            name = "cross_entropy" if want == CE_LOSS else "bce_logits"
            raise ConfigError(f"loss ({target}) does not fit dataset={cfg.dataset.name} ({kind} labels); "
                              f"use loss={name}")
        check_augment(plain(cfg.augment), int(cfg.image_size))  # test_resize / ten_crop, before any job
        if cfg.get("train_crop") is not None:
            raise ConfigError("train_crop is a segmentation option (random crops of image and mask); "
                              "classification takes train_crop=null")
        if cfg.get("select") == "best_on_test":
            raise ConfigError("select=best_on_test is paper 001's segmentation protocol; valid choices for "
                              "classification: best, last")
        if "ddp" in str(cfg.trainer.get("strategy", "")):
            raise ConfigError("classification metrics are not gathered across DDP ranks yet: use one device "
                              "(trainer=cpu or trainer=gpu)")

    def datamodule(self, cfg: DictConfig, mean, std, **loader):
        from medtransfer.data import ClsDataModule

        return ClsDataModule(cfg.dataset, image_size=int(cfg.image_size), augment=cfg.augment,
                             batch_size=int(cfg.batch_size), num_workers=int(cfg.num_workers), seed=int(cfg.seed),
                             mean=mean, std=std, **loader)

    def build_model(self, cfg: DictConfig, dm):
        """The DataModule's labels size the head (medtransfer.networks builds it; no second read of the file)."""
        from medtransfer.data import LabelInfo
        from medtransfer.networks import build_network

        return build_network(cfg, LabelInfo(dm.label_kind, tuple(dm.label_names)))

    def module(self, run_cfg: DictConfig, model, dm, **common):
        from medtransfer.train.classification import ClassificationModule

        return ClassificationModule(model=model, kind=dm.label_kind, labels=list(dm.label_names),
                                    threshold=float(run_cfg.threshold), **common)

    def record(self, cfg: DictConfig, dm) -> dict:
        return {"labels": list(dm.label_names), "label_kind": dm.label_kind}

    def test_results(self, cfg: DictConfig, module) -> tuple[dict, list[dict]]:
        return plain_metrics(module.test_metrics.compute()), module.test_metrics.per_case()


TASKS = {"segmentation": SegmentationTask(), "classification": ClassificationTask(),
         "segmentation3d": Segmentation3DTask()}


def task_for(cfg: DictConfig):
    from medtransfer.data import dataset_task  # the registry's fact, not the yaml's `task` key

    name = dataset_task(cfg.dataset)
    if name not in TASKS:
        raise ConfigError(choices_msg("dataset.task", name, TASKS))
    return TASKS[name]
