"""`medtransfer pretrain list`: the sources × encoders matrix, read back from what it prints."""

from omegaconf import OmegaConf

from medtransfer import settings
from medtransfer.cli import main
from medtransfer.pretrain.registry import available_encoders, sources


def test_pretrain_list_prints_the_whole_matrix(capsys):
    assert main(["pretrain", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "source" in line and "kind" in line)
    cells = [c.strip() for c in header.strip("┃│ ").split("┃")]
    encoders = [p.stem for p in sorted((settings.PROJECT_ROOT / "conf/encoder").glob("*.yaml"))]
    assert cells[:2] == ["source", "kind"] and cells[2:] == encoders  # no name truncated
    rows = {}
    for line in lines:
        parts = [c.strip() for c in line.strip("│ ").split("│")]
        if len(parts) == len(cells) and parts[0] in sources():
            rows[parts[0]] = dict(zip(encoders, parts[2:]))
    assert set(rows) == set(sources())  # every source, once
    for name, cfg in sources().items():
        avail = available_encoders(OmegaConf.create(cfg))
        expect = {e: "✓" if avail == "all" or e in avail else "·" for e in encoders}
        assert rows[name] == expect, name
    assert rows["radimagenet"]["r50"] == "✓" and rows["radimagenet"]["vit_b"] == "·"
