"""notebooks/*.ipynb run top to bottom on a fake study (the report's fixture), without Jupyter."""

import json
import sys
from pathlib import Path

import matplotlib

from medtransfer import settings

sys.path.insert(0, str(Path(__file__).parent))
from test_report_build import DICE, make_sweep  # noqa: E402

NOTEBOOKS = settings.PROJECT_ROOT / "notebooks"


def _run(nb_path: Path) -> dict:
    cells = json.loads(nb_path.read_text())["cells"]
    ns: dict = {}
    for i, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        exec(compile("".join(cell["source"]), f"{nb_path.name}[code cell {i}]", "exec"), ns)
    return ns


def test_explore_study_notebook(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    study = make_sweep(tmp_path / "runs") / "demo"
    monkeypatch.setenv("MEDTRANSFER_STUDY", str(study))
    ns = _run(NOTEBOOKS / "explore_study.ipynb")
    agg = ns["agg"].set_index(["encoder", "pretrain"])
    assert len(agg) == len(DICE)
    for cond, values in DICE.items():
        done = [v for v in values if v is not None]
        assert agg.loc[cond, "n"] == len(done)
        assert abs(agg.loc[cond, "mean"] - sum(done) / len(done)) < 1e-9
    assert agg.loc[("r18", "imagenet"), "n_failed"] == 1 and agg.loc[("r18", "scratch"), "n_incomplete"] == 1
    n_complete = sum(v is not None for vs in DICE.values() for v in vs)
    assert len(ns["fig"].axes[1].lines) == sum(bool(r.val_history) for r in ns["runs"]) >= n_complete
