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

IMPOSSIBLE_POLICIES = ("reject", "not_applicable")


def expand_grid(task_overrides: list[str]) -> list[list[str]]:
    """The job override lists Hydra's basic sweeper will produce from these command-line overrides."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


def validate_grid(config_name: str, task_overrides: list[str]) -> int:
    """Compose and validate every distinct condition of the grid; reject the sweep listing *every* bad cell.

    Fails closed: any exception (not only our ConfigErrors) rejects the sweep, since Hydra would turn it into
    a warning and launch the jobs anyway. Cells that cannot exist (NotApplicable: no weights of a source for
    an encoder, an encoder a decoder cannot take) are rejected too, unless `impossible_cells=not_applicable`
    asks to run the possible cells and record the others as "not_applicable" (the report shows them as n/a).
    """
    from hydra import compose

    from medtransfer.errors import NotApplicable
    from medtransfer.train.validate import validate

    jobs = expand_grid(task_overrides)
    seen, errors, impossible, policy = set(), {}, [], "reject"
    for job in jobs:
        # seeds never change validity; skip re-checking a condition that differs only in seed
        key = tuple(sorted(o for o in job if not o.startswith("seed=")))
        if key in seen:
            continue
        seen.add(key)
        cell = " ".join(o for o in job if not o.startswith("seed="))
        try:
            cfg = compose(config_name=config_name,
                          overrides=[o for o in job if not o.startswith(("hydra.", "hydra/"))])
            policy = str(cfg.get("impossible_cells", "reject"))
            validate(cfg)
        except NotApplicable as e:
            impossible.append(f"[{cell}]: {e}")
        except Exception as e:  # noqa: BLE001 - fail closed: whatever stops a cell stops the sweep
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            line = e.__class__.__name__ + ": " + msg if not isinstance(e, MedTransferError) else msg
            errors.setdefault(line, cell)  # one line per distinct problem (e.g. each missing weights file)
    if policy not in IMPOSSIBLE_POLICIES:
        errors.setdefault(f"impossible_cells={policy!r}; valid choices: {', '.join(IMPOSSIBLE_POLICIES)}", "")
    if policy == "reject":
        errors.update({line: "" for line in impossible})
    if errors:
        lines = [f"  [{cell}]: {line}" if cell else f"  {line}" for line, cell in errors.items()]
        hint = ("\n  (impossible_cells=not_applicable runs the possible cells and reports the others as n/a)"
                if impossible and policy == "reject" else "")
        raise SystemExit(f"error: sweep rejected before any job ran; {len(lines)} problem(s) in {len(jobs)} "
                         "jobs:\n" + "\n".join(lines) + hint)
    for line in impossible:
        log.warning("not applicable, recorded as such: %s", line)
    return len(jobs)


def grid_overrides(config: DictConfig) -> list[str]:
    """What Hydra's basic sweeper expands: `hydra.sweeper.params` (an experiment's grid) then the command line,
    which wins for a key given in both."""
    params = config.hydra.sweeper.get("params") or {}
    return [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)


class ValidateGridCallback(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        """Hydra creates a single job's run directory before the job starts: an unwritable runs root would be
        its traceback, so check it first (run() validates everything else)."""
        from pathlib import Path

        from medtransfer.train.validate import check_writable

        try:
            check_writable(Path(str(config.hydra.run.dir)), "run directory")
        except MedTransferError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        n = validate_grid(config.hydra.job.config_name, grid_overrides(config))
        log.info("sweep validated: %d jobs", n)
        print(f"[medtransfer] sweep validated: {n} jobs", file=sys.stderr)
