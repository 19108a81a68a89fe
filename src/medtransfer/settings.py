"""Machine-specific settings (data root, caches, runs root) come from the environment / `.env`, never code.

A `.env` file in the project root (or the current directory) is read once; real environment variables win.
Relative paths in `.env` are resolved against the directory holding that `.env`, so `../shared/data`
means the same thing from any working directory.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from medtransfer.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DATA_ROOT = "MEDTRANSFER_DATA_ROOT"  # folder holding one sub-folder per dataset (kvasir_seg/, cvc_clinicdb/, ...)
CACHE_DIR = "MEDTRANSFER_CACHE_DIR"  # decoded-image cache, synthetic data, downloaded weights
RUNS_ROOT = "MEDTRANSFER_RUNS_ROOT"  # where run directories go


@lru_cache(maxsize=1)
def _dotenv() -> tuple[dict[str, str], Path | None]:
    from dotenv import dotenv_values

    for folder in (Path.cwd(), PROJECT_ROOT):
        f = folder / ".env"
        if f.is_file():
            return {k: v for k, v in dotenv_values(f).items() if v is not None}, folder
    return {}, None


# Settings in `.env` that other tools read from the process environment (W&B, SLURM via ${oc.env:...},
# albumentations, the HF hub). They are exported once at start-up so `.env`'s WANDB_MODE=offline is what a
# plain `python train.py` gets, not only `make`; a variable already set in the environment is left alone.
TOOL_PREFIXES = ("WANDB_", "SLURM_", "HF_", "NO_ALBUMENTATIONS_UPDATE")


def export_tool_env() -> dict[str, str]:
    """Copy the tool settings of `.env` into os.environ (real environment variables win); returns what it set."""
    values, _ = _dotenv()
    exported = {}
    for k, v in values.items():
        if k.startswith(TOOL_PREFIXES) and v != "" and k not in os.environ:
            os.environ[k] = exported[k] = v
    return exported


def get(name: str, default: str | None = None) -> str | None:
    """Environment first, then `.env`, then the default."""
    if os.environ.get(name):
        return os.environ[name]
    values, _ = _dotenv()
    return values.get(name, default)


def get_path(name: str, default: str | Path | None = None) -> Path | None:
    value = get(name)
    if value is None:
        return Path(default).expanduser() if default is not None else None
    p = Path(value).expanduser()
    if not p.is_absolute():
        base = Path.cwd() if os.environ.get(name) else (_dotenv()[1] or Path.cwd())
        p = base / p
    return p.resolve()


def data_root(required: bool = True) -> Path | None:
    p = get_path(DATA_ROOT)
    if required and (p is None or not p.is_dir()):
        where = f"{p} does not exist" if p is not None else "it is not set"
        raise ConfigError(
            f"{DATA_ROOT} ({where}): set it in .env (see .env.example) to the folder holding the datasets, "
            "or pass dataset.root=PATH"
        )
    return p


def cache_dir() -> Path:
    p = get_path(CACHE_DIR, Path("~/.cache/medtransfer"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def runs_root() -> Path:
    return get_path(RUNS_ROOT, PROJECT_ROOT / "runs")
