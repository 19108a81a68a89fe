"""results.json (schema 1, see docs/architecture.md): the record the report reads, written atomically
(medtransfer.files). Its file name, the slug and the convergence definition are the contract in
medtransfer.runs, shared with the report.

Its presence with status=complete means "done, skip" for a re-run sweep; a failed run writes status=failed
with the error, so a report can show the missing cell instead of silently dropping it.
"""

from __future__ import annotations

import json
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from medtransfer import settings
from medtransfer.runs import RESULTS

SCHEMA = 1


def read_results(run_dir: Path) -> dict | None:
    p = Path(run_dir) / RESULTS
    if not p.is_file():
        return None
    with open(p) as f:
        return json.load(f)


def versions() -> dict:
    out = {}
    for dist, key in [("medtransfer", "medtransfer"), ("torch", "torch"), ("lightning", "lightning"),
                      ("timm", "timm"), ("segmentation-models-pytorch", "smp"), ("torchmetrics", "torchmetrics"),
                      ("monai", "monai"), ("albumentations", "albumentations"), ("hydra-core", "hydra")]:
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    out["python"] = platform.python_version()
    return out


def git_info() -> dict:
    def run(*args):
        return subprocess.run(["git", *args], cwd=settings.PROJECT_ROOT, capture_output=True, text=True,
                              timeout=10)

    try:
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def base_record(cfg: dict, study: str, seed: int) -> dict:
    return {
        "schema": SCHEMA, "status": "running", "error": None, "study": study,
        "condition": cfg.get("condition"), "seed": seed, "config": cfg,
        "versions": versions(), "git": git_info(), "host": socket.gethostname(),
    }
