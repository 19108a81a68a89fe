"""`python eval.py ckpt=... dataset=...`: any checkpoint on any dataset (in- or out-of-distribution, paper 002).

A plain inference loop (no Trainer): the checkpoint carries its resolved config, so the model is rebuilt
exactly; the dataset may differ from the training one. Writes per_image.csv and summary.json atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from medtransfer.errors import ConfigError
from medtransfer.train.results import write_json_atomic

log = logging.getLogger("medtransfer")


def load_checkpoint(path: str | Path):
    """(model in eval mode, the training config) from a medtransfer Lightning checkpoint."""
    from medtransfer.data import dataset_task
    from medtransfer.models import build_model

    path = Path(path)
    if path.is_dir():  # a run directory: its best checkpoint
        path = path / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise ConfigError(f"ckpt={path}: no such file (give a .ckpt file or a run directory)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError/EOFError/pickle errors for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"ckpt={path}: unreadable ({type(e).__name__}: {first}); the file is truncated or not "
                          "a checkpoint: give a complete .ckpt file or a run directory") from None
    if not isinstance(ckpt, dict):
        raise ConfigError(f"ckpt={path}: not a medtransfer checkpoint (a {type(ckpt).__name__}, not a dict)")
    train_cfg = (ckpt.get("hyper_parameters") or {}).get("cfg")
    if not train_cfg:
        raise ConfigError(f"ckpt={path}: not a medtransfer checkpoint (no hyper_parameters.cfg)")
    train_cfg = OmegaConf.create(train_cfg)
    if (task := dataset_task(train_cfg.dataset)) != "segmentation":
        raise ConfigError(f"ckpt={path}: a {task} checkpoint; eval.py and analyze evaluate "
                          "segmentation checkpoints (classification checkpoints are tested inside their job)")
    applied = (ckpt.get("hyper_parameters") or {}).get("normalisation")
    if applied:  # what the run applied wins over what its source config would resolve to today
        train_cfg.pretrain.mean, train_cfg.pretrain.std = applied["mean"], applied["std"]
    model = build_model(train_cfg.encoder, train_cfg.decoder, num_classes=int(train_cfg.dataset.num_classes),
                        image_size=int(train_cfg.image_size))
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state, strict=True)
    return model.eval(), train_cfg


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate(cfg: DictConfig) -> dict:
    from medtransfer.data import SegDataModule, metrics_region, validate_dataset_cfg
    from medtransfer.metrics import SegMetrics
    from medtransfer.pretrain import normalisation
    from medtransfer.train.module import score_at_native_size
    from medtransfer.train.run import write_csv_atomic
    from medtransfer.train.tasks import merge_rows, pixel_spacing, plain_metrics, summarise_surface

    model, train_cfg = load_checkpoint(cfg.ckpt)
    dataset_cfg = OmegaConf.to_container(cfg.dataset if cfg.get("dataset") else train_cfg.dataset, resolve=True)
    same = dataset_cfg["name"] == train_cfg.dataset.name
    if cfg.split is not None:
        dataset_cfg["split"] = cfg.split
    elif not same:
        dataset_cfg["split"] = "all"
    validate_dataset_cfg(dataset_cfg)
    mean, std = normalisation(train_cfg.pretrain, train_cfg.encoder.name)
    seed = int(train_cfg.seed)
    dm = SegDataModule(dataset_cfg, image_size=int(train_cfg.image_size), augment="none",
                       batch_size=int(cfg.batch_size), num_workers=int(cfg.num_workers), seed=seed, mean=mean, std=std)
    dm.prepare_data()
    dm.setup("test")
    region = metrics_region(dataset_cfg)
    in_fov = region == "fov"
    ckpt = Path(cfg.ckpt).resolve()
    run_dir = ckpt if ckpt.is_dir() else ckpt.parent.parent
    out_dir = Path(cfg.out_dir) if cfg.out_dir else run_dir / "eval" / (
        f"{dataset_cfg['name']}-{dataset_cfg['split']}")
    out_dir.mkdir(parents=True, exist_ok=True)
    device = _device(cfg.device)
    model.to(device)
    metrics, surface = SegMetrics(threshold=float(cfg.threshold)), []
    pred_dir = out_dir / "predictions"
    with torch.inference_mode():
        for batch in dm.test_dataloader():
            logits = model(batch["image"].to(device))
            preds = score_at_native_size(logits, batch, metrics, float(cfg.threshold),
                                         surface if cfg.surface else None, in_fov, pixel_spacing(dataset_cfg))
            if cfg.save_predictions:
                from PIL import Image

                pred_dir.mkdir(exist_ok=True)
                for image_id, pred in preds:
                    Image.fromarray((pred * 255).astype("uint8")).save(pred_dir / f"{image_id}.png")
    summary = plain_metrics(metrics.compute())
    if cfg.surface:
        summary.update(summarise_surface(surface, pixel_spacing(dataset_cfg)))
    record = {"ckpt": str(ckpt), "dataset": dataset_cfg["name"], "split": dataset_cfg["split"],
              "trained_on": train_cfg.dataset.name, "condition": OmegaConf.to_container(train_cfg.condition),
              "seed": seed, "metrics": summary, "metrics_region": region, "split_detail": dm.split.to_dict()}
    write_csv_atomic(out_dir / "per_image.csv", merge_rows(metrics.per_image(), surface))
    write_json_atomic(out_dir / "summary.json", record)
    print(f"[medtransfer] eval {dataset_cfg['name']}/{dataset_cfg['split']}: dice_per_image="
          f"{summary['dice_per_image']:.4f} → {out_dir}")
    return record


def evaluate_also(cfg: DictConfig, ckpt: str | Path) -> dict:
    """`test_also`: each extra test set scored by `evaluate` on the job's selected checkpoint, so in- and
    out-of-distribution results come from one command (paper 002). Returns {name: {dataset, split, metrics}}."""
    out = {}
    for name, dataset in (cfg.get("test_also") or {}).items():
        record = evaluate(OmegaConf.create({
            "ckpt": str(ckpt), "dataset": OmegaConf.to_container(dataset, resolve=True), "split": None,
            "batch_size": int(cfg.batch_size), "num_workers": int(cfg.num_workers), "threshold": float(cfg.threshold),
            "surface": bool(cfg.eval_surface), "save_predictions": False, "out_dir": None, "device": "auto"}))
        out[str(name)] = {k: record[k] for k in ("dataset", "split", "metrics", "metrics_region")}
    return out
