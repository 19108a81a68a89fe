"""One job: `run(cfg)` turns a composed config into a trained, tested, recorded run directory.

The run directory is deterministic (runs/<study>/<condition>/seed<k>/): a complete results.json means
"done, skip"; a last.ckpt without one means "resume from it" with the same W&B run id.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medtransfer.errors import ConfigError, NotApplicable, RunInUse
from medtransfer.files import write_json, write_rows
from medtransfer.runs import PER_CASE_CSV, RESULTS, convergence_epoch
from medtransfer.train.results import base_record, read_results
from medtransfer.train.validate import validate

log = logging.getLogger("medtransfer")


# trainer config keys that are medtransfer options, not lightning.Trainer arguments
OWN_TRAINER_OPTIONS = ("early_stopping_patience", "compile", "channels_last", "pin_memory")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _loggers(cfg: DictConfig, run_dir: Path, cfg_dict: dict):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    loggers = []
    if cfg.logger.get("csv"):
        loggers.append(CSVLogger(save_dir=str(run_dir), name="", version=""))  # → run_dir/metrics.csv
    wb = cfg.logger.get("wandb")
    if wb:
        id_file = run_dir / "wandb_id.txt"
        if id_file.is_file():
            run_id = id_file.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:8]  # stored so a resumed job continues the same W&B run
            id_file.write_text(run_id)
        tags = wandb_tags(cfg_dict["condition"], int(cfg.seed))
        loggers.append(WandbLogger(
            save_dir=str(run_dir), project=wb.project, entity=wb.get("entity"), group=wb.group,
            job_type=wb.get("job_type", "train"), name=f"{Path(run_dir).parent.name}/seed{cfg.seed}", id=run_id,
            resume="allow", tags=tags, config=cfg_dict, log_model=False,
        ))
    return loggers


def wandb_tags(condition: dict, seed: int) -> list[str]:
    """One tag per condition axis and per extra override (W&B rejects tags over 64 characters)."""
    tags = [f"{k}={v}" for k, v in condition.items() if v is not None and k != "extra"]
    tags += condition["extra"].split(";") if condition.get("extra") else []
    return [t[:64] for t in tags + [f"seed={seed}"]]


def _finish_wandb() -> None:
    """Close the W&B run so the next job of a multirun gets its own (wandb#1314, LHT#289)."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def _intact(ckpt: Path) -> bool:
    """A last.ckpt worth resuming from: Lightning does not write checkpoints atomically, so a job killed
    mid-save leaves a truncated file. Checked by the zip CRCs (no unpickling); a bad one is set aside."""
    import zipfile

    if not ckpt.is_file():
        return False
    try:
        with zipfile.ZipFile(ckpt) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        bad = str(e)
    if bad is None:
        return True
    aside = ckpt.with_name(f"{ckpt.name}.corrupt-{int(time.time())}")
    ckpt.rename(aside)
    log.warning("%s is unreadable (%s): moved to %s, training from the start", ckpt, bad, aside.name)
    return False


def _drop_resume_point(last: Path) -> None:
    """last.ckpt exists to resume an unfinished job; a complete results.json makes it dead weight (model +
    optimizer state: 1.45 GB for ViT-B + DPT with Adam, against 0.48 GB for the weights-only best.ckpt), and a
    study of tens of runs would keep tens of GB of it. `keep_last_ckpt=true` keeps it (to train on later)."""
    if last.is_file():
        last.unlink()
        log.info("removed %s (the run is complete; keep_last_ckpt=true keeps it)", last)


def _rank_zero() -> bool:
    """Under DDP every rank runs this job; only global rank 0 writes the run directory's records."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


@contextmanager
def claim(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for this process. Run directories are deterministic, so the same condition
    launched twice (a sweep started again while it runs, a SLURM requeue racing its original) would train
    two jobs into one folder, each overwriting the other's checkpoints and results. An exclusive flock on
    ``.lock`` makes the second fail at once, naming the holder; the kernel drops the lock when its process
    dies, so a killed job never leaves it stale. Under DDP only rank 0 takes it (the other ranks are its
    own children)."""
    if not _rank_zero():
        yield
        return
    import fcntl

    path = run_dir / ".lock"
    f = open(path, "a+")  # noqa: SIM115 - held open across the yield: closing it releases the lock
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunInUse(f"{run_dir} is being trained by {holder}; once it ends, the same command skips or "
                       "resumes it") from None
    except OSError as e:  # a file system without flock (some NFS/Lustre mounts): run, but say so
        log.warning("cannot lock %s (%s): a second launch of this condition would not be detected", path, e)
    else:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
    try:
        yield
    finally:
        f.close()


def _finished(cfg: DictConfig, run_dir: Path) -> dict | None:
    done = read_results(run_dir)
    if done and done.get("status") == "complete" and not cfg.get("force", False):
        log.info("skip: %s is complete (results.json)", run_dir)
        return done
    return None


def _not_applicable(cfg: DictConfig, run_dir: Path, reason: str) -> dict:
    """The record of a grid cell that cannot exist, when the sweep carries such cells (impossible_cells=
    not_applicable): the report shows it as n/a instead of leaving a hole or counting a failure."""
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    record = base_record(cfg_dict, cfg.study, int(cfg.seed))
    record.update(status="not_applicable", error=reason)
    _make_dir(run_dir)
    write_json(run_dir / RESULTS, record)
    log.info("not applicable: %s (%s)", run_dir, reason)
    return record


def _make_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the run directory {run_dir} ({e.strerror}); set MEDTRANSFER_RUNS_ROOT "
                          "in .env (or paths.runs_root=...) to a writable folder") from None


