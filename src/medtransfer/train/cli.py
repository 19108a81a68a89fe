"""Hydra entry points behind `python train.py` / `python eval.py` (and the medtransfer-train/-eval scripts)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from medtransfer import settings
from medtransfer.errors import MedTransferError
from medtransfer.train import resolvers  # noqa: F401

CONF_DIR = str(settings.PROJECT_ROOT / "conf")
settings.export_tool_env()  # before Hydra composes: ${oc.env:SLURM_*} and W&B read the process environment


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _report(fn, cfg):
    try:
        return fn(cfg)
    except MedTransferError as e:
        # one line, no traceback: the message names the option/file and the valid choices
        print(f"error: {e}", file=sys.stderr)
        if _multirun():
            # let the launcher record this job as failed and go on with the others (SystemExit would end the
            # whole sweep); results.json already says status=failed with this error
            raise
        raise SystemExit(2) from None


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _train(cfg: DictConfig):
    from medtransfer.train.run import run

    record = _report(run, cfg)
    return record.get("metrics", {}).get("test", {}).get("dice_per_image")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
def _eval(cfg: DictConfig):
    from medtransfer.train.evaluate import evaluate

    return _report(evaluate, cfg)


def train_main():
    _train()


def eval_main():
    _eval()
