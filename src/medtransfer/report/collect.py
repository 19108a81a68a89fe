"""Find every run under the given folders: complete, failed (results.json with status=failed + error),
not_applicable (results.json a sweep writes for an impossible grid cell, with the reason in `error` and no
metrics) and incomplete (a run directory with config.yaml / .hydra but no results.json: killed, timed out,
still running).

Nothing is assumed about the folder layout beyond docs/architecture.md's run directory files, so reports work
on one sweep, many sweeps, a single run dir, or a copy of them. The same condition and seed found twice (e.g.
two study folders, or a copy) would count that seed twice, so it is an error naming both directories unless
the caller asks to keep the newest (complete beats failed beats incomplete beats not applicable, then the
newest results.json) — the others are then listed as warnings.
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

from medtransfer.errors import ConfigError, choices_msg
from medtransfer.runs import CONFIG, HEADLINE, PER_CASE_CSV, RESULTS, parse_slug

SKIP_DIRS = {"checkpoints", "wandb", "eval", "predictions", "__pycache__", "lightning_logs"}


@dataclass
class Run:
    """One run directory, normalised: what the report needs and nothing else."""

    run_dir: Path
    status: str  # complete | failed | incomplete | not_applicable
    study: str | None = None
    split: str | None = None  # the split scheme (results.json split.name): which test part was scored
    seed: int | None = None
    condition: dict = field(default_factory=dict)
    error: str | None = None
    test: dict = field(default_factory=dict)  # metrics.test
    val_best: dict = field(default_factory=dict)
    val_history: list = field(default_factory=list)
    info: dict = field(default_factory=dict)  # epochs, best_epoch, epochs_to_converge, wall_time_s, ...
    evals: dict = field(default_factory=dict)  # "<dataset>-<split>" → eval.py summary.json
    mtime: float = 0.0
    task: str = "segmentation"  # results.json task (classification runs: auroc is their headline metric)

    @property
    def headline(self) -> str:
        """The task's default metric: tables, tests, convergence and learning curves use it unless told."""
        return HEADLINE.get(self.task, "dice_per_image")

    @property
    def per_image_csv(self) -> Path | None:
        p = self.run_dir / PER_CASE_CSV
        return p if p.is_file() else None

    def identity(self, by_study: bool = False) -> tuple:
        """What makes two runs the same measurement: condition (unset keys dropped, so an older record
        without `extra` matches a newer one with extra=None) and seed, plus the study when the report keeps
        studies apart."""
        cond = tuple(sorted((k, str(v)) for k, v in self.condition.items() if v is not None))
        return (cond, self.seed, self.study if by_study else None)


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


def _seed_from(path: Path) -> int | None:
    for part in reversed(path.parts):
        m = re.fullmatch(r"seed(\d+)", part)
        if m:
            return int(m.group(1))
    return None


def _train_config(run_dir: Path) -> dict | None:
    """The run's training config: config.yaml (resolved, written first thing by run()) or Hydra's copy.

    Hydra's .hydra/config.yaml is unresolved (${encoder.name}, ${mt.extra:}): its condition is read back from
    the folder name instead (the condition slug, medtransfer.runs.parse_slug), which is what the job resolved
    it to. eval.py's own Hydra dirs have no `condition` key and are therefore not mistaken for runs.
    """
    for p in (run_dir / CONFIG, run_dir / ".hydra" / CONFIG):
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
            cfg["condition"] = parse_slug(run_dir.parent.name) or cond
        return cfg
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
        status = status if status in ("complete", "failed", "not_applicable") else "incomplete"
        metrics = rec.get("metrics") or {}
        cond = rec.get("condition") or (rec.get("config") or {}).get("condition") or parse_slug(run_dir.parent.name)
        split = (rec.get("split") or {}).get("name") or (((rec.get("config") or {}).get("dataset") or {}).get("split"))
        run = Run(run_dir=run_dir, status=status, study=rec.get("study"), seed=rec.get("seed", _seed_from(run_dir)),
                  split=split, condition=dict(cond),
                  error=_first_line(rec.get("error")) if status != "complete" else None,
                  test=dict(metrics.get("test") or {}), val_best=dict(metrics.get("val_best") or {}),
                  val_history=list(metrics.get("val_history") or []), mtime=res_path.stat().st_mtime,
                  task=str(rec.get("task") or "segmentation"))
        for k in ("epochs", "best_epoch", "epochs_to_converge", "wall_time_s", "train_images_per_s"):
            run.info[k] = rec.get(k)
        if status in ("failed", "not_applicable") and not run.error:
            run.error = f"{status.replace('_', ' ')} (no reason recorded)"
    else:
        cfg = _train_config(run_dir)
        if cfg is None:
            return None
        run = Run(run_dir=run_dir, status="incomplete", study=cfg.get("study"),
                  seed=cfg.get("seed", _seed_from(run_dir)), condition=dict(cfg.get("condition") or {}),
                  split=(cfg.get("dataset") or {}).get("split"), mtime=run_dir.stat().st_mtime)
        run.val_history = _history_from_metrics_csv(run_dir / "metrics.csv")
        ckpt = (run_dir / "checkpoints" / "last.ckpt").is_file()
        run.error = (f"no results.json ({len(run.val_history)} validation epochs logged"
                     f"{', last.ckpt present: a re-run resumes it' if ckpt else ''})")
    if run.seed is not None:
        run.seed = int(run.seed)
    run.evals = _evals(run_dir)
    return run


