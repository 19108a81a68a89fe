"""Library code never reads the project's config folder: only the application layer (the Hydra entry points
and the `medtransfer` console command) knows where conf/ is, and hands the library a Catalogue or a composed
config. Enforced by reading the source: any path built from a string naming `conf` outside those modules."""

from __future__ import annotations

import ast
import re

import pytest

from medtransfer import settings
from medtransfer.configs import Catalogue
from medtransfer.errors import ConfigError

PACKAGE = settings.PROJECT_ROOT / "src" / "medtransfer"
APP_LAYER = {"cli.py", "train/cli.py"}  # the entry points: they own the config folder
CONF = re.compile(r"^/?conf(/|$)")
PATH_CALLS = {"Path", "open", "load", "glob", "joinpath", "read_text", "PurePath"}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _text(node: ast.AST) -> str | None:
    """A string constant, or an f-string's leading literal part."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        return _text(node.values[0])
    return None


def conf_references(source: str) -> list[int]:
    """Line numbers where `source` builds a path into conf/: a bare "conf" (or "conf/...") string anywhere
    in code, or an f-string starting with conf/ that is joined to a path or passed to a file call. Error
    messages that name a config file for the user (f"conf/pretrain/{name}.yaml: ...") are not reads."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    parents = {id(c): p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    lines = []
    for node in ast.walk(tree):
        text = _text(node)
        if text is None or id(node) in docs or not CONF.match(text):
            continue
        parent = parents.get(id(node))
        if isinstance(parent, ast.JoinedStr):
            continue  # a literal part of an f-string: judged as the whole f-string (its own node)
        is_fstring = isinstance(node, ast.JoinedStr)
        pathlike = isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Div)
        if isinstance(parent, ast.Call):
            f = parent.func
            pathlike |= (f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")) in PATH_CALLS
        if not is_fstring or pathlike:
            lines.append(node.lineno)
    return lines


def _modules() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_library_module_reads_the_conf_folder():
    found = {rel: conf_references(src) for rel, src in _modules().items() if rel not in APP_LAYER}
    assert {rel: lines for rel, lines in found.items() if lines} == {}


@pytest.mark.parametrize("snippet", [
    'ROOT / "conf" / "encoder"',
    'Path(ROOT, "conf")',
    'OmegaConf.load("conf/encoder/r18.yaml")',
    'ROOT / f"conf/{group}"',
    'sorted((ROOT / "conf/pretrain").glob("*.yaml"))',
    'def f():\n    """Reads nothing."""\n    return settings.PROJECT_ROOT / "conf"',
])
def test_the_scan_catches_each_way_of_reaching_conf(snippet):
    assert conf_references(snippet)


@pytest.mark.parametrize("snippet", [
    '"""Fields of ``conf/encoder/<name>.yaml``."""',
    'raise ConfigError(f"conf/pretrain/{name}.yaml files.{enc}: unknown field")',
    'x = "configure"',
    'ROOT / "runs"',
])
def test_docs_and_messages_naming_a_config_file_are_not_reads(snippet):
    assert conf_references(snippet) == []


def test_the_app_layer_modules_exist_and_do_read_conf():
    """The exemptions are real: renaming an entry point must update APP_LAYER, not silently widen it."""
    modules = _modules()
    assert all(conf_references(modules[rel]) for rel in APP_LAYER)


# ------------------------------------------------------------------------------------------- Catalogue


def test_catalogue_from_a_folder_lists_and_loads_options(tmp_path):
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder" / "b.yaml").write_text("name: b\nx: ${y}\ny: 2\n")
    (tmp_path / "encoder" / "a.yaml").write_text("name: a\n")
    (tmp_path / "decoder").mkdir()
    (tmp_path / "decoder" / "c.yaml").write_text("name: c\n")
    cat = Catalogue.from_dir(tmp_path, ["encoder"])
    assert cat.names("encoder") == ("a", "b")
    assert cat.get("encoder", "b") == {"name": "b", "x": 2, "y": 2}  # plain, resolved
    cat.get("encoder", "b")["name"] = "changed"  # a copy: the catalogue is not mutated through it
    assert cat.group("encoder") == {"a": {"name": "a"}, "b": {"name": "b", "x": 2, "y": 2}}
    with pytest.raises(ConfigError, match=r"^unknown config group 'decoder'; valid choices: encoder$"):
        cat.names("decoder")  # only the named groups were loaded


def test_catalogue_unknown_option_names_the_choices():
    cat = Catalogue({"pretrain": {"imagenet": {"name": "imagenet"}, "dino": {"name": "dino"}}})
    with pytest.raises(ConfigError, match=r"^unknown pretrain source 'inet'; valid choices: dino, imagenet$"):
        cat.get("pretrain", "inet", "pretrain source")
    with pytest.raises(ConfigError, match=r"^unknown pretrain 'inet'; valid choices: dino, imagenet$"):
        cat.get("pretrain", "inet")
