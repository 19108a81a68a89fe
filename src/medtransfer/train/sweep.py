"""Sweep-level validation: compose and check every job of a `-m` grid before the launcher starts any.

Hydra turns exceptions raised in callbacks into warnings, so a rejected grid exits with SystemExit (which
Hydra does not catch) carrying the one-line reason and the offending job's overrides.
"""

from __future__ import annotations

import logging
import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from medtransfer.errors import MedTransferError

log = logging.getLogger(__name__)


def expand_grid(task_overrides: list[str]) -> list[list[str]]:
    """The job override lists Hydra's basic sweeper will produce from these command-line overrides."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


def validate_grid(config_name: str, task_overrides: list[str]) -> int:
    from hydra import compose

    from medtransfer.train.validate import validate

    jobs = expand_grid(task_overrides)
    seen = set()
    for job in jobs:
        # seeds never change validity; skip re-checking a condition that differs only in seed
        key = tuple(sorted(o for o in job if not o.startswith("seed=")))
        if key in seen:
            continue
        seen.add(key)
        cfg = compose(config_name=config_name, overrides=[o for o in job if not o.startswith(("hydra.", "hydra/"))])
        try:
            validate(cfg)
        except MedTransferError as e:
            raise SystemExit(f"error: sweep rejected before any job ran; job [{' '.join(job)}]: {e}") from None
    return len(jobs)


def grid_overrides(config: DictConfig) -> list[str]:
    """What Hydra's basic sweeper expands: `hydra.sweeper.params` (an experiment's grid) then the command line,
    which wins for a key given in both."""
    params = config.hydra.sweeper.get("params") or {}
    return [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)


class ValidateGridCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        n = validate_grid(config.hydra.job.config_name, grid_overrides(config))
        log.info("sweep validated: %d jobs", n)
        print(f"[medtransfer] sweep validated: {n} jobs", file=sys.stderr)
