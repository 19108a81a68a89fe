"""Report figures (matplotlib, Agg backend: reports are built on headless cluster nodes).

bars with seed-std error bars and the individual seeds drawn on top (n=3 bars hide too much otherwise);
per-image Dice box plots (each image averaged over its seeds); validation learning curves (mean ± std over
seeds per group, from results.json's val_history, or metrics.csv for runs that never finished); an ID → OOD
slope chart for rank shifts; per condition, the ROC curves of classification runs (report/roc.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medtransfer.files import pyplot, save_figure
from medtransfer.report.tables import group_label


def _width(n: int) -> float:
    return min(18.0, max(5.0, 0.7 * n + 2))


def bars(df, agg, keys: Sequence[str], metric: str, path: Path, hue: Sequence[str] = ()) -> Path | None:
    """Bar per group (mean, error bar = std over seeds), seeds as dots; `hue` keys become grouped bars."""
    agg = agg[agg["n"] > 0]
    if agg.empty:
        return None
    plt = pyplot()
    keys, hue = list(keys), list(hue)
    xs = list(dict.fromkeys(tuple(r[k] for k in keys) for r in agg.to_dict("records")))
    hs = list(dict.fromkeys(tuple(r[k] for k in hue) for r in agg.to_dict("records"))) if hue else [()]
    fig, ax = plt.subplots(figsize=(_width(len(xs) * len(hs)), 4))
    width = 0.8 / len(hs)
    ok = df[df["status"] == "complete"]
    for j, h in enumerate(hs):
        for i, x in enumerate(xs):
            sel = agg
            for k, v in zip(keys + hue, x + h):
                sel = sel[sel[k] == v]
            if sel.empty:
                continue
            r = sel.iloc[0]
            pos = i + (j - (len(hs) - 1) / 2) * width
            ax.bar(pos, r["mean"], width * 0.9, yerr=0 if np.isnan(r["std"]) else r["std"], capsize=3,
                   color=f"C{j}", alpha=0.8, label=group_label(h, hue) if (hue and i == 0) else None)
            pts = ok
            for k, v in zip(keys + hue, x + h):
                pts = pts[pts[k] == v]
            ax.scatter(np.full(len(pts), pos), pts[metric], s=10, color="k", zorder=3)
    ax.set_xticks(range(len(xs)), [group_label(x, keys) for x in xs], rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean ± std over seeds")
    if hue:
        ax.legend(title=" / ".join(hue), fontsize=8)
    return save_figure(fig, path)


def per_image_box(images: dict[tuple, dict], keys: Sequence[str], path: Path, column: str = "dice") -> Path | None:
    """Box plot of per-image values per group (from test_per_image.csv; each image averaged over seeds)."""
    groups = [(g, np.array([v for v in d.values() if not np.isnan(v)], dtype=float)) for g, d in sorted(images.items())]
    groups = [(g, v) for g, v in groups if v.size]
    if not groups:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(_width(len(groups)), 4))
    data = [v for _, v in groups]
    ax.violinplot(data, showextrema=False)
    ax.boxplot(data, widths=0.15, showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(groups) + 1), [f"{group_label(g, keys)}\n(n={v.size})" for g, v in groups],
                  rotation=30, ha="right")
    ax.set_ylabel(f"per-image {column}")
    ax.set_title(f"test per-image {column} (each image averaged over seeds)")
    return save_figure(fig, path)


def _curve(history: list[dict], key: str) -> dict[int, float]:
    return {int(h.get("epoch", i)): float(h[key]) for i, h in enumerate(history) if h.get(key) is not None}


def learning_curves(runs, keys: Sequence[str], path: Path, key: str = "dice_per_image") -> Path | None:
    """Validation `key` per epoch: mean over a group's seeds (seeds that stopped early drop out), ± std."""
    from medtransfer.report.collect import condition_value

    curves: dict[tuple, list[dict[int, float]]] = {}
    for r in runs:
        c = _curve(r.val_history, key)
        if c:
            curves.setdefault(tuple(condition_value(r.condition.get(k)) for k in keys), []).append(c)
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (g, cs) in enumerate(sorted(curves.items())):
        epochs = sorted(set().union(*cs))
        vals = [[c[e] for c in cs if e in c] for e in epochs]
        mean = np.array([np.mean(v) for v in vals])
        std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals])
        ax.plot(epochs, mean, color=f"C{i % 10}", label=f"{group_label(g, keys)} (n={len(cs)})")
        ax.fill_between(epochs, mean - std, mean + std, color=f"C{i % 10}", alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"val {key}")
    ax.set_title("validation learning curves (mean ± std over seeds)")
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def rank_slope(table, keys: Sequence[str], eval_name: str, path: Path) -> Path | None:
    """ID rank → OOD rank per group (paper 002's rank shift), rank 1 at the top."""
    t = table.dropna(subset=["id_rank", "ood_rank"])
    if t.empty:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, max(3, 0.35 * len(t) + 1.5)))
    for i, r in enumerate(t.to_dict("records")):
        label = group_label(tuple(r[k] for k in keys), keys)
        color = "C2" if r["rank_shift"] > 0 else "C3" if r["rank_shift"] < 0 else "C7"
        ax.plot([0, 1], [r["id_rank"], r["ood_rank"]], "-o", color=color)
        ax.text(-0.03, r["id_rank"], label, ha="right", va="center", fontsize=8)
        ax.text(1.03, r["ood_rank"], f"{int(r['rank_shift']):+d}", ha="left", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.8, 1.2)
    ax.set_xticks([0, 1], ["in-distribution (test)", eval_name])
    ax.set_ylabel("rank (1 = best)")
    ax.set_title("rank shift")
    return save_figure(fig, path)


