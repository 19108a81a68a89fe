"""In-process timestamps for `make bench`'s sweep and eval sections, without touching medtransfer's code.

Added to a `train.py -m` / `eval.py` child process as a Hydra callback:
    PYTHONPATH=scripts MEDTRANSFER_BENCH_TIMING=<file.jsonl> python train.py -m ... \
        +hydra.callbacks.bench_timer._target_=bench_hooks.BenchTimer
It appends one JSON line per event (wall-clock `time.time()`, comparable with the parent's process start):
multirun/run start, and per job: job_start, first forward (any mode) and first training forward (global
module forward pre-hook, removed once both fired), first/last optimizer step end and the step count (global
optimizer step post-hook), the time spent inside `medtransfer.metrics.surface_metrics` (a timing wrapper),
results.json's mtime and job_end.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hydra.experimental.callback import Callback

_STATE: dict = {}


def _emit(rec: dict) -> None:
    path = os.environ.get("MEDTRANSFER_BENCH_TIMING")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def _install_once() -> None:
    if _STATE.get("installed"):
        return
    import torch
    from torch.nn.modules.module import register_module_forward_pre_hook
    from torch.optim.optimizer import register_optimizer_step_post_hook

    import medtransfer.metrics as metrics

    def on_forward(module, args):
        job = _STATE.get("job")
        if job is None:
            return
        now = time.time()
        job.setdefault("first_forward", now)
        if module.training and torch.is_grad_enabled() and "first_train_forward" not in job:
            job["first_train_forward"] = now
            _STATE.pop("fwd_handle").remove()  # nothing more to learn: no per-module cost after this

    def on_step(optimizer, args, kwargs):
        job = _STATE.get("job")
        if job is None:
            return
        now = time.time()
        job.setdefault("first_step_end", now)
        job["last_step_end"] = now
        job["steps"] = job.get("steps", 0) + 1

    original = metrics.surface_metrics

    def timed_surface_metrics(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            job = _STATE.get("job")
            if job is not None:
                job["surface_s"] = job.get("surface_s", 0.0) + time.perf_counter() - t0
                job["surface_calls"] = job.get("surface_calls", 0) + 1

    metrics.surface_metrics = timed_surface_metrics  # eval.py / module.py import it from medtransfer.metrics
    _STATE["register_fwd"] = lambda: register_module_forward_pre_hook(on_forward)
    register_optimizer_step_post_hook(on_step)
    _STATE["installed"] = True


class BenchTimer(Callback):
    def on_multirun_start(self, config, **kwargs) -> None:
        _emit({"event": "multirun_start", "t": time.time()})

    def on_run_start(self, config, **kwargs) -> None:
        _emit({"event": "run_start", "t": time.time()})

    def on_job_start(self, config, **kwargs) -> None:
        t = time.time()
        _install_once()
        if "fwd_handle" not in _STATE:  # (re-)armed for each job; it removes itself at the first training forward
            _STATE["fwd_handle"] = _STATE["register_fwd"]()
        _STATE["job"] = {"job_start": t}
        run_dir = config.get("run_dir") if "run_dir" in config else None
        _STATE["run_dir"] = str(run_dir) if run_dir else None

    def on_job_end(self, config, job_return, **kwargs) -> None:
        t = time.time()
        job = _STATE.pop("job", {}) or {}
        rec = {"event": "job", **job, "job_end": t, "status": str(getattr(job_return, "status", ""))}
        run_dir = _STATE.get("run_dir")
        if run_dir and (Path(run_dir) / "results.json").is_file():
            rec["results_mtime"] = (Path(run_dir) / "results.json").stat().st_mtime
        _emit(rec)
