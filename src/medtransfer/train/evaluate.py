"""`python eval.py ckpt=... dataset=...`: any checkpoint on any dataset of its task (in- or out-of-distribution,
paper 002; a classifier on another dataset's shared labels, paper 004).

A plain inference loop (no Trainer): the checkpoint carries its resolved config, so the network is rebuilt
exactly (medtransfer.networks) and the data come from the same builder as training's (train/build.py) with
the dataset swapped. Writes per_image.csv (per case) and summary.json atomically under
<run dir>/eval/<dataset>-<split>/.

Classification matches labels by name, because datasets of one finding name and order their labels
differently (ChestX-ray14's 14 vs CheXpert's 5 competition labels): only the labels both sides have are
scored, in the dataset's order; the model's outputs and the dataset's labels left out are named in the
summary and on the console. Multi-class models need the same classes (a softmax over other classes is not a
probability of these).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from medtransfer.errors import ConfigError
from medtransfer.files import write_json, write_rows

log = logging.getLogger("medtransfer")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _eval_config(cfg: DictConfig, train_cfg: DictConfig) -> DictConfig:
    """The training config with the evaluated dataset (its test part: the training split's if it is the
    training dataset, else `all`, unless `split=` says) and test-time loading: no augmentation, no crops."""
    dataset = OmegaConf.to_container(cfg.dataset if cfg.get("dataset") else train_cfg.dataset, resolve=True)
    if cfg.split is not None:
        dataset["split"] = cfg.split
    elif dataset["name"] != train_cfg.dataset.name:
        dataset["split"] = "all"
    run_cfg = OmegaConf.create(OmegaConf.to_container(train_cfg))
    run_cfg.dataset = dataset
    run_cfg.augment, run_cfg.train_crop, run_cfg.select = "none", None, "best"
    run_cfg.batch_size, run_cfg.num_workers = int(cfg.batch_size), int(cfg.num_workers)
    return run_cfg


def evaluate(cfg: DictConfig) -> dict:
    from medtransfer.data import dataset_task, validate_dataset_cfg
    from medtransfer.networks import load_checkpoint
    from medtransfer.pretrain import normalisation
    from medtransfer.train.build import build_data

    ckpt = load_checkpoint(cfg.ckpt)
    if ckpt.task == "segmentation3d":
        raise ConfigError(f"ckpt={ckpt.path} is a 3D segmentation checkpoint: eval.py scores 2D runs only; its "
                          "test metrics are in the run's results.json and test_per_image.csv")
    run_cfg = _eval_config(cfg, ckpt.cfg)
    dataset_cfg = OmegaConf.to_container(run_cfg.dataset)
    validate_dataset_cfg(dataset_cfg)
    if (task := dataset_task(dataset_cfg)) != ckpt.task:
        raise ConfigError(f"ckpt={ckpt.path} is a {ckpt.task} checkpoint; dataset={dataset_cfg['name']} is a "
                          f"{task} dataset: choose a {ckpt.task} dataset")
    mean, std = normalisation(ckpt.cfg.pretrain, ckpt.cfg.encoder.name)
    _, dm = build_data(run_cfg, mean, std)
    dm.prepare_data()
    dm.setup("test")
    run_dir = Path(cfg.ckpt).resolve() if Path(cfg.ckpt).is_dir() else ckpt.path.resolve().parent.parent
    out_dir = Path(cfg.out_dir) if cfg.out_dir else run_dir / "eval" / f"{dataset_cfg['name']}-{dataset_cfg['split']}"
    out_dir.mkdir(parents=True, exist_ok=True)
    model = ckpt.model.to(_device(cfg.device))
    score = _classification if task == "classification" else _segmentation
    summary, rows, facts = score(cfg, model, dm, ckpt, dataset_cfg, out_dir)
    record = {"ckpt": str(ckpt.path.resolve()), "task": task, "dataset": dataset_cfg["name"],
              "split": dataset_cfg["split"], "trained_on": ckpt.cfg.dataset.name,
              "condition": OmegaConf.to_container(ckpt.cfg.condition), "seed": int(ckpt.cfg.seed),
              "metrics": summary, **facts, "split_detail": dm.split.to_dict()}
    write_rows(out_dir / "per_image.csv", rows)
    write_json(out_dir / "summary.json", record)
    return record


def _segmentation(cfg: DictConfig, model, dm, ckpt, dataset_cfg: dict, out_dir: Path):
    """Per-image overlap (+ surface) metrics at native mask size, as training's test step scores them."""
    from medtransfer.data import metrics_region
    from medtransfer.metrics import SegMetrics
    from medtransfer.train.module import score_at_native_size
    from medtransfer.train.tasks import merge_rows, pixel_spacing, plain_metrics, summarise_surface

    region = metrics_region(dataset_cfg)
    spacing = pixel_spacing(dataset_cfg)
    device = next(model.parameters()).device
    metrics, surface = SegMetrics(threshold=float(cfg.threshold)), []
    pred_dir = out_dir / "predictions"
    with torch.inference_mode():
        for batch in dm.test_dataloader():
            logits = model(batch["image"].to(device))
            preds = score_at_native_size(logits, batch, metrics, float(cfg.threshold),
                                         surface if cfg.surface else None, region == "fov", spacing)
            if cfg.save_predictions:
                from PIL import Image

                pred_dir.mkdir(exist_ok=True)
                for image_id, pred in preds:
                    Image.fromarray((pred * 255).astype("uint8")).save(pred_dir / f"{image_id}.png")
    summary = plain_metrics(metrics.compute())
    if cfg.surface:
        summary.update(summarise_surface(surface, spacing))
    print(f"[medtransfer] eval {dataset_cfg['name']}/{dataset_cfg['split']}: dice_per_image="
          f"{summary['dice_per_image']:.4f} → {out_dir}")
    return summary, merge_rows(metrics.per_image(), surface), {"metrics_region": region}


