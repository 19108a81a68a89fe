"""results.json (schema 1, see docs/architecture.md): the record the report reads. Written atomically.

Its presence with status=complete means "done, skip" for a re-run sweep; a failed run writes status=failed
with the error, so a report can show the missing cell instead of silently dropping it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from medtransfer import settings

SCHEMA = 1
RESULTS = "results.json"


def write_json_atomic(path: Path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return str(o)


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


def epochs_to_converge(history: list[dict], key: str = "dice_per_image", tol: float = 0.005) -> int | None:
    """Epochs trained until the validation metric first came within tol (relative) of the run's best.

    Papers 003/004 define convergence as 'validation Dice within 0.5% of its maximum'. Counted from each
    entry's own 0-based `epoch` (+1), so validation every k epochs still gives epochs, not list positions.
    """
    rows = [h for h in history if h.get(key) is not None and not math.isnan(h[key])]
    if not rows:
        return None
    best = max(h[key] for h in rows)
    return next(int(h["epoch"]) + 1 for h in rows if h[key] >= best * (1 - tol))


def base_record(cfg: dict, study: str, seed: int) -> dict:
    return {
        "schema": SCHEMA, "status": "running", "error": None, "study": study,
        "condition": cfg.get("condition"), "seed": seed, "config": cfg,
        "versions": versions(), "git": git_info(), "host": socket.gethostname(),
    }