def roc_curves(seeds, title: str, path: Path) -> tuple[Path | None, list[dict]]:
    """One condition's ROC figure (report/roc.py says what is drawn and why): `seeds` as from
    roc.cases_by_group. Returns the figure (None when no label has both classes) and one row per seed and
    label: seed, label, auroc (the annotated value), n_pos, n_neg, per_case_csv."""
    from medtransfer.report.roc import roc_curve

    labels = list(dict.fromkeys(label for _, _, cases in seeds for label in cases))
    rows, curves = [], {label: [] for label in labels}
    for seed, csv_path, cases in seeds:
        for label in labels:
            if label not in cases:
                continue
            scores, positive = cases[label]
            fpr, tpr, auc = roc_curve(scores, positive)
            rows.append({"seed": seed, "label": label, "auroc": auc, "n_pos": int(positive.sum()),
                         "n_neg": int((~positive).sum()), "per_case_csv": str(csv_path)})
            if fpr.size:
                curves[label].append((seed, fpr, tpr, auc))
    labels = [label for label in labels if curves[label]]
    if not labels:
        return None, rows
    plt = pyplot()
    ncol = min(4, len(labels))
    nrow = -(-len(labels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.4 * nrow), squeeze=False)
    for ax in axes.flat[len(labels):]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, labels):
        aucs = [c[3] for c in curves[label]]
        for i, (seed, fpr, tpr, auc) in enumerate(curves[label]):
            ax.plot(fpr, tpr, color=f"C{i % 10}", lw=1, label=f"seed {seed}: AUROC {auc:.3f}")
        ax.plot([0, 1], [0, 1], ":", color="0.6", lw=0.8)
        spread = f" ± {np.std(aucs, ddof=1):.3f}" if len(aucs) > 1 else ""
        ax.set_title(f"{label}: AUROC {np.mean(aucs):.3f}{spread} (n={len(aucs)})", fontsize=9)
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.set_ylabel("true positive rate", fontsize=8)
        ax.set_aspect("equal")
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"ROC (test): {title}", fontsize=10)
    return save_figure(fig, path), rows