def match_labels(model_kind: str, model_names, data_kind: str, data_names, where: str) -> dict:
    """How a classifier's outputs map onto a dataset's labels, by name: {kind, labels (scored, in the dataset's
    order), outputs (model column per scored label), targets (dataset column per scored label; None for
    multiclass: class indices), model_only, dataset_only}. One-line ConfigError when nothing can be scored."""
    model_names, data_names = list(model_names), list(data_names)
    if (model_kind == "multiclass") != (data_kind == "multiclass"):
        raise ConfigError(f"{where}: a {model_kind} model ({model_names}) cannot score {data_kind} labels "
                          f"({data_names}): multiclass models need a multiclass dataset and the other way round")
    if model_kind == "multiclass":
        if sorted(model_names) != sorted(data_names):
            raise ConfigError(f"{where}: a multiclass model scores the same classes only; model classes "
                              f"{model_names}, dataset classes {data_names}")
        return {"kind": "multiclass", "labels": data_names, "outputs": [model_names.index(n) for n in data_names],
                "targets": None, "model_only": [], "dataset_only": []}
    shared = [n for n in data_names if n in model_names]
    if not shared:
        raise ConfigError(f"{where}: no label in common between the model's labels {model_names} and the "
                          f"dataset's labels {data_names}")
    return {"kind": "binary" if model_kind == data_kind == "binary" else "multilabel", "labels": shared,
            "outputs": [model_names.index(n) for n in shared], "targets": [data_names.index(n) for n in shared],
            "model_only": [n for n in model_names if n not in shared],
            "dataset_only": [n for n in data_names if n not in shared]}


def _classification(cfg: DictConfig, model, dm, ckpt, dataset_cfg: dict, out_dir: Path):
    """Per-case probabilities of the labels the model and the dataset share (match_labels) → ClsMetrics."""
    from medtransfer.metrics import ClsMetrics
    from medtransfer.train.tasks import plain_metrics

    where = f"ckpt={ckpt.path} on dataset={dataset_cfg['name']}"
    m = match_labels(ckpt.labels.kind, ckpt.labels.names, dm.label_kind, dm.label_names, where)
    device = next(model.parameters()).device
    metrics = ClsMetrics(m["kind"], m["labels"], threshold=float(cfg.threshold))
    with torch.inference_mode():
        for batch in dm.test_dataloader():
            logits = model(batch["image"].to(device)).float()
            probs = torch.softmax(logits, dim=1) if m["kind"] == "multiclass" else torch.sigmoid(logits)
            target = batch["label"] if m["targets"] is None else batch["label"][:, m["targets"]]
            metrics.update(probs[:, m["outputs"]].cpu(), target, batch.get("id"))
    summary = plain_metrics(metrics.compute())
    dropped = [f"model only: {', '.join(m['model_only'])}" if m["model_only"] else "",
               f"dataset only: {', '.join(m['dataset_only'])}" if m["dataset_only"] else ""]
    dropped = "; ".join(d for d in dropped if d)
    print(f"[medtransfer] eval {dataset_cfg['name']}/{dataset_cfg['split']}: auroc={summary['auroc']:.4f} on "
          f"{len(m['labels'])} shared label(s) {m['labels']}" + (f" (not scored: {dropped})" if dropped else "")
          + f" → {out_dir}")
    facts = {"labels": m["labels"], "label_kind": m["kind"],
             "labels_not_scored": {"model_only": m["model_only"], "dataset_only": m["dataset_only"]}}
    return summary, metrics.per_case(), facts


def evaluate_also(cfg: DictConfig, ckpt: str | Path) -> dict:
    """`test_also`: each extra test set scored by `evaluate` on the job's selected checkpoint, so in- and
    out-of-distribution results come from one command (paper 002). Returns {name: {dataset, split, metrics,
    and metrics_region (segmentation) or the scored labels (classification)}}."""
    out = {}
    for name, dataset in (cfg.get("test_also") or {}).items():
        record = evaluate(OmegaConf.create({
            "ckpt": str(ckpt), "dataset": OmegaConf.to_container(dataset, resolve=True), "split": None,
            "batch_size": int(cfg.batch_size), "num_workers": int(cfg.num_workers), "threshold": float(cfg.threshold),
            "surface": bool(cfg.eval_surface), "save_predictions": False, "out_dir": None, "device": "auto"}))
        out[str(name)] = {k: record[k] for k in ("dataset", "split", "metrics", "metrics_region", "labels")
                          if k in record}
    return out
