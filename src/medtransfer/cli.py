"""`medtransfer` console command: tools around the runs (training itself is `python train.py`).

Application layer: like the Hydra entry points (train/cli.py), it knows where the project's config folder is
and hands the library a `Catalogue` of its options; library code never reads that folder itself.
"""

from __future__ import annotations

import argparse
import sys

from medtransfer import settings
from medtransfer.configs import Catalogue
from medtransfer.errors import MedTransferError

CONF = settings.PROJECT_ROOT / "conf"
README = settings.PROJECT_ROOT / "README.md"
GROUPS = ("encoder", "pretrain")  # what the pretrain commands look up by name


def catalogue() -> Catalogue:
    """The project's encoder and pretraining-source options, for the library functions that take names."""
    return Catalogue.from_dir(CONF, GROUPS)


def pretrain_list(args) -> int:
    """Sources × encoders matrix: '✓' where the source has weights for the encoder."""
    from rich.console import Console
    from rich.table import Table

    from medtransfer.pretrain.registry import available_encoders

    cat = catalogue()
    encoders = cat.names("encoder")
    table = Table(title="pretraining sources × encoders")
    table.add_column("source", no_wrap=True)
    table.add_column("kind")
    for e in encoders:
        table.add_column(e, justify="center")
    for name, cfg in cat.group("pretrain").items():
        avail = available_encoders(cfg)
        table.add_row(name, str(cfg.get("kind", "")), *("✓" if avail == "all" or e in avail else "·" for e in encoders))
    console = Console()
    if not console.is_terminal:  # piped or captured: rich's 80-column default would truncate encoder names
        console = Console(width=200)
    console.print(table)
    return 0


def pretrain_fetch(args) -> int:
    """Download once (or find in the cache) and check the file as a run will load it; prints its path."""
    from medtransfer.pretrain.cache import fetch

    print(fetch(args.name, args.encoder, catalogue()))
    return 0


def pretrain_convert(args) -> int:
    """Prints the canonical file; which encoders it fits goes to stderr when more than one was tried."""
    from medtransfer.pretrain.convert import convert

    path, fitting = convert(args.file, args.source, args.encoder, args.out, catalogue=catalogue(),
                            trust_pickle=args.trust_pickle)
    if args.encoder is None:
        print(f"fits encoder(s): {', '.join(fitting)}", file=sys.stderr)
    print(path)
    return 0


def pretrain_docs(args) -> int:
    """Regenerate the sources tables (pretrain/SOURCES.md, README.md's short one) from conf/pretrain."""
    from medtransfer.pretrain import registry

    sources = catalogue().group("pretrain")
    print(registry.write_sources_md(sources, registry.SOURCES_MD))
    print(registry.write_readme_table(README, sources))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="medtransfer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("pretrain", help="pretraining sources").add_subparsers(dest="action", required=True)
    pre.add_parser("list", help="sources × encoders matrix").set_defaults(fn=pretrain_list)
    fetch = pre.add_parser("fetch", help="download (once) and verify a source's weights for an encoder "
                                         "(hash, layout, exact keys); a cached file is verified too")
    fetch.add_argument("name")
    fetch.add_argument("--encoder", required=True)
    fetch.set_defaults(fn=pretrain_fetch)
    conv = pre.add_parser("convert", help="convert a local checkpoint of a source's layout to canonical safetensors")
    conv.add_argument("file")
    conv.add_argument("--source", required=True)
    conv.add_argument("--encoder", default=None,
                      help="the encoder the file is for (optional for --source file: every encoder is tried)")
    conv.add_argument("--out", default=None)
    conv.add_argument("--trust-pickle", action="store_true",
                      help="allow a full (non weights-only) unpickle of a file you trust")
    conv.set_defaults(fn=pretrain_convert)
    pre.add_parser("docs", help="regenerate the sources tables (pretrain/SOURCES.md, README.md) from the configs"
                   ).set_defaults(fn=pretrain_docs)
    from medtransfer.analysis.cli import add_parser as add_analyze
    from medtransfer.report.cli import add_parser as add_report

    add_report(sub)
    add_analyze(sub)
    args = parser.parse_args(argv)
    fn = getattr(args, "fn", None) or args.func
    try:
        return fn(args)
    except MedTransferError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
