"""The LightningModules: a task-agnostic base (training step, param groups, schedule, resume state) and binary
segmentation (its metrics and native-size scoring); classification is train/classification.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F

from medtransfer.metrics import SegMetrics, surface_metrics


def score_at_native_size(logits: torch.Tensor, batch: dict, metrics: SegMetrics, threshold: float,
                         surface: list[dict] | None = None, in_fov: bool = False,
                         spacing: tuple[float, float] | None = None) -> list[tuple[str, object]]:
    """Score a test batch against its native-resolution masks (the papers' numbers) and return each image's
    binary prediction at that size as (id, bool H×W array). ``in_fov``: count pixels inside the batch's
    native field-of-view masks only (``fov_native``, DRIVE), for the overlap and the surface metrics alike.
    ``spacing``: the dataset's (row, column) pixel size in mm at native size, for HD95/ASSD in mm (None: px).
    Shared by training's test step and eval.py, so both score the same way."""
    ids = batch.get("id") or [str(i) for i in range(len(logits))]
    fovs = batch["fov_native"] if in_fov else None
    out = []
    for i, mask in enumerate(batch["mask_native"]):
        h, w = mask.shape[-2:]
        prob = torch.sigmoid(F.interpolate(logits[i : i + 1].float(), size=(h, w), mode="bilinear",
                                           align_corners=False))
        target = mask.reshape(1, 1, h, w).to(prob.device)
        valid = fovs[i].reshape(1, 1, h, w).to(prob.device) if fovs is not None else None
        metrics.update(prob, target, [ids[i]], valid=valid)
        pred = (prob[0, 0] >= threshold).cpu().numpy()
        if surface is not None:
            t = target[0, 0].cpu().numpy() > 0
            region = valid[0, 0].cpu().numpy() > 0 if valid is not None else True
            surface.append({"id": ids[i], **surface_metrics(pred & region, t & region, spacing=spacing)})
        out.append((ids[i], pred))
    return out


def gather_rows(rows: list[dict]) -> list[dict]:
    """Per-image rows from every DDP rank, once per id (DistributedSampler pads ranks with repeated images)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, rows)
    return list({r["id"]: r for part in parts for r in part}.values())


def monitor_mode(monitor: str) -> str:
    """"min" for a loss, else "max": what "better" means for the checkpoint, early stopping and plateau."""
    return "min" if monitor.rsplit("/", 1)[-1].endswith("loss") else "max"


class TaskModule(L.LightningModule):
    """What every task's LightningModule shares: the training step on `target(batch)`, encoder/decoder (or
    head) parameter groups with the encoder LR factor, the schedule, throughput counters, and the state a
    resumed fit must restore. A task subclass adds its metrics and how a case is scored."""

    def __init__(self, model: torch.nn.Module, loss: torch.nn.Module, optimizer: Callable, schedule: Callable,
                 encoder_lr_factor: float = 1.0, monitor: str = "val/dice_per_image", cfg: dict | None = None,
                 channels_last: bool = False, normalisation: dict | None = None, labels: dict | None = None):
        super().__init__()
        # the resolved config travels inside every checkpoint: eval.py rebuilds the model from it, and feeds
        # it the mean/std this run applied (whatever the source's defaults become later); a classifier's
        # label kind and names too (its head's size; eval.py matches labels by name; an inferred kind is in
        # no config)
        self.save_hyperparameters({"cfg": cfg or {}, "normalisation": normalisation,
                                   **({"labels": labels} if labels else {})})
        self.model, self.loss = model, loss
        self.optimizer_factory, self.schedule_factory = optimizer, schedule
        self.encoder_lr_factor, self.monitor = encoder_lr_factor, monitor
        self.channels_last = channels_last
        self.val_history: list[dict] = []  # per-epoch validation metrics (convergence, learning curves)
        self._train_images = 0
        self._train_time = 0.0

    def target(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    # ---- training -------------------------------------------------------------------------------------
    def on_train_batch_start(self, batch, batch_idx):
        self._t0 = time.perf_counter()

    def training_step(self, batch, batch_idx):
        logits = self(batch["image"])
        loss = self.loss(logits, self.target(batch))
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self._train_time += time.perf_counter() - self._t0
        self._train_images += len(batch["image"])

    def record_val_epoch(self, scalars: dict[str, float]) -> None:
        self.log_dict(scalars, prog_bar=False)
        if not self.trainer.sanity_checking:
            self.val_history.append({"epoch": self.current_epoch, **{k[4:]: v for k, v in scalars.items()}})

    # ---- optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self):
        groups = self.model.param_groups()
        base_lr = self.optimizer_factory.keywords.get("lr") if hasattr(self.optimizer_factory, "keywords") else None
        param_groups = []
        for name, params in groups.items():
            params = [p for p in params if p.requires_grad]
            if not params:
                continue
            group = {"params": params, "name": name}
            if name == "encoder" and base_lr is not None:
                group["lr"] = base_lr * self.encoder_lr_factor
            param_groups.append(group)
        optimizer = self.optimizer_factory(param_groups)
        sched = self.schedule_factory(optimizer, total_steps=max(1, int(self.trainer.estimated_stepping_batches)),
                                      monitor=self.monitor, mode=monitor_mode(self.monitor))
        return {"optimizer": optimizer, "lr_scheduler": sched}

    # ---- resume: what results.json is built from must survive a restart from last.ckpt ---------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["medtransfer"] = {"val_history": self.val_history, "train_images": self._train_images,
                                     "train_time": self._train_time}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # only a resumed fit restores the history: `trainer.test(ckpt_path=best)` must not roll it back to
        # the best epoch's snapshot
        if self._trainer is None or self.trainer.state.fn != "fit":
            return
        state = checkpoint.get("medtransfer") or {}
        self.val_history = list(state.get("val_history", []))
        self._train_images = int(state.get("train_images", 0))
        self._train_time = float(state.get("train_time", 0.0))

    @property
    def train_images_per_second(self) -> float | None:
        return self._train_images / self._train_time if self._train_time else None


class SegmentationModule(TaskModule):
    def __init__(self, model: torch.nn.Module, loss: torch.nn.Module, optimizer: Callable, schedule: Callable,
                 encoder_lr_factor: float = 1.0, threshold: float = 0.5, monitor: str = "val/dice_per_image",
                 eval_surface: bool = False, cfg: dict | None = None, channels_last: bool = False,
                 metrics_in_fov: bool = False, spacing: tuple[float, float] | None = None,
                 normalisation: dict | None = None):
        super().__init__(model, loss, optimizer, schedule, encoder_lr_factor=encoder_lr_factor, monitor=monitor,
                         cfg=cfg, channels_last=channels_last, normalisation=normalisation)
        self.threshold, self.eval_surface = threshold, eval_surface
        self.metrics_in_fov = metrics_in_fov  # validation and test count inside the batch's FOV masks
        self.spacing = spacing  # native pixel size in mm for HD95/ASSD (None: pixels)
        self.val_metrics = SegMetrics(threshold=threshold)
        self.test_metrics = SegMetrics(threshold=threshold)
        self.test_surface: list[dict] = []

    def target(self, batch: dict) -> torch.Tensor:
        return batch["mask"]

    # ---- validation -----------------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        logits = self(batch["image"])
        self.log("val/loss", self.loss(logits, batch["mask"]), on_epoch=True, batch_size=len(batch["image"]))
        self.val_metrics.update(torch.sigmoid(logits.float()), batch["mask"], batch.get("id"),
                                valid=batch["fov"] if self.metrics_in_fov else None)

    def on_validation_epoch_end(self):
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        scalars = {f"val/{k}": float(v) for k, v in values.items() if not k.startswith("n_")}
        self.record_val_epoch(scalars)
        self.log("val/dice", scalars["val/dice_per_image"], prog_bar=True)

    # ---- test at native mask resolution ---------------------------------------------------------------
    def test_step(self, batch, batch_idx):
        score_at_native_size(self(batch["image"]), batch, self.test_metrics, self.threshold,
                             self.test_surface if self.eval_surface else None, self.metrics_in_fov, self.spacing)

    def on_test_epoch_end(self):
        self.test_surface = gather_rows(self.test_surface)
        values = self.test_metrics.compute()
        self.log_dict({f"test/{k}": float(v) for k, v in values.items()})
