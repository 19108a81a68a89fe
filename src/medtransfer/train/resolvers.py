"""OmegaConf resolvers (`${mt.*:}`) that keep machine facts out of the YAML and make run paths deterministic.

Registered on import of `medtransfer.train`, before Hydra composes anything.
"""

from __future__ import annotations

import os
import re

from omegaconf import DictConfig, OmegaConf

from medtransfer import settings

# the order and short keys of the condition slug: enc-r50_dec-unet_pre-imagenet_ft-full_ds-kvasir_seg_n-all.
# No "=" in it (design.md had one): Hydra's override grammar rejects "=" in values, so `eval.py ckpt=<run dir>`
# would need quoting.
SLUG_KEYS = {"encoder": "enc", "decoder": "dec", "pretrain": "pre", "finetune": "ft", "dataset": "ds",
             "n_train": "n", "fold": "fold"}


def condition_slug(condition) -> str:
    """A filesystem-safe, deterministic name for a condition; equal conditions give equal paths."""
    if isinstance(condition, DictConfig):
        condition = OmegaConf.to_container(condition, resolve=True)
    parts = []
    for key, short in SLUG_KEYS.items():
        value = condition.get(key)
        if key == "fold" and value is None:
            continue
        parts.append(f"{short}-{'all' if value is None else value}")
    extra = sorted(k for k in condition if k not in SLUG_KEYS)
    parts += [f"{k}-{condition[k]}" for k in extra]
    return re.sub(r"[^A-Za-z0-9._+-]", "-", "_".join(parts))


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


def register() -> None:
    for name, fn in {
        "mt.slug": condition_slug,
        "mt.setting": _setting,
        "mt.project_root": lambda: str(settings.PROJECT_ROOT),
        "mt.auto_workers": auto_workers,
    }.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register()
