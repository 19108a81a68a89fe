"""Atomic file writes (tmp file in the same folder + os.replace): a report folder never holds half a file,
even if the command is interrupted or two reports race on the same --out."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _tmp_for(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_csv(path: str | Path, df) -> Path:
    """A pandas DataFrame as CSV (no index), atomically."""
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """A matplotlib figure as PNG, atomically; the figure is closed (long reports make many)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    tmp = _tmp_for(path)
    try:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return path
