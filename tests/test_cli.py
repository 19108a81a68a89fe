"""`medtransfer pretrain list` / `docs`: the sources × encoders matrix read back from what it prints, and the
sources tables regenerated from the configs the console command hands the library."""

from omegaconf import OmegaConf

from medtransfer import cli
from medtransfer.cli import main
from medtransfer.pretrain import registry
from medtransfer.pretrain.registry import README_MARKERS, available_encoders, sources_markdown
from tests._catalogue import PROJECT, SOURCES


def test_pretrain_list_prints_the_whole_matrix(capsys):
    assert main(["pretrain", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "source" in line and "kind" in line)
    cells = [c.strip() for c in header.strip("┃│ ").split("┃")]
    encoders = list(PROJECT.names("encoder"))
    assert cells[:2] == ["source", "kind"] and cells[2:] == encoders  # no name truncated
    rows = {}
    for line in lines:
        parts = [c.strip() for c in line.strip("│ ").split("│")]
        if len(parts) == len(cells) and parts[0] in SOURCES:
            rows[parts[0]] = dict(zip(encoders, parts[2:]))
    assert set(rows) == set(SOURCES)  # every source, once
    for name, cfg in SOURCES.items():
        avail = available_encoders(OmegaConf.create(cfg))
        expect = {e: "✓" if avail == "all" or e in avail else "·" for e in encoders}
        assert rows[name] == expect, name
    assert rows["radimagenet"]["r50"] == "✓" and rows["radimagenet"]["vit_b"] == "·"


def test_pretrain_docs_rewrites_both_tables(tmp_path, monkeypatch, capsys):
    start, end = README_MARKERS
    readme, sources_md = tmp_path / "README.md", tmp_path / "SOURCES.md"
    readme.write_text(f"# title\n{start}\n| stale |\n{end}\nafter\n")
    sources_md.write_text("stale\n")
    monkeypatch.setattr(cli, "README", readme)
    monkeypatch.setattr(registry, "SOURCES_MD", sources_md)
    assert main(["pretrain", "docs"]) == 0
    assert capsys.readouterr().out.split() == [str(sources_md), str(readme)]
    text = readme.read_text()
    assert text.startswith(f"# title\n{start}\n| source | kind |") and text.endswith(f"{end}\nafter\n")
    assert "stale" not in text and all(f"| `{name}` |" in text for name in SOURCES)
    assert sources_md.read_text().endswith(sources_markdown(SOURCES))


def test_pretrain_fetch_of_an_unknown_source_names_the_choices(capsys):
    assert main(["pretrain", "fetch", "imagenett", "--encoder", "r18"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: unknown pretrain source 'imagenett'; valid choices: {', '.join(SOURCES)}\n"
