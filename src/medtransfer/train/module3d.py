"""The LightningModule for 3D segmentation: patches in training, sliding windows on whole volumes in
validation and test, millimetre metrics on each case's original grid.

Why validation and test differ: validation runs every epoch, so it scores Dice on the preprocessed grid
(cheap, enough to select the best epoch and measure convergence); the test is the reported number, so the
argmax goes back to the case's original geometry first (`preprocess3d.to_original`, nearest) and is scored
against the label file as stored, at its own voxel size (`metrics.volume`: Dice, HD95, ASSD per foreground
label and their mean) — what nnU-Net and the MSD leaderboard do.

Sliding windows: MONAI's `sliding_window_inference` with the training patch as the window and paper 003's
overlap (24 of 96 voxels = 0.25), constant (uniform) blending.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from medtransfer.metrics.volume import aggregate_cases, case_scores, dice_score
from medtransfer.train.module import TaskModule

OVERLAP = 0.25  # paper 003: "24-voxel overlap" of 96-voxel blocks


class Segmentation3DModule(TaskModule):
    def __init__(self, model: torch.nn.Module, loss: torch.nn.Module, optimizer: Callable, schedule: Callable,
                 labels: Sequence[tuple[int, str]], patch_size: Sequence[int],
                 original_label: Callable[[str], np.ndarray] | None = None, overlap: float = OVERLAP,
                 sw_batch_size: int = 2, encoder_lr_factor: float = 1.0, monitor: str = "val/dice",
                 cfg: dict | None = None, channels_last: bool = False, normalisation: dict | None = None):
        super().__init__(model, loss, optimizer, schedule, encoder_lr_factor=encoder_lr_factor, monitor=monitor,
                         cfg=cfg, channels_last=channels_last, normalisation=normalisation,
                         labels={"values": [int(v) for v, _ in labels], "names": [str(n) for _, n in labels]})
        self.labels = [(int(v), str(n)) for v, n in labels]
        self.foreground = [n for v, n in self.labels if v != 0]
        self.patch_size, self.overlap, self.sw_batch_size = tuple(int(p) for p in patch_size), overlap, sw_batch_size
        self.original_label = original_label  # case id → its (X, Y, Z) label map as stored (the test's target)
        self._val_rows: list[dict] = []
        self._val_loss, self._val_n = 0.0, 0
        self.test_rows: list[dict] = []

    def target(self, batch: dict) -> torch.Tensor:
        return batch["label"]

    def infer(self, image: torch.Tensor) -> torch.Tensor:
        """Logits of whole volumes (B, K, X, Y, Z) by sliding windows of the training patch size."""
        from monai.inferers import sliding_window_inference

        return sliding_window_inference(image, roi_size=self.patch_size, sw_batch_size=self.sw_batch_size,
                                        predictor=self, overlap=self.overlap, mode="constant")

    # ---- validation: Dice on the preprocessed grid ----------------------------------------------------
    def validation_step(self, batch, batch_idx):
        logits = self.infer(batch["image"])
        self._val_loss += float(self.loss(logits, batch["label"])) * len(logits)
        self._val_n += len(logits)
        pred = logits.argmax(1).cpu().numpy()
        target = batch["label"][:, 0].cpu().numpy()
        for i in range(len(pred)):
            row = {f"dice/{n}": dice_score(pred[i] == v, target[i] == v) for v, n in self.labels if v != 0}
            row["dice"] = float(np.mean(list(row.values())))
            self._val_rows.append(row)

    def on_validation_epoch_end(self):
        scalars = {f"val/{k}": float(np.mean([r[k] for r in self._val_rows]))
                   for k in ("dice", *(f"dice/{n}" for n in self.foreground))} if self._val_rows else {}
        scalars["val/loss"] = self._val_loss / self._val_n if self._val_n else float("nan")
        self._val_rows, self._val_loss, self._val_n = [], 0.0, 0
        self.record_val_epoch(scalars)

    # ---- test: back to the original grid, mm metrics at the original spacing ---------------------------
    def test_step(self, batch, batch_idx):
        from medtransfer.data.preprocess3d import to_original

        pred = self.infer(batch["image"]).argmax(1).cpu().numpy()
        for i, case_id in enumerate(batch["id"]):
            meta = batch["meta"][i]
            original = to_original(pred[i], meta)
            target = self.original_label(case_id)
            self.test_rows.append({"id": case_id, **case_scores(original, target, self.labels,
                                                                meta["orig_spacing"])})

    def on_test_epoch_end(self):
        values = aggregate_cases(self.test_rows, self.foreground)
        self.log_dict({f"test/{k}": float(v) for k, v in values.items() if not isinstance(v, str)})

    def test_results(self) -> dict:
        return aggregate_cases(self.test_rows, self.foreground)
