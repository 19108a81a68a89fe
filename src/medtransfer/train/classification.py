"""The LightningModule for classification (binary, multi-label, multi-class): loss on `batch["label"]`,
probabilities by the label kind, ClsMetrics on validation and test. Ten-crop batches (B, 10, 3, H, W), from
`augment=cls_benchmark`'s test part, are scored by the mean of the ten crops' probabilities (`predict_probs`).

Why validation loss is accumulated here rather than read back from `self.log`: `val/loss` must be in the
epoch's `val_history` (the benchmark monitors it: plateau ×0.5 patience 5, early stopping), and Lightning
reduces logged epoch values only after `on_validation_epoch_end`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from medtransfer.metrics import ClsMetrics
from medtransfer.train.module import TaskModule


class ClassificationModule(TaskModule):
    def __init__(self, model: torch.nn.Module, loss: torch.nn.Module, optimizer: Callable, schedule: Callable,
                 kind: str, labels: Sequence[str], threshold: float = 0.5, encoder_lr_factor: float = 1.0,
                 monitor: str = "val/auroc", cfg: dict | None = None, channels_last: bool = False,
                 normalisation: dict | None = None):
        super().__init__(model, loss, optimizer, schedule, encoder_lr_factor=encoder_lr_factor, monitor=monitor,
                         cfg=cfg, channels_last=channels_last, normalisation=normalisation,
                         labels={"kind": kind, "names": list(labels)})
        self.kind, self.labels = kind, list(labels)
        self.val_metrics = ClsMetrics(kind, self.labels, threshold=threshold)
        self.test_metrics = ClsMetrics(kind, self.labels, threshold=threshold)
        self._val_loss, self._val_n = 0.0, 0

    def target(self, batch: dict) -> torch.Tensor:
        return batch["label"]

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return torch.softmax(logits, dim=1) if self.kind == "multiclass" else torch.sigmoid(logits)

    def predict_probs(self, image: torch.Tensor) -> torch.Tensor:
        """Probabilities of a batch (B, 3, H, W); of a ten-crop batch (B, K, 3, H, W), the mean of each
        image's K crops' probabilities (the JLiangLab benchmark's test: sigmoid, then the mean over crops)."""
        if image.ndim == 4:
            return self.probabilities(self(image))
        b, k = image.shape[:2]
        return self.probabilities(self(image.flatten(0, 1))).view(b, k, -1).mean(dim=1)

    def validation_step(self, batch, batch_idx):
        logits = self(batch["image"])  # one view per image: the benchmark ten-crops the test part only
        n = len(batch["image"])
        self._val_loss += float(self.loss(logits, batch["label"])) * n
        self._val_n += n
        self.val_metrics.update(self.probabilities(logits), batch["label"], batch.get("id"))

    def on_validation_epoch_end(self):
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        scalars = {f"val/{k}": float(v) for k, v in values.items() if not k.startswith("n_")}
        scalars["val/loss"] = self._val_loss / self._val_n if self._val_n else float("nan")
        self._val_loss, self._val_n = 0.0, 0
        self.record_val_epoch(scalars)
        self.log("val/auc", scalars.get("val/auroc", float("nan")), prog_bar=True)

    def test_step(self, batch, batch_idx):
        self.test_metrics.update(self.predict_probs(batch["image"]), batch["label"], batch.get("id"))

    def on_test_epoch_end(self):
        values = self.test_metrics.compute()
        self.log_dict({f"test/{k}": float(v) for k, v in values.items()})
