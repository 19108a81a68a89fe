"""Find every run under the given folders: complete, failed (results.json with status=failed + error) and
incomplete (a run directory with config.yaml / .hydra but no results.json: killed, timed out, still running).

Nothing is assumed about the folder layout beyond docs/architecture.md's run directory files, so reports work
on one sweep, many sweeps, a single run dir, or a copy of them. The same (study, condition, seed) found twice
is reported once (complete beats failed beats incomplete, then the newest) and the others are listed as
warnings, so a resumed or re-launched sweep never counts a seed twice.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RESULTS = "results.json"
SKIP_DIRS = {"checkpoints", "wandb", "eval", "predictions", "__pycache__", "lightning_logs"}
_SLUG_KEYS = {"enc": "encoder", "dec": "decoder", "pre": "pretrain", "ft": "finetune", "ds": "dataset",
              "n": "n_train", "fold": "fold"}  # inverse of medtransfer.train.resolvers.SLUG_KEYS


@dataclass
class Run:
    """One run directory, normalised: what the report needs and nothing else."""

    run_dir: Path
    status: str  # complete | failed | incomplete
    study: str | None = None
    seed: int | None = None
    condition: dict = field(default_factory=dict)
    error: str | None = None
    test: dict = field(default_factory=dict)  # metrics.test
    val_best: dict = field(default_factory=dict)
    val_history: list = field(default_factory=list)
    info: dict = field(default_factory=dict)  # epochs, best_epoch, epochs_to_converge, wall_time_s, ...
    evals: dict = field(default_factory=dict)  # "<dataset>-<split>" → eval.py summary.json
    mtime: float = 0.0

    @property
    def per_image_csv(self) -> Path | None:
        p = self.run_dir / "test_per_image.csv"
        return p if p.is_file() else None

    @property
    def key(self) -> tuple:
        return (self.study, tuple(sorted((k, str(v)) for k, v in self.condition.items())), self.seed)


def _load_json(path: Path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"status": "failed", "error": f"unreadable {path.name}: {type(e).__name__}: {e}"}


def _first_line(text) -> str | None:
    if not text:
        return None
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else None


def parse_slug(name: str) -> dict:
    """Condition slug → dict; values may contain '_'. Both spellings: enc-r50_dec-unet_..._ds-kvasir_seg_n-all
    (current medtransfer.train.resolvers) and enc=r50_dec=unet_... (older). With '-', only the known short keys
    start a new part (values such as moco-v3 contain '-')."""
    if "=" in name:
        sep, parts = "=", re.split(r"_(?=[A-Za-z][A-Za-z0-9]*=)", name)  # keys have no "_"
    else:
        sep, parts = "-", re.split("_(?=(?:" + "|".join(_SLUG_KEYS) + ")-)", name)
    out = {}
    for part in parts:
        if sep not in part:
            return {}
        k, v = part.split(sep, 1)
        out[_SLUG_KEYS.get(k, k)] = None if v == "all" and k == "n" else v
    return out


def _seed_from(path: Path) -> int | None:
    for part in reversed(path.parts):
        m = re.fullmatch(r"seed(\d+)", part)
        if m:
            return int(m.group(1))
    return None


def _train_config(run_dir: Path) -> dict | None:
    """The run's training config: config.yaml (resolved, written first thing by run()) or Hydra's copy.

    Hydra's .hydra/config.yaml is unresolved (${encoder.name}); we resolve it with the project's resolvers when
    they import, else fall back to the folder name (the condition slug). eval.py's own Hydra dirs have no
    `condition` key and are therefore not mistaken for runs.
    """
    for p in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if not p.is_file():
            continue
        try:
            cfg = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(cfg, dict) or "condition" not in cfg:
            continue
        cond = cfg.get("condition") or {}
        if any(isinstance(v, str) and "${" in v for v in cond.values()):
            cfg["condition"] = _resolve_condition(p) or parse_slug(run_dir.parent.name) or cond
        return cfg
    return None


def _resolve_condition(path: Path) -> dict | None:
    try:
        from omegaconf import OmegaConf

        import medtransfer.train.resolvers  # noqa: F401  (registers ${mt.*})

        cfg = OmegaConf.load(path)
        return OmegaConf.to_container(cfg.condition, resolve=True)
    except Exception:  # noqa: BLE001  any resolution problem (resolver, missing key): fall back to the slug
        return None


def _history_from_metrics_csv(path: Path, key: str = "val/dice_per_image") -> list[dict]:
    """Per-epoch validation rows from Lightning's CSVLogger file (for runs without results.json)."""
    if not path.is_file():
        return []
    rows = {}
    try:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                v, e = r.get(key), r.get("epoch")
                if v not in (None, "") and e not in (None, ""):
                    rows[int(float(e))] = {"epoch": int(float(e)), key.split("/", 1)[-1]: float(v)}
    except (OSError, ValueError):
        return []
    return [rows[e] for e in sorted(rows)]