def run(cfg: DictConfig) -> dict:
    run_dir = Path(cfg.run_dir)
    try:
        validate(cfg)
    except NotApplicable as e:
        if cfg.get("impossible_cells") == "not_applicable":
            return _not_applicable(cfg, run_dir, str(e))
        raise
    if (done := _finished(cfg, run_dir)) is not None:
        return done
    _make_dir(run_dir)
    with claim(run_dir):
        # checked again under the lock: the launch that held it until now may have finished the run
        return _finished(cfg, run_dir) or _run_claimed(cfg, run_dir)


def _run_claimed(cfg: DictConfig, run_dir: Path) -> dict:
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    if _rank_zero():
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg_dict))
    record = base_record(cfg_dict, cfg.study, int(cfg.seed))
    drop_last = not cfg.get("keep_last_ckpt", False)
    t0 = time.time()
    try:
        record.update(_fit_and_test(cfg, cfg_dict, run_dir))
        record["status"] = "complete"
        if drop_last:
            record["checkpoints"]["last"] = None  # deleted below, once the complete record is on disk
    except BaseException as e:  # record every failure (incl. KeyboardInterrupt), then re-raise
        record.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        raise
    finally:
        record["wall_time_s"] = time.time() - t0
        if _rank_zero():
            write_json(run_dir / RESULTS, record)
            if record.get("status") == "complete" and drop_last:
                _drop_resume_point(run_dir / "checkpoints" / "last.ckpt")
        _finish_wandb()
    log.info("results: %s", run_dir / RESULTS)
    return record


def _check_selection(cfg: DictConfig, dm, select: str) -> bool:
    """Whether the split has a validation part, and that the run can do without one where it has none:
    selecting the best epoch, early stopping and a plateau schedule all read validation metrics."""
    has_val = len(dm.split.val) > 0 or select == "best_on_test"
    if has_val:
        return True
    where = f"dataset.split={dm.split.name} of {cfg.dataset.name} (val_fraction={cfg.dataset.get('val_fraction')})"
    if select == "best":
        raise ConfigError(f"{where} has no validation part to select the best epoch on; set select=last "
                          "(test the final epoch) or dataset.val_fraction > 0")
    if cfg.trainer.get("early_stopping_patience"):
        raise ConfigError(f"{where} has no validation part: trainer.early_stopping_patience needs one")
    if str(cfg.schedule.get("_target_", "")).endswith(".plateau"):
        raise ConfigError(f"{where} has no validation part: schedule={cfg.schedule._target_} reads {cfg.monitor}")
    return False


