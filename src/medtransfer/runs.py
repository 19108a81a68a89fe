"""The run-directory contract between the stage that writes runs (train/) and the ones that read them (report/,
analysis/): file names, the condition slug (written and read back), each task's headline metric, and the one
convergence definition.

Why a module of its own, below both: the writer and the readers had each their own copy (two RESULTS
constants, a slug-key table and its hand-written inverse, two convergence functions that disagreed for a
negative best), and report/ imported train/ to resolve a slug. Stdlib only, so the report stays light.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence

RESULTS = "results.json"  # the run's record (docs/architecture.md, schema 1); status=complete means "done, skip"
CONFIG = "config.yaml"  # the fully resolved config, written first thing by a job
PER_CASE_CSV = "test_per_image.csv"  # one row per test case (image), for paired statistics and ROC curves

#: The report's default metric per task (results.json `task`): tables, t-tests, convergence, learning curves.
HEADLINE = {"segmentation": "dice_per_image", "classification": "auroc", "segmentation3d": "dice"}

# the order and short keys of the condition slug: enc-r50_dec-unet_pre-imagenet_ft-full_ds-kvasir_seg_n-all.
# No "=" in it (design.md had one): Hydra's override grammar rejects "=" in values, so `eval.py ckpt=<run dir>`
# would need quoting.
SLUG_KEYS = {"encoder": "enc", "decoder": "dec", "pretrain": "pre", "finetune": "ft", "dataset": "ds",
             "n_train": "n", "fold": "fold", "extra": "x"}
SLUG_NAMES = {short: key for key, short in SLUG_KEYS.items()}
OPTIONAL_KEYS = {"fold", "extra", "decoder"}  # left out of the slug when null
MAX_SLUG = 160


def condition_slug(condition: Mapping) -> str:
    """A filesystem-safe, deterministic name for a condition; equal conditions give equal paths."""
    parts = []
    for key, short in SLUG_KEYS.items():
        value = condition.get(key)
        if key in OPTIONAL_KEYS and value is None:
            continue
        parts.append(f"{short}-{'all' if value is None else value}")
    extra = sorted(k for k in condition if k not in SLUG_KEYS)
    parts += [f"{k}-{condition[k]}" for k in extra]
    slug = re.sub(r"[^A-Za-z0-9._+-]", "-", "_".join(parts))
    if len(slug) > MAX_SLUG:  # file names stop at 255 bytes (e.g. a checkpoint path in extra): keep it unique
        slug = f"{slug[:MAX_SLUG - 13]}-{hashlib.sha256(slug.encode()).hexdigest()[:12]}"
    return slug


def parse_slug(name: str) -> dict:
    """Condition slug → dict (the inverse of condition_slug, for run dirs without a readable record); values
    may contain '_'. Both spellings: enc-r50_dec-unet_..._ds-kvasir_seg_n-all and enc=r50_dec=unet_...
    (older). With '-', only the known short keys start a new part (values such as moco-v3 contain '-')."""
    if "=" in name:
        sep, parts = "=", re.split(r"_(?=[A-Za-z][A-Za-z0-9]*=)", name)  # keys have no "_"
    else:
        sep, parts = "-", re.split("_(?=(?:" + "|".join(SLUG_NAMES) + ")-)", name)
    out = {}
    for part in parts:
        if sep not in part:
            return {}
        k, v = part.split(sep, 1)
        out[SLUG_NAMES.get(k, k)] = None if v == "all" and k == "n" else v
    return out


def _number(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def convergence_epoch(history: Sequence[Mapping], key: str = "dice_per_image",
                      tol: float = 0.005) -> tuple[int | None, int | None]:
    """(epoch, epochs_to_converge): the first logged validation epoch whose `key` is within tol (relative) of
    the run's best, i.e. >= best - |best| * tol (papers 003/004: 'validation Dice within 0.5 % of its maximum').

    `epoch` is the history entry's own 0-based number (Lightning's current_epoch; the list position where an
    entry has none), so validation every k epochs still counts epochs, not list positions; epochs_to_converge
    = epoch + 1 is the number of epochs trained to get there. (None, None) when no entry has a value. The
    job records epochs_to_converge with it and the report recomputes it with it, so the two always agree.
    """
    rows = [(h.get("epoch", i), _number(h.get(key))) for i, h in enumerate(history or [])]
    rows = sorted((int(e), v) for e, v in rows if v is not None and e is not None)
    if not rows:
        return None, None
    best = max(v for _, v in rows)
    epoch = next(e for e, v in rows if v >= best - abs(best) * tol)  # the best itself qualifies
    return epoch, epoch + 1