def _evals(run_dir: Path) -> dict:
    out = {}
    for p in sorted((run_dir / "eval").glob("*/summary.json")):
        rec = _load_json(p)
        if rec and isinstance(rec.get("metrics"), dict):
            name = f"{rec.get('dataset', '?')}-{rec.get('split', '?')}" if "dataset" in rec else p.parent.name
            out[name] = rec
    return out


def load_run(run_dir: Path) -> Run | None:
    run_dir = Path(run_dir)
    res_path = run_dir / RESULTS
    if res_path.is_file():
        rec = _load_json(res_path) or {}
        status = rec.get("status")
        status = status if status in ("complete", "failed") else "incomplete"
        metrics = rec.get("metrics") or {}
        cond = rec.get("condition") or (rec.get("config") or {}).get("condition") or parse_slug(run_dir.parent.name)
        run = Run(run_dir=run_dir, status=status, study=rec.get("study"), seed=rec.get("seed", _seed_from(run_dir)),
                  condition=dict(cond), error=_first_line(rec.get("error")) if status != "complete" else None,
                  test=dict(metrics.get("test") or {}), val_best=dict(metrics.get("val_best") or {}),
                  val_history=list(metrics.get("val_history") or []), mtime=res_path.stat().st_mtime)
        for k in ("epochs", "best_epoch", "epochs_to_converge", "wall_time_s", "train_images_per_s"):
            run.info[k] = rec.get(k)
        if status == "failed" and not run.error:
            run.error = "failed (no error recorded)"
    else:
        cfg = _train_config(run_dir)
        if cfg is None:
            return None
        run = Run(run_dir=run_dir, status="incomplete", study=cfg.get("study"),
                  seed=cfg.get("seed", _seed_from(run_dir)), condition=dict(cfg.get("condition") or {}),
                  mtime=run_dir.stat().st_mtime)
        run.val_history = _history_from_metrics_csv(run_dir / "metrics.csv")
        ckpt = (run_dir / "checkpoints" / "last.ckpt").is_file()
        run.error = (f"no results.json ({len(run.val_history)} validation epochs logged"
                     f"{', last.ckpt present: a re-run resumes it' if ckpt else ''})")
    if run.seed is not None:
        run.seed = int(run.seed)
    run.evals = _evals(run_dir)
    return run


def find_runs(roots: list[str | Path]) -> tuple[list[Run], list[str]]:
    """All runs under the roots (recursively, symlinks not followed), deduplicated; plus warnings."""
    found, warnings, seen_dirs = [], [], set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            warnings.append(f"{root}: does not exist")
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            is_run = RESULTS in filenames or "config.yaml" in filenames or ".hydra" in dirnames
            if is_run and here.resolve() not in seen_dirs:
                run = load_run(here)
                if run is not None:
                    seen_dirs.add(here.resolve())
                    found.append(run)
                    dirnames[:] = []  # a run dir holds no other runs
                    continue
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
    return dedupe(found, warnings)


_PRIORITY = {"complete": 0, "failed": 1, "incomplete": 2}


def dedupe(runs: list[Run], warnings: list[str] | None = None) -> tuple[list[Run], list[str]]:
    warnings = list(warnings or [])
    best: dict[tuple, Run] = {}
    for r in sorted(runs, key=lambda r: (_PRIORITY[r.status], -r.mtime)):
        if r.key in best:
            warnings.append(f"duplicate {r.status} run {r.run_dir} ignored: same study/condition/seed as "
                            f"{best[r.key].run_dir} ({best[r.key].status})")
        else:
            best[r.key] = r
    return sorted(best.values(), key=lambda r: (str(r.study), str(r.run_dir))), warnings


def condition_value(v) -> str:
    """Condition values as table labels: None → 'all' (n_train/fold unset means the whole split)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "all"
    return str(v)
