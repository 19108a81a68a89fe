"""`medtransfer analyze`: argparse hook for the `medtransfer` console script (torch imported only when run).

Modes:
  analyze A B --images X --out D               A vs B (e.g. two pretrainings, or two epochs of one run)
  analyze A [A2 ...] --init --images X --out D each checkpoint vs its own rebuilt initialisation
  analyze T1 T2 --init --scratch S1 S2 ...      + feature reuse = sim(T, init) − sim(S, init) per layer
"""

from __future__ import annotations

import argparse
import sys


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "analyze", help="layer similarity (CKA, PWCCA), filter change and feature reuse of checkpoints",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpts", nargs="+", metavar="CKPT", help="medtransfer checkpoints (checkpoints/best.ckpt)")
    p.add_argument("--init", action="store_true",
                   help="compare each CKPT with its initialisation (rebuilt from its config and seed)")
    p.add_argument("--scratch", nargs="+", default=[], metavar="CKPT",
                   help="with --init: scratch-trained checkpoints; adds feature reuse (transfer − scratch)")
    p.add_argument("--images", required=True,
                   help="a folder of images (or with an images/ sub-folder), or the dataset name of a given "
                   "checkpoint (its own saved config says where the data are)")
    p.add_argument("--split", default=None, help="dataset split for --images NAME (default: the training "
                   "split's test part for the training dataset, else all)")
    p.add_argument("--n-images", type=int, default=16, help="images in the batch (default 16)")
    p.add_argument("--layers", type=_csv_list, default=None,
                   help="comma list of module names (e.g. encoder.backbone.layer1,decoder.blocks.0,head); "
                   "default: encoder stages, decoder blocks and the head")
    p.add_argument("--max-samples", type=int, default=4096,
                   help="activation rows (spatial positions) sampled per layer (default 4096); PWCCA needs "
                   "more rows than the layer's channels")
    p.add_argument("--seed", type=int, default=0, help="seed of the position sampling")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from medtransfer.errors import MedTransferError

    try:
        from medtransfer.analysis.pipeline import run_analysis

        res = run_analysis(args.ckpts, args.out, init=args.init, scratch=args.scratch, images=args.images,
                           layers=args.layers, n_images=args.n_images, split=args.split,
                           max_samples=args.max_samples, seed=args.seed, batch_size=args.batch_size)
    except (MedTransferError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[medtransfer] analyze: {len(res['layers'])} layers → {args.out}/analysis.md")
    return 0
