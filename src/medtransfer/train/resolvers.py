"""OmegaConf resolvers (`${mt.*:}`) that keep machine facts out of the YAML and make run paths deterministic.

Registered on import of `medtransfer.train`, before Hydra composes anything. The slug itself is the run-directory
contract (medtransfer.runs), shared with the report that reads it back.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from medtransfer import settings
from medtransfer.runs import condition_slug

# Command-line overrides that do not change what is being measured: they never enter the condition.
# Everything else a user overrides (optimizer.lr=..., image_size=..., augment=...) does, so `-m optimizer.lr=a,b`
# gives two conditions, two run directories and two report rows instead of one directory the second job skips.
# (`impossible_cells` and `test_also` change what else a sweep records, not what a run trains or tests on;
# `dataset.root` and `dataset.file` enter as the data fingerprint `data=<hex>` instead of as a path.)
NOT_CONDITION = ("seed", "study", "experiment", "logger", "launcher", "hydra", "paths", "num_workers", "force",
                 "eval_surface", "keep_last_ckpt", "impossible_cells", "test_also", "dataset.root", "dataset.file",
                 "trainer", "trainer.accelerator", "trainer.devices", "trainer.strategy",
                 "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.num_nodes")
CONDITION_AXES = ("encoder", "decoder", "net3d", "pretrain", "finetune", "dataset", "dataset.n_train", "dataset.fold")


def condition_extra(overrides: list[str] | None = None, _root_=None) -> str | None:
    """The overrides of this job that change the science but are not a named condition axis, or None.

    Read from the running Hydra job (its own overrides, e.g. `optimizer.lr=0.01`); outside a Hydra app
    (compose in tests and notebooks) there are none.

    Plus `data=<8 hex>` when the dataset's files are not the registered dataset at its registered place
    (`dataset=folder`, any `dataset.root` elsewhere, a split file): `dataset.root` itself is not a condition
    (a path differs between machines), but the data behind it are — without this, a second `dataset=folder`
    run with another root skipped as "complete" and reported the first folder's results. OmegaConf passes
    the whole config as `_root_`; see `medtransfer.data.config.data_fingerprint` for what the hex covers
    and why registered datasets at their place keep their slugs.
    """
    if overrides is None:
        overrides = _job_overrides()
    keep = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in CONDITION_AXES or key.startswith((*(k + "." for k in ("logger", "launcher", "hydra", "paths",
                                                                         "test_also")), "dataset@test_also.")):
            continue
        if key in NOT_CONDITION:
            continue
        keep.append(o.lstrip("+"))
    dataset = _root_.get("dataset") if _root_ is not None else None
    if dataset is not None:
        from medtransfer.data.config import data_fingerprint

        data = data_fingerprint(dataset)
        keep += [f"data={data}"] if data else []
    return ";".join(sorted(keep)) or None  # ";": list values such as [256,128] contain commas


def _job_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def auto_workers() -> int:
    """Dataloader workers that fit the machine: torch threads × workers should not oversubscribe the cores.

    Up to 8 workers, leaving at least one core for the main (training) process; 0 on a 1-2 core machine,
    where the cached uint8 pipeline in the main process is faster than inter-process transfer.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(8, cores - 1)


def _setting(name: str, default: str = "") -> str:
    path = settings.get_path(name, default or None)
    return "" if path is None else str(path)


def default_monitor(task: str) -> str:
    """The task's first monitor (segmentation: val/dice_per_image; classification: val/auroc)."""
    from medtransfer.train.tasks import TASKS

    return TASKS[task].monitors[0] if task in TASKS else "val/dice_per_image"


def axis(value):
    """A condition axis a task does not have (the decoder of a classifier, `none`) is null: no slug part."""
    return None if value in (None, "none") else value


def network(encoder, net3d):
    """The condition's encoder axis: the 2D encoder, or for a 3D dataset (no encoder) its whole 3D network
    (net3d), so 2D conditions are unchanged and a 3D slug names its network (enc-unet). A cell with both
    (an impossible one) gets both, joined by "+", so its not_applicable record never takes a valid run's
    directory."""
    return "+".join(v for v in (encoder, axis(net3d)) if v is not None) or None


def register() -> None:
    for name, fn in {
        "mt.slug": condition_slug,
        "mt.setting": _setting,
        "mt.project_root": lambda: str(settings.PROJECT_ROOT),
        "mt.auto_workers": auto_workers,
        "mt.extra": condition_extra,
        "mt.default_monitor": default_monitor,
        "mt.axis": axis,
        "mt.network": network,
    }.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