def _fit_and_test(cfg: DictConfig, cfg_dict: dict, run_dir: Path) -> dict:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from medtransfer.models import count_parameters
    from medtransfer.train.build import build, build_module
    from medtransfer.train.module import monitor_mode

    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    opts = {k: trainer_kwargs.pop(k, None) for k in OWN_TRAINER_OPTIONS}
    cuda = str(trainer_kwargs.get("accelerator")) in {"gpu", "cuda"} or (
        trainer_kwargs.get("accelerator") == "auto" and _cuda_available())
    workers = int(cfg.num_workers)
    built = build(cfg, pin_memory=bool(opts["pin_memory"]) and cuda,
                  persistent_workers=bool(opts["pin_memory"]) and workers > 0)
    task, dm, model = built.task, built.dm, built.model
    encoder = cfg.get("encoder") or {}  # none for a 3D network (net3d)
    channels_last = opts["channels_last"] == "auto" and cuda and encoder.get("family") == "cnn" or \
        opts["channels_last"] is True and bool(encoder)  # 2D memory format; 5D tensors have their own
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if opts["compile"]:
        model.compile()  # in place: parameter names (and checkpoint keys) stay unprefixed
    if trainer_kwargs.get("sync_batchnorm") and not cuda:
        log.info("sync_batchnorm needs CUDA: off on %s", trainer_kwargs.get("accelerator"))
        trainer_kwargs["sync_batchnorm"] = False
    if str(trainer_kwargs.get("strategy", "")) == "ddp" and encoder.get("unused_params"):
        trainer_kwargs["strategy"] = "ddp_find_unused_parameters_true"  # HRNet/ConvNeXt: see unused_params
    module = build_module(cfg, built, model, cfg_dict, channels_last)
    mode = monitor_mode(cfg.monitor)
    ckpt_dir = run_dir / "checkpoints"
    # best.ckpt is only ever read for its weights (test, eval.py, analyze): no optimizer state, a third the
    # size of last.ckpt with Adam (make bench: the save is part of every job's end-of-epoch cost)
    # select=last (paper 000's way: no validation part): best.ckpt is the final epoch's weights;
    # select=best_on_test (paper 001's optimistic way): the best epoch by `monitor` on the test images
    select = str(cfg.get("select", "best"))
    has_val = _check_selection(cfg, dm, select)
    if not has_val:
        trainer_kwargs["limit_val_batches"] = 0
    ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=None if select == "last" else cfg.monitor,
                           mode=mode, save_weights_only=True, auto_insert_metric_name=False,
                           enable_version_counter=False)
    # last.ckpt every epoch, its own callback: Lightning's save_last=True only writes it when the monitored
    # checkpoint improved, so a resume would replay every epoch since the best one
    last_ckpt = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                                auto_insert_metric_name=False, enable_version_counter=False)
    callbacks = [ckpt, last_ckpt]
    patience = opts["early_stopping_patience"]
    if patience:
        callbacks.append(EarlyStopping(monitor=cfg.monitor, mode=mode, patience=int(patience)))
    loggers = _loggers(cfg, run_dir, cfg_dict)
    if loggers:  # the LR actually used, per parameter group and step (lr-<Optimizer>/<group>): a flat schedule shows
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer = L.Trainer(**{k: v for k, v in trainer_kwargs.items() if v is not None}, callbacks=callbacks,
                        logger=loggers or False, default_root_dir=str(run_dir))
    last = ckpt_dir / "last.ckpt"
    resume = str(last) if _intact(last) else None
    if resume:
        log.info("resuming from %s", resume)
    trainer.fit(module, datamodule=dm, ckpt_path=resume)
    if trainer.is_global_zero:
        dm.save_split(run_dir / "split.json")
    train_ips = module.train_images_per_second
    best_path = ckpt.best_model_path or (str(last) if last.is_file() else None)
    trainer.test(module, datamodule=dm, ckpt_path=best_path, verbose=False)

    test, per_case = task.test_results(cfg, module)  # a collective under DDP: every rank calls it
    also = {}
    if trainer.is_global_zero:
        write_rows(run_dir / PER_CASE_CSV, per_case)
        if cfg.get("test_also"):
            from medtransfer.train.evaluate import evaluate_also

            also = evaluate_also(cfg, best_path)

    # the best epoch by the monitor; convergence on it when higher is better, else on the task's metric
    key = cfg.monitor.split("/", 1)[1]
    history = module.val_history
    pick = min if mode == "min" else max
    worst = float("inf") if mode == "min" else float("-inf")
    best = pick(history, key=lambda h: h.get(key, worst)) if history else {}
    converge_key = key if mode == "max" else task.report_metric
    split = dm.split.to_dict()
    return {
        "split": {"name": split.get("name"), "seed": split.get("seed"), "sha256": split.get("sha256"),
                  "n_train": len(dm.split.train), "n_val": len(dm.split.val), "n_test": len(dm.split.test)},
        "pretrain": built.pretrain,
        "finetune": built.finetune,
        "normalisation": built.normalisation,
        "params": count_parameters(model),
        "task": task.name,
        **task.record(cfg, dm),
        "selection": select,
        "metrics": {"val_best": {k: v for k, v in best.items() if k != "epoch"}, "test": test,
                    "val_history": history},
        "test_also": also,
        "best_epoch": best.get("epoch"),
        "epochs": trainer.current_epoch,
        "epochs_to_converge": convergence_epoch(history, converge_key)[1],
        "train_images_per_s": train_ips,
        "checkpoints": {"best": best_path, "last": str(last) if last.is_file() else None},
        "device": str(trainer.strategy.root_device),
        "resumed_from": resume,
    }
