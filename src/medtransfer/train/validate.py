"""Config-time checks: every reason a job would fail that can be known without compute, as one line.

Run for a single job at the start of `run`, and for a whole `-m` grid before any job starts
(see `sweep.ValidateGridCallback`), so a 1,000-job sweep never dies at job 731 on a typo.

Why the optimiser, schedule and loss are built here for real (on a one-element dummy parameter): a setting
that only fails when instantiated (AdamW given SGD's ``momentum``, a typo added with ``+optimizer.lrr``, a
poly floor above the start LR) used to pass the grid check and then fail in every job.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from medtransfer.errors import ConfigError, NotApplicable

SELECT_CHOICES = ("best", "last", "best_on_test")


def _int(cfg: DictConfig, key: str, minimum: int = 1) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.isdigit()):
        raise ConfigError(f"{key}={value!r}: expected an integer >= {minimum}")
    if int(value) < minimum:
        raise ConfigError(f"{key}={value!r}: expected an integer >= {minimum}")
    return int(value)


def _float(cfg: DictConfig, key: str) -> float:
    try:
        return float(cfg.get(key))
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={cfg.get(key)!r}: expected a number") from None


def not_applicable_reason(cfg: DictConfig) -> str | None:
    """Why this cell cannot exist (encoder × decoder for its task × source), else None. Typos and bad values
    are not "not applicable": they stay errors whatever the sweep's `impossible_cells` says."""
    from medtransfer.pretrain.registry import available_encoders, plain
    from medtransfer.train.tasks import task_for

    task = task_for(cfg)
    reason = task.not_applicable(cfg, _int(cfg, "image_size") if task.uses_encoder else None)
    if reason or not task.uses_encoder:  # a 3D network has no encoder a source could lack weights for
        return reason
    source, encoder = plain(cfg.pretrain), cfg.encoder.name
    rejected = (source.get("rejected") or {}).get(encoder)
    if rejected:
        return f"pretrain={source.get('name')} encoder={encoder}: {rejected}"
    avail = available_encoders(source)
    if avail != "all" and encoder not in avail:
        return (f"pretrain={source.get('name')} has no weights for encoder={encoder}; "
                f"valid encoders for it: {', '.join(avail) or 'none'}")
    return None


def check_training_components(cfg: DictConfig) -> None:
    """Instantiate the loss, the optimiser (on the encoder/decoder groups the module builds) and the schedule;
    any failure becomes one line naming the group and its target."""
    import hydra
    import torch

    def build(group: str, fn):
        try:
            return fn()
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to build is a config error, reported in one line
            cause = e.__cause__ or e  # Hydra wraps the constructor's error in an InstantiationException
            msg = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            target = cfg[group].get("_target_", "?") if isinstance(cfg.get(group), DictConfig) else "?"
            raise ConfigError(f"{group} ({target}) cannot be built: {type(cause).__name__}: {msg}; "
                              f"check the {group}.* settings") from None

    build("loss", lambda: hydra.utils.instantiate(cfg.loss))
    factory = build("optimizer", lambda: hydra.utils.instantiate(cfg.optimizer))
    lr = getattr(factory, "keywords", {}).get("lr")
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "name": "decoder"},
              {"params": [torch.nn.Parameter(torch.zeros(1))], "name": "encoder"}]
    if lr is not None:
        groups[1]["lr"] = float(lr) * _float(cfg, "encoder_lr_factor")
    optimizer = build("optimizer", lambda: factory(groups))
    schedule = build("schedule", lambda: hydra.utils.instantiate(cfg.schedule))
    build("schedule", lambda: schedule(optimizer, total_steps=100, monitor=cfg.monitor))


def check_weights_available(cfg: DictConfig) -> None:
    """Offline (HF_HUB_OFFLINE=1), a source's file must already be in the cache; a manual-download source
    always. Checked before any job so a grid names every missing file instead of failing in each job."""
    from medtransfer.pretrain.fetch import cache_path, file_url
    from medtransfer.pretrain.registry import file_spec, plain

    source = plain(cfg.pretrain)
    if source.get("kind") == "none" or source.get("format") is not None:
        return  # scratch, or a local `pretrain.path` (check_pretrain checks that file)
    spec = file_spec(source, cfg.encoder.name)
    if not spec:
        return
    path = cache_path(source["name"], cfg.encoder.name, spec)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    if not path.is_file() and (offline or spec.get("download") == "manual"):
        manual = spec.get("download") == "manual"
        why = "not cached (a manual download)" if manual else "not cached and HF_HUB_OFFLINE=1"
        online = "" if manual else (f" (or run `medtransfer pretrain fetch {source['name']} --encoder "
                                    f"{cfg.encoder.name}` online)")
        raise ConfigError(f"pretrain={source['name']} encoder={cfg.encoder.name}: weights {why}; download "
                          f"{file_url(spec)} and place it at {path}{online}")


