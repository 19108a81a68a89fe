"""The network a run's config describes, and the network a checkpoint holds: the part of building a run that
training (train/build.py), eval.py and `medtransfer analyze` share.

Why below train/: analyze rebuilds a run's network (its initialisation, its trained weights) and, as a layer
beside train/, may not import it; one builder here keeps the three from drifting apart (they were three copies,
and two of them only knew segmentation). The dataset declares the task (data.dataset_task): segmentation →
encoder + decoder (models.build_model), classification → encoder + pooled head (models.build_classifier),
segmentation3d → one whole 3D network (models.net3d, MONAI).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medtransfer.data import LabelInfo
from medtransfer.errors import ConfigError


def build_network(cfg: DictConfig, labels: LabelInfo | None = None, volume: tuple[int, int] | None = None):
    """The untrained network of a run config (`labels`: a classifier's outputs, else read from its dataset's
    file, data.dataset_labels; `volume`: a 3D network's (input channels, classes), else read from its
    dataset.json)."""
    from medtransfer.data import dataset_labels, dataset_task

    task = dataset_task(cfg.dataset)
    if task == "segmentation3d":
        from medtransfer.data.volume_specs import volume_io
        from medtransfer.models.net3d import build_net3d

        in_channels, classes = volume or volume_io(cfg.dataset)
        return build_net3d(cfg.net3d, in_channels, classes)
    if task == "classification":
        from medtransfer.models import build_classifier

        labels = labels or dataset_labels(cfg.dataset)
        return build_classifier(cfg.encoder, num_outputs=labels.num_outputs,
                                dropout=float(cfg.decoder.get("dropout", 0.0)), image_size=int(cfg.image_size),
                                pooling=str(cfg.decoder.get("pooling", "auto")))
    from medtransfer.models import build_model

    return build_model(cfg.encoder, cfg.decoder, num_classes=int(cfg.dataset.num_classes),
                       image_size=int(cfg.image_size))


def initial_network(cfg: DictConfig, labels: LabelInfo | None = None):
    """The network as a run started it: seed → build → pretrained weights, the calls and order of training's
    build (train/build.py), so analyze can compare a trained checkpoint with its initialisation. Exact only
    with the run's library versions (timm/torch init code) and the same cached pretrained file."""
    import lightning as L

    from medtransfer.pretrain import load_pretrained

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = build_network(cfg, labels)
    if cfg.get("encoder") is not None:  # a 3D network (net3d) starts from scratch (checked at config time)
        load_pretrained(model, cfg.pretrain, cfg.encoder.name)
    return model.eval()


@dataclass
class Checkpoint:
    """A trained network (eval mode) with what it was trained on: the run's config (its pretrain mean/std set
    to what the run applied), the task, and a classifier's labels."""

    model: object
    cfg: DictConfig
    task: str
    labels: LabelInfo | None
    path: Path


def checkpoint_path(path: str | Path) -> Path:
    """A .ckpt file, or a run directory → its checkpoints/best.ckpt."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "best.ckpt"
    if not path.is_file():
        raise ConfigError(f"ckpt={path}: no such file (give a .ckpt file or a run directory)")
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The network and training config of a medtransfer Lightning checkpoint (file or run directory)."""
    import torch

    from medtransfer.data import dataset_labels, dataset_task

    path = checkpoint_path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError/EOFError/pickle errors for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"ckpt={path}: unreadable ({type(e).__name__}: {first}); the file is truncated or not "
                          "a checkpoint: give a complete .ckpt file or a run directory") from None
    if not isinstance(ckpt, dict):
        raise ConfigError(f"ckpt={path}: not a medtransfer checkpoint (a {type(ckpt).__name__}, not a dict)")
    hparams = ckpt.get("hyper_parameters") or {}
    if not hparams.get("cfg"):
        raise ConfigError(f"ckpt={path}: not a medtransfer checkpoint (no hyper_parameters.cfg)")
    train_cfg = OmegaConf.create(hparams["cfg"])
    applied = hparams.get("normalisation")
    if applied:  # what the run applied wins over what its source config would resolve to today
        train_cfg.pretrain.mean, train_cfg.pretrain.std = applied["mean"], applied["std"]
    task = dataset_task(train_cfg.dataset)
    labels = None
    if task == "classification":  # recorded by the module; older checkpoints: read again from the dataset
        stored = hparams.get("labels")
        labels = LabelInfo(stored["kind"], tuple(stored["names"])) if stored else dataset_labels(train_cfg.dataset)
    model = build_network(train_cfg, labels)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state, strict=True)
    return Checkpoint(model.eval(), train_cfg, task, labels, path)
