"""analysis.md + PNGs for `medtransfer analyze` (layer-wise similarity, filter change, feature reuse)."""

from __future__ import annotations

from pathlib import Path

from medtransfer.files import pyplot, save_figure, write_text
from medtransfer.report.tables import frame_markdown


def _plot_layers(df, value_cols, layers, title, ylabel, path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(layers) + 2), 4))
    x = range(len(layers))
    i = 0
    for _, g in df.groupby("pair", sort=False):
        a, b = g["a"].iloc[0], g["b"].iloc[0]
        g = g.drop_duplicates("layer").set_index("layer").reindex(layers)
        for col, style in value_cols:
            ax.plot(x, g[col], style, color=f"C{i % 10}", label=f"{col}: {Path(a).name} vs {Path(b).name}")
        i += 1
    ax.set_xticks(list(x), layers, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if i <= 8:
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def _short(label: str) -> str:
    """Last parts of a checkpoint path (condition/seed/checkpoints/file) — full paths stay in the CSVs."""
    parts = Path(label).parts
    return "/".join(parts[-4:]) if len(parts) > 4 else label


def _for_md(df):
    df = df.drop(columns=[c for c in ("pair",) if c in df.columns]).copy()
    for c in ("a", "b"):
        df[c] = df[c].map(_short)
    return df


def write_markdown(out: Path, sim, fc, reuse, layers, n_images: int, image_size: int, source: str,
                   init: bool) -> list[Path]:
    files = []
    md = ["# medtransfer analyze", "",
          f"{n_images} images from `{source}` at {image_size}×{image_size}; activations sampled at the same "
          "positions for both models (channels = neurons). Linear CKA (Kornblith et al. 2019) and PWCCA "
          "(Morcos et al. 2018; paper 003's RSIM) per layer; filter change = ||W − W0|| / ||W0|| over the "
          "layer's conv/linear weights" + (" (W0 = the rebuilt initialisation: seed + build + pretrained "
                                          "weights; exact only with the run's library versions)" if init else
                                          " (W0 = the second checkpoint)") + ".", ""]
    if not sim.empty:
        p = _plot_layers(sim, [("cka", "-o"), ("pwcca", "--s")], layers, "layer similarity", "similarity",
                         out / "similarity.png")
        files.append(p)
        cols = ["a", "b", "layer", "cka", "pwcca", "mean_cca", "n_samples", "n_neurons", "note"]
        md += ["## Similarity", "", frame_markdown(_for_md(sim[cols]), 4), "", "![similarity](similarity.png)", ""]
    if not fc.empty:
        p = _plot_layers(fc, [("rel_change", "-o")], layers, "filter change", "||W − W0|| / ||W0||",
                         out / "filter_change.png")
        files.append(p)
        md += ["## Filter change", "", frame_markdown(_for_md(fc), 4), "", "![filter change](filter_change.png)", ""]
    if reuse is not None and not reuse.empty:
        md += ["## Feature reuse", "", ("Mean similarity(init, converged) of the transfer runs minus that of the "
                                         "scratch runs, per layer (Raghu et al. 2019; paper 003 Table VIII)."),
               "", frame_markdown(reuse, 3), ""]
    files.append(write_text(out / "analysis.md", "\n".join(md)))
    return files