def check_trainer_options(cfg: DictConfig) -> None:
    """trainer.* must be lightning.Trainer arguments (or medtransfer's own trainer options): a typo such as
    `+trainer.max_epoch=5` would otherwise fail inside every job."""
    import inspect

    from lightning import Trainer

    from medtransfer.train.run import OWN_TRAINER_OPTIONS

    valid = set(inspect.signature(Trainer.__init__).parameters) - {"self", "callbacks", "logger"}
    unknown = sorted(set(cfg.trainer) - valid - set(OWN_TRAINER_OPTIONS))
    if unknown:
        import difflib

        near = difflib.get_close_matches(unknown[0], sorted(valid | set(OWN_TRAINER_OPTIONS)), n=3)
        raise ConfigError(f"unknown trainer.{unknown[0]} (not a lightning.Trainer argument nor a medtransfer "
                          f"trainer option){'; did you mean ' + ', '.join(near) + '?' if near else ''}")


def check_pixel_spacing(dataset: DictConfig, where: str) -> None:
    """`pixel_spacing`: null (HD95/ASSD in pixels) or the native (row, column) pixel size in mm."""
    spacing = dataset.get("pixel_spacing")
    if spacing is None:
        return
    try:
        ok = len(spacing) == 2 and all(float(v) > 0 for v in spacing)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{where}.pixel_spacing={spacing!r}: expected null or [row, column] mm per pixel, "
                          "two positive numbers")


def check_writable(path: Path, what: str) -> None:
    """The run directory's nearest existing ancestor must be a writable folder (checked before any job)."""
    p = path.expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir() or not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path} cannot be created: {p} is not a writable folder; set "
                          "MEDTRANSFER_RUNS_ROOT in .env (or paths.runs_root=...) to a writable folder")


def validate(cfg: DictConfig) -> None:
    from medtransfer.data import dataset_task, validate_dataset_cfg
    from medtransfer.models import check_combination
    from medtransfer.pretrain import check_pretrain
    from medtransfer.pretrain.finetune import check_finetune
    from medtransfer.train.tasks import task_for

    task = task_for(cfg)
    image_size = _int(cfg, "image_size") if task.uses_encoder else None  # a 3D dataset: patch_size instead
    _int(cfg, "batch_size")
    if _float(cfg, "encoder_lr_factor") < 0:
        raise ConfigError(f"encoder_lr_factor must be >= 0, got {cfg.encoder_lr_factor}")
    reason = not_applicable_reason(cfg)
    if reason:
        raise NotApplicable(reason)
    validate_dataset_cfg(cfg.dataset)
    task.check(cfg)
    crop = cfg.get("train_crop")
    if crop is not None:
        if isinstance(crop, bool) or not isinstance(crop, int) or not 16 <= crop <= image_size:
            raise ConfigError(f"train_crop={crop!r}: expected null or an integer in 16..image_size "
                              f"({cfg.image_size})")
        if cfg.encoder.get("family") != "cnn":
            raise ConfigError(f"train_crop={crop} trains on crops and tests on the {cfg.image_size} frame: "
                              f"encoder {cfg.encoder.name} ({cfg.encoder.get('family')}) is built for one input "
                              "size; use a CNN encoder or train_crop=null")
        check_combination(cfg.encoder, cfg.decoder, int(crop))
    if task.uses_encoder:  # a 3D task checks its own (scratch, full) in task.check
        check_pretrain(cfg.pretrain, cfg.encoder.name, cfg.encoder, cfg.decoder)
        check_finetune(cfg.finetune, cfg.encoder.name, cfg.pretrain)
    check_pixel_spacing(cfg.dataset, "dataset")
    for name, dataset in (cfg.get("test_also") or {}).items():
        if not isinstance(dataset, DictConfig) or "name" not in dataset:
            raise ConfigError(f"test_also.{name}: expected a dataset config (in an experiment's defaults: "
                              f"/dataset@test_also.{name}: {name})")
        validate_dataset_cfg(dataset)
        if task.name != "segmentation" or dataset_task(dataset) != "segmentation":
            raise ConfigError(f"test_also.{name}: extra test sets are scored as eval.py does, for segmentation "
                              "runs and segmentation datasets only")
        check_pixel_spacing(dataset, f"test_also.{name}")
    if cfg.get("select", "best") not in SELECT_CHOICES:
        raise ConfigError(f"unknown select {cfg.get('select')!r}; valid choices: {', '.join(SELECT_CHOICES)}")
    if cfg.monitor not in task.monitors:
        raise ConfigError(f"unknown monitor {cfg.monitor!r} for {task.name}; valid choices: "
                          f"{', '.join(sorted(task.monitors))}")
    check_training_components(cfg)
    check_trainer_options(cfg)
    if task.uses_encoder:
        check_weights_available(cfg)
    check_writable(Path(str(cfg.run_dir)), "run directory")
    accel = str(cfg.trainer.get("accelerator", "auto"))
    if accel in {"gpu", "cuda"}:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={accel} but no CUDA device is visible; use trainer=cpu or "
                              "trainer=default (auto)")
