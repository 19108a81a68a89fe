"""Section 1 of `make bench`: training-step throughput, medtransfer's Lightning path vs a bare PyTorch loop.

Both arms train their own copy of one `build_model` network (identical initial weights) on the SAME
pre-collated batches held in memory (on CUDA: pinned host memory), with the same loss (BCEDiceLoss), the same
optimizer (AdamW on the model's encoder/decoder param groups, as SegmentationModule builds it), the same
per-step constant LR schedule and the same precision (autocast for bf16-mixed). Arms are interleaved
(L B, B L, L B, ...), each repeat is one fresh `Trainer.fit` of `steps` steps (a fresh optimizer in both
arms), a warm-up repeat of each arm comes first and is excluded, and each arm's figure is the median.

Lightning arm = `SegmentationModule` + `lightning.Trainer` as medtransfer builds it for a run (CSV logger,
`log_every_n_steps` from conf/trainer/default.yaml; no checkpointing, no validation, no progress bar). Its
time is the epoch window (on_train_epoch_start → on_train_epoch_end): every per-step cost Lightning adds
(batch fetch and transfer, hooks, closure, logging) is inside; one-off `fit` set-up is not (that is the
sweep section's job overhead).
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
import warnings
from functools import partial

import bench_common as bc


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*val_dataloader.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")


def make_batches(n: int, batch: int, size: int, channels_last: bool, pin: bool, seed: int = 0) -> list[dict]:
    import torch

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, size, size, generator=g)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = (torch.rand(batch, 1, size, size, generator=g) > 0.7).float()
        if pin:
            x, y = x.pin_memory(), y.pin_memory()
        out.append({"image": x, "mask": y})
    return out


def _optimizer(model, lr: float = 1e-4, weight_decay: float = 0.01):
    import torch

    groups = [{"params": [p for p in ps if p.requires_grad], "name": n} for n, ps in model.param_groups().items()]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay)


def _lightning_arm(module, batches, device: str, precision: str, tmp: str, log_every: int) -> dict:
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader

    class Timer(L.Callback):
        t0 = t1 = None

        def on_train_epoch_start(self, trainer, pl_module):
            bc.sync(device)
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            bc.sync(device)
            self.t1 = time.perf_counter()

    timer = Timer()
    trainer = L.Trainer(
        accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, precision=precision, max_epochs=1,
        logger=CSVLogger(save_dir=tmp, name="", version=""), log_every_n_steps=log_every,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[timer], default_root_dir=tmp,
    )
    loader = DataLoader(batches, batch_size=None, shuffle=False, num_workers=0)
    trainer.fit(module, train_dataloaders=loader)
    return {"s": timer.t1 - timer.t0, "steps": trainer.global_step}


def _bare_arm(model, loss_fn, batches, device: str, precision: str) -> dict:
    import torch
    from torch.optim.lr_scheduler import LambdaLR

    model.train()
    opt = _optimizer(model)
    sched = LambdaLR(opt, lambda step: 1.0)  # schedules.constant, stepped per step like Lightning's
    bf16 = precision.startswith("bf16")
    dev = torch.device(device)
    bc.sync(device)
    t0 = time.perf_counter()
    for b in batches:
        x = b["image"].to(dev, non_blocking=True)
        y = b["mask"].to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
    bc.sync(device)
    return {"s": time.perf_counter() - t0, "steps": len(batches)}


def bench_config(encoder: str, decoder: str, size: int, batch: int, device: str, precision: str = "32-true",
                 compile_model: bool = False, warmup: int = 1, steps: int = 1, repeats: int = 3,
                 log=print) -> dict:
    """One configuration, both arms interleaved; returns the results.json entry (without pipeline figures)."""
    import torch

    from medtransfer.models import build_model
    from medtransfer.train.losses import BCEDiceLoss
    from medtransfer.train.module import SegmentationModule
    from medtransfer.train.schedules import constant

    _quiet_lightning()
    enc_cfg, dec_cfg = bc.load_yaml("encoder", encoder), bc.load_yaml("decoder", decoder)
    cuda = device.startswith("cuda")
    channels_last = cuda and enc_cfg.get("family") == "cnn"  # what trainer=gpu does for CNN encoders
    log_every = int(bc.load_yaml("trainer", "default").get("log_every_n_steps", 10))
    name = f"{encoder}-{decoder}-{size}px-b{batch}-{precision}" + ("-compile" if compile_model else "")
    log(f"[bench] train {name}: warm-up {warmup} step(s), then {repeats} x {steps} step(s) per arm, interleaved")

    with bc.PeakMemory(device) as mem:
        torch.manual_seed(0)
        net = build_model(enc_cfg, dec_cfg, num_classes=1, image_size=size)
        nets = {"lightning": net, "bare": copy.deepcopy(net)}
        for k, m in nets.items():
            m.to(device)
            if channels_last:
                m.to(memory_format=torch.channels_last)
        runners = {}
        with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
            module = SegmentationModule(
                model=torch.compile(nets["lightning"]) if compile_model else nets["lightning"],
                loss=BCEDiceLoss(), optimizer=partial(torch.optim.AdamW, lr=1e-4, weight_decay=0.01),
                schedule=partial(constant), eval_surface=False, cfg={},
            )
            # a compiled module forwards attribute access (param_groups()) to the original
            bare_model = torch.compile(nets["bare"]) if compile_model else nets["bare"]
            loss_b = BCEDiceLoss()
            runners["lightning"] = lambda bs: _lightning_arm(module, bs, device, precision, tmp, log_every)
            runners["bare"] = lambda bs: _bare_arm(bare_model, loss_b, bs, device, precision)

            times = {"lightning": [], "bare": []}
            if warmup > 0:
                wb = make_batches(warmup, batch, size, channels_last, pin=cuda, seed=1)
                for arm in ("lightning", "bare"):
                    t = runners[arm](wb)
                    log(f"[bench]   warm-up {arm}: {t['s']:.2f} s")
            bs = make_batches(steps, batch, size, channels_last, pin=cuda, seed=2)
            for r in range(repeats):
                order = ("lightning", "bare") if r % 2 == 0 else ("bare", "lightning")
                for arm in order:
                    t = runners[arm](bs)
                    if t["steps"] != steps:
                        raise RuntimeError(f"{arm} arm ran {t['steps']} steps, expected {steps}")
                    times[arm].append(t["s"])
                    log(f"[bench]   repeat {r + 1} {arm}: {t['s']:.3f} s = {steps * batch / t['s']:.2f} img/s")
            module_ips = module.train_images_per_second

    ips = {arm: [steps * batch / s for s in ts] for arm, ts in times.items()}
    paired = [lt / bt for lt, bt in zip(ips["lightning"], ips["bare"])]
    med = {arm: bc.median(v) for arm, v in ips.items()}
    return {
        "name": name, "encoder": encoder, "decoder": decoder, "image_size": size, "batch_size": batch,
        "precision": precision, "compile": compile_model, "channels_last": channels_last, "device": device,
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "steps": {"warmup": warmup, "per_repeat": steps, "repeats": repeats},
        "lightning_images_per_s": bc.rnd(med["lightning"]), "bare_images_per_s": bc.rnd(med["bare"]),
        "lightning_repeats_images_per_s": [bc.rnd(x) for x in ips["lightning"]],
        "bare_repeats_images_per_s": [bc.rnd(x) for x in ips["bare"]],
        # headline: median of the interleaved pairs' ratios (robust to drift); also the ratio of medians
        "lightning_vs_bare": bc.rnd(bc.median(paired), 4),
        "lightning_vs_bare_of_medians": bc.rnd(med["lightning"] / med["bare"], 4),
        "module_reported_images_per_s": bc.rnd(module_ips),
        "step_s_bare": bc.rnd(batch / med["bare"], 4), "step_s_lightning": bc.rnd(batch / med["lightning"], 4),
        "peak_rss_mb": mem.rss_mb, "max_allocated_mb": mem.cuda_mb,
    }
