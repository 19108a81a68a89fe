"""Atomic file writes (a temp file in the same folder + os.replace) for everything a job, eval.py, a report or an
analysis leaves behind: a reader never sees half a results.json, CSV or figure, even if the writer is killed or
two reports race on the same --out.

Why one module below train/, report/ and analysis/: each had its own copy (results.json, per-case CSV rows,
report files), and analysis reached into the report's private helper for the same thing.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a fresh temp file beside `path`, then move it into place; the temp file never stays."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _jsonable(o):
    return o.item() if hasattr(o, "item") else str(o)  # numpy/torch scalars; paths and the rest as text


def write_json(path: str | Path, obj) -> Path:
    """JSON (indented, NaN allowed), flushed to disk before it replaces the old file: results.json decides
    "done, skip", so a crash right after the rename must not leave an empty record."""
    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_jsonable, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())

    return _atomic(path, write)


def write_rows(path: str | Path, rows: list[dict]) -> Path | None:
    """Per-case rows → CSV (columns: the union of the rows' keys, in first-seen order); nothing for no rows."""
    if not rows:
        return None
    fields = list(dict.fromkeys(k for r in rows for k in r))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)

    return _atomic(path, write)


def write_text(path: str | Path, text: str) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_csv(path: str | Path, df) -> Path:
    """A pandas DataFrame as CSV (no index)."""
    return _atomic(path, lambda tmp: df.to_csv(tmp, index=False))


def pyplot():
    """matplotlib.pyplot on the Agg backend: reports and analyses are made on headless cluster nodes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """A matplotlib figure as PNG; the figure is closed (long reports make many)."""
    try:
        return _atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        pyplot().close(fig)


def publish_dir(tmp: Path, path: Path, marker: str = "meta.json") -> None:
    """Move a fully written cache folder to `path` in one os.replace. Why tolerate failure: two jobs of a
    sweep may build the same entry at once; the first one published wins, and the second one's identical
    copy is left for the caller to delete (a failure without the first one's `marker` file is re-raised)."""
    try:
        os.replace(tmp, path)
    except OSError:
        if not (path / marker).is_file():
            raise