def find_runs(roots: list[str | Path], duplicates: str = "error",
              by_study: bool = False) -> tuple[list[Run], list[str]]:
    """All runs under the roots, deduplicated (see dedupe()); plus warnings."""
    runs, warnings = scan(roots)
    return dedupe(runs, warnings, duplicates, by_study)


def scan(roots: list[str | Path]) -> tuple[list[Run], list[str]]:
    """Every run dir under the roots (recursively, symlinks not followed; a folder reached twice counts once),
    duplicates of a condition and seed included; plus warnings."""
    found, warnings, seen_dirs = [], [], set()
    for root in roots:
        root = Path(root)
        if not root.exists():
            warnings.append(f"{root}: does not exist")
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            is_run = RESULTS in filenames or CONFIG in filenames or ".hydra" in dirnames
            if is_run and here.resolve() not in seen_dirs:
                run = load_run(here)
                if run is not None:
                    seen_dirs.add(here.resolve())
                    found.append(run)
                    dirnames[:] = []  # a run dir holds no other runs
                    continue
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS)
    return found, warnings


DUPLICATES = ("error", "newest")
_PRIORITY = {"complete": 0, "failed": 1, "incomplete": 2, "not_applicable": 3}


def dedupe(runs: list[Run], warnings: list[str] | None = None, duplicates: str = "error",
           by_study: bool = False) -> tuple[list[Run], list[str]]:
    """One run per condition and seed (per study too with by_study).

    duplicates="error": a ConfigError naming the first two directories of the same measurement (sorted, so the
    message is stable); "newest": keep one — complete over failed over incomplete over not applicable, then
    the newest — and warn about each one left out.
    """
    if duplicates not in DUPLICATES:
        raise ConfigError(choices_msg("--duplicates", duplicates, DUPLICATES))
    warnings = list(warnings or [])
    groups: dict[tuple, list[Run]] = {}
    for r in sorted(runs, key=lambda r: (_PRIORITY[r.status], -r.mtime, str(r.run_dir))):
        groups.setdefault(r.identity(by_study), []).append(r)
    clashes = sorted(sorted(str(r.run_dir) for r in g) for g in groups.values() if len(g) > 1)
    if clashes and duplicates == "error":
        studies = {r.study for g in groups.values() if len(g) > 1 for r in g}
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        hint = " or add study to --rows/--cols to keep the studies apart" if len(studies) > 1 and not by_study else ""
        raise ConfigError(f"the same condition and seed was found twice: {clashes[0][0]} and {clashes[0][1]}{more}; "
                          f"a seed would count twice — pass --duplicates newest to keep the newest{hint}")
    for g in groups.values():
        for r in g[1:]:
            warnings.append(f"duplicate {r.status} run {r.run_dir} ignored: same condition and seed as "
                            f"{g[0].run_dir} ({g[0].status})")
    return sorted((g[0] for g in groups.values()), key=lambda r: (str(r.study), str(r.run_dir))), warnings


def condition_value(v) -> str:
    """Condition values as table labels: None → 'all' (n_train/fold unset means the whole split)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "all"
    return str(v)
