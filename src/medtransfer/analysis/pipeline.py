"""`medtransfer analyze` end to end: checkpoints (or their initialisation) + images → CSV + Markdown + PNG.

The comparison is only meaningful on identical inputs, so every model sees the same images at the same
size (the first checkpoint's image_size), each normalised with its own pretraining mean/std, and both sides
of a comparison are sampled at the same spatial positions (flatten_activations is shape-seeded).

Initialisation (`--init`) is rebuilt, not stored: medtransfer.networks.initial_network (seed → network →
pretrained weights), the builder training itself uses (train/build.py). That reproduces the run's start
exactly only with the same library versions (timm/torch init code) and the same cached pretrained file;
results.json's `versions` records what the run used. A scratch run's init check: filter change vs init is 0
at step 0. `--images NAME` takes the dataset from a given checkpoint's own config, never from conf/.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medtransfer.analysis.activations import layer_activations
from medtransfer.analysis.similarity import flatten_activations, linear_cka, pwcca
from medtransfer.analysis.weights import feature_reuse, filter_change, layer_filter_change
from medtransfer.errors import ConfigError
from medtransfer.files import write_csv

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def auto_layers(model) -> list[str]:
    """Encoder stages, neck/decoder blocks and the head: the direct children with weights of
    encoder.backbone, neck and decoder (a ModuleList's items instead of the list), norm layers skipped."""
    from torch import nn

    names = []
    modules = dict(model.named_modules())
    for parent in ("encoder.backbone", "neck", "decoder"):
        mod = modules.get(parent)
        if mod is None:
            continue
        for child_name, child in mod.named_children():
            items = list(child.named_children()) if isinstance(child, nn.ModuleList) else [("", child)]
            for sub, m in items:
                if "Norm" in type(m).__name__ or not any(True for _ in m.parameters()):
                    continue
                names.append(".".join(x for x in (parent, child_name, sub) if x))
    if "head" in modules:
        names.append("head")
    return names


def load_images(source: str, n_images: int, image_size: int, configs=(), split: str | None = None):
    """(N, 3, S, S) float tensor in [0, 1] (not normalised) from a folder of images or the name of a given
    checkpoint's dataset (`configs`: the checkpoints' training configs, first = the reference)."""
    import torch

    path = Path(source)
    if path.is_dir():
        folder = path / "images" if (path / "images").is_dir() else path
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n_images]
        if not files:
            raise ConfigError(f"--images {source}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        from PIL import Image

        arrs = [np.asarray(Image.open(f).convert("RGB").resize((image_size, image_size), Image.BILINEAR))
                for f in files]
        return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0
    return _dataset_images(source, n_images, image_size, list(configs), split)


def _dataset_images(name: str, n_images: int, image_size: int, configs: list, split):
    """Test images of a dataset named by a checkpoint's own config (where it lives, its options): library
    code does not read the project's conf/ folder. The first checkpoint's dataset keeps its training split's
    test part; another checkpoint's dataset gives all its images (as eval.py does out of distribution)."""
    import torch
    from omegaconf import OmegaConf

    from medtransfer.data import ClsDataModule, SegDataModule, dataset_task

    known = [c for c in configs if c.dataset.name == name]
    if not known:
        names = sorted({str(c.dataset.name) for c in configs})
        raise ConfigError(f"--images {name}: neither a folder nor the dataset of a given checkpoint "
                          f"(valid choices: a folder of images, {', '.join(names) or 'no checkpoint given'})")
    train_cfg = known[0]
    cfg = OmegaConf.to_container(train_cfg.dataset, resolve=True)
    cfg["split"] = split or (cfg.get("split") if train_cfg is configs[0] else "all")
    module = ClsDataModule if dataset_task(cfg) == "classification" else SegDataModule
    dm = module(cfg, image_size=image_size, augment="none", batch_size=8, num_workers=0, seed=int(train_cfg.seed),
                mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    dm.prepare_data()
    dm.setup("test")
    out, n = [], 0
    for batch in dm.test_dataloader():
        out.append(batch["image"])
        n += len(batch["image"])
        if n >= n_images:
            break
    return torch.cat(out)[:n_images]


def normalised(images, train_cfg):
    import torch

    from medtransfer.pretrain import normalisation

    mean, std = normalisation(train_cfg.pretrain, train_cfg.encoder.name)
    return (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def compare_models(model_a, model_b, images_a, images_b, layers: Sequence[str], max_samples: int = 4096,
                   seed: int = 0, batch_size: int = 8) -> list[dict]:
    """Per layer: linear CKA, PWCCA (NaN + note when there are too few samples) and mean CCA."""
    acts_a = layer_activations(model_a, images_a, layers, batch_size=batch_size)
    acts_b = layer_activations(model_b, images_b, layers, batch_size=batch_size)
    rows = []
    for layer in layers:
        a, b = acts_a[layer], acts_b[layer]
        if a.shape != b.shape:
            raise ConfigError(f"layer {layer}: activation shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
        x = flatten_activations(a, max_samples, seed)
        y = flatten_activations(b, max_samples, seed)
        row = {"layer": layer, "shape": "x".join(map(str, a.shape[1:])), "n_samples": x.shape[0],
               "n_neurons": x.shape[1], "cka": linear_cka(x, y), "note": ""}
        try:
            sim, _, rho = pwcca(x, y, return_parts=True)
            row["pwcca"], row["mean_cca"] = sim, float(rho.mean()) if rho.size else float("nan")
        except ValueError as e:
            row.update(pwcca=float("nan"), mean_cca=float("nan"), note=str(e))
        rows.append(row)
    return rows


def _state(model) -> dict:
    return {k: v for k, v in model.state_dict().items()}


def run_analysis(ckpts: Sequence[str], out: str | Path, init: bool = False, scratch: Sequence[str] = (),
                 images: str | None = None, layers: Sequence[str] | None = None, n_images: int = 16,
                 split: str | None = None, max_samples: int = 4096, seed: int = 0, batch_size: int = 8) -> dict:
    """See cli.py for the modes. Returns {"similarity": rows, "filter_change": rows, "reuse": rows, files}."""
    import pandas as pd

    from medtransfer.networks import initial_network, load_checkpoint

    if not init and (len(ckpts) != 2 or scratch):
        raise ConfigError("analyze: give two checkpoints, or checkpoints with --init (and optionally --scratch)")
    out = Path(out)
    all_ckpts = [*ckpts, *scratch]
    loaded = [load_checkpoint(c) for c in all_ckpts]  # by position: the same path may be given twice
    first = loaded[0]
    size = int(first.cfg.image_size)
    if images is None:
        raise ConfigError("analyze: --images DIR_or_dataset is required")
    raw = load_images(images, n_images, size, [c.cfg for c in loaded], split)
    layers = list(layers) if layers else auto_layers(first.model)
    pairs = []  # (label_a, model_a, checkpoint_a, label_b, model_b, checkpoint_b, group)
    if init:
        for i, (c, ck) in enumerate(zip(all_ckpts, loaded)):
            pairs.append((c, ck.model, ck, f"init({Path(c).name})", None, ck,  # init rebuilt when compared
                          "scratch" if i >= len(ckpts) else "transfer" if scratch else "vs_init"))
    else:
        a, b = loaded
        pairs.append((ckpts[0], a.model, a, ckpts[1], b.model, b, "pair"))
    sim_rows, fc_rows = [], []
    for k, (la, ma, ca, lb, mb, cb, group) in enumerate(pairs):
        mb = initial_network(cb.cfg, cb.labels) if mb is None else mb
        for r in compare_models(ma, mb, normalised(raw, ca.cfg), normalised(raw, cb.cfg), layers, max_samples,
                                seed, batch_size):
            sim_rows.append({"pair": k, "a": la, "b": lb, "group": group, **r})
        try:
            per_param = filter_change(_state(ma), _state(mb))
        except ValueError as e:
            per_param = {}
            print(f"warning: filter change {la} vs {lb} skipped: {e}")
        pooled = layer_filter_change(per_param, layers)
        fc_rows += [{"pair": k, "a": la, "b": lb, "group": group, "layer": name, "rel_change": v}
                    for name, v in pooled.items()]
    sim = pd.DataFrame(sim_rows)
    fc = pd.DataFrame(fc_rows)
    files = [write_csv(out / "similarity.csv", sim), write_csv(out / "filter_change.csv", fc)]
    reuse = pd.DataFrame()
    if init and scratch:
        rows = []
        for measure in ("pwcca", "cka"):
            by = {g: {layer: sim[(sim.group == g) & (sim.layer == layer)][measure].tolist() for layer in layers}
                  for g in ("transfer", "scratch")}
            for layer, v in feature_reuse(by["transfer"], by["scratch"]).items():
                rows.append({"measure": measure, "layer": layer, **v})
        reuse = pd.DataFrame(rows)
        files.append(write_csv(out / "feature_reuse.csv", reuse))
    from medtransfer.analysis.report import write_markdown

    if init and not fc.empty and fc["rel_change"].median() > 1.2:  # unrelated random weights give ≈ √2
        print("warning: filter change vs the rebuilt init is ≈ √2 or more: the initialisation was probably not "
              "reproduced (different library versions or pretrained file?)", file=sys.stderr)
    files += write_markdown(out, sim, fc, reuse, layers, n_images=len(raw), image_size=size, source=images,
                            init=init)
    return {"similarity": sim, "filter_change": fc, "reuse": reuse, "files": files, "layers": layers}
