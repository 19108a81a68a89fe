"""Section `cls` of `make bench`: the classification data pipeline against the classifier's training step.

The goal (issue 10): the pipeline delivers at least 3× the images/s the model trains on, at 28 px (MedMNIST,
ResNet-18) and at 224 px (paper 004's benchmark, ResNet-50 with its augmentation). Both sides are measured
in this process on this machine:
- pipeline = `ClsDataModule` train loader (workers from config, non-persistent, a fresh iterator per epoch as
  Lightning makes) over a MedMNIST-layout file, after `setup` (which decodes and resizes once); median
  images/s over `repeats` epochs. The file is PneumoniaMNIST when the data root holds it (28 px, resized to
  224 at setup for the 224 arm, as MedMNIST v2's 224 results were), else a synthetic file of the same layout.
- model = a bare training step (forward, BCE-with-logits, backward, Adam step) of `build_classifier` on one
  pre-collated batch held in memory, median of `steps` timed steps after one warm-up: the fastest the model
  could consume images, so the ratio is a lower bound on the headroom.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import bench_common as bc

# encoder:size:batch:augment — MedMNIST v2 (r18, 28 px, batch 128, no augmentation) and paper 004's
# classification protocol (r50, 224 px, its RandomResizedCrop + flip + 7° rotation); batch 32 on CPU
DEFAULT_CLS = "r18:28:128:none,r50:224:32:cls_benchmark"
TINY_CLS = "r18:28:16:none,r18:64:8:cls_benchmark"


def parse(spec: str) -> list[tuple[str, int, int, str]]:
    out = []
    for c in spec.split(","):
        enc, size, batch, augment = c.split(":")
        out.append((enc, int(size), int(batch), augment))
    return out


def data_file(tmp: Path, n_train: int, tiny: bool) -> Path:
    """PneumoniaMNIST from the data root if there, else a synthetic grey binary file in the same layout."""
    import numpy as np

    from medtransfer import settings

    root = settings.data_root(required=False)
    if not tiny and root is not None and (root / "medmnist" / "pneumoniamnist.npz").is_file():
        return root / "medmnist" / "pneumoniamnist.npz"
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", n_train), ("val", 8), ("test", 8)):
        arrays[f"{part}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{part}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "synthetic_medmnist.npz"
    np.savez(path, **arrays)
    return path


def bench_pipeline(file: Path, size: int, batch: int, augment: str, workers: int, repeats: int,
                   max_images: int) -> dict:
    from omegaconf import OmegaConf

    from medtransfer.data.classification import ClsDataModule
    from medtransfer.pretrain.registry import IMAGENET_MEAN, IMAGENET_STD

    aug = OmegaConf.to_container(bc.load_yaml("augment", augment), resolve=True)
    cfg = {"name": "medmnist", "file": str(file), "n_train": max_images}
    t0 = time.perf_counter()
    dm = ClsDataModule(cfg, size, aug, batch, workers, 0, list(IMAGENET_MEAN), list(IMAGENET_STD))
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        n = sum(len(b["image"]) for b in dm.train_dataloader())
        rates.append(n / (time.perf_counter() - t))
    return {"file": file.name, "n_images": n, "setup_s": bc.rnd(setup_s), "augment": augment,
            "images_per_s": bc.rnd(bc.median(rates)), "repeats_images_per_s": [bc.rnd(x) for x in rates]}


def bench_model(encoder: str, size: int, batch: int, steps: int) -> dict:
    import torch

    from medtransfer.models import build_classifier

    torch.manual_seed(0)
    model = build_classifier(bc.load_yaml("encoder", encoder), num_outputs=1, image_size=size).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x, y = torch.randn(batch, 3, size, size), (torch.rand(batch, 1) > 0.5).float()
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        if i:  # the first step (allocation, kernel selection) is a warm-up
            times.append(time.perf_counter() - t)
    return {"images_per_s": bc.rnd(batch / bc.median(times)), "step_s": [bc.rnd(s) for s in times]}


def bench_cls(configs: list[tuple[str, int, int, str]], tmp: Path, workers: int, repeats: int, steps: int,
              tiny: bool, log=print) -> list[dict]:
    os.environ["MEDTRANSFER_CACHE_DIR"] = str(tmp / "cache")
    out = []
    for enc, size, batch, augment in configs:
        # enough images for several batches per epoch, few enough that an epoch at 224 px stays seconds
        max_images = batch * (4 if tiny else 16)
        file = data_file(tmp, max(max_images, 64), tiny)
        with bc.PeakMemory("cpu") as mem:
            pipe = bench_pipeline(file, size, batch, augment, workers, repeats, max_images)
            model = bench_model(enc, size, batch, steps)
        ratio = pipe["images_per_s"] / model["images_per_s"]
        log(f"[bench] cls {enc} {size}px batch {batch} augment={augment}: pipeline {pipe['images_per_s']} img/s "
            f"({workers} workers), model {model['images_per_s']} img/s → {ratio:.1f}×")
        out.append({"name": f"{enc} {size}px", "encoder": enc, "image_size": size, "batch_size": batch,
                    "num_workers": workers, "pipeline": pipe, "model": model,
                    "pipeline_vs_model": bc.rnd(ratio, 2), "peak_rss_mb": mem.rss_mb})
    return out
