"""`medtransfer analyze` through its argparse hook on fabricated medtransfer checkpoints (r18 + U-Net, 64 px).

The checkpoints are written the way Lightning does (state_dict with "model." prefix, hyper_parameters.cfg), so
load_checkpoint and the --init rebuild (medtransfer.networks: seed → build_network → load_pretrained) run for
real.
"""

import argparse
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from medtransfer import settings
from medtransfer.analysis import cli as analysis_cli

CONF = settings.PROJECT_ROOT / "conf"
LAYERS = "encoder.backbone.conv1,encoder.backbone.layer1,encoder.backbone.layer4,decoder.blocks.4,head"


def _cfg(seed):
    return {"seed": seed, "image_size": 64,
            "encoder": OmegaConf.to_container(OmegaConf.load(CONF / "encoder/r18.yaml")),
            "decoder": OmegaConf.to_container(OmegaConf.load(CONF / "decoder/unet.yaml")),
            "dataset": OmegaConf.to_container(OmegaConf.load(CONF / "dataset/synthetic.yaml")),
            "pretrain": OmegaConf.to_container(OmegaConf.load(CONF / "pretrain/scratch.yaml"))}


def _save(model, cfg, path):
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"cfg": cfg}}, path)
    return str(path)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    import lightning as L

    from medtransfer.models import build_model

    d = tmp_path_factory.mktemp("ckpts")
    cfg = _cfg(seed=3)
    L.seed_everything(3, verbose=False)
    init = build_model(cfg["encoder"], cfg["decoder"], num_classes=1, image_size=64)
    at_init = _save(init, cfg, d / "init.ckpt")
    with torch.no_grad():  # "training" that moves layer4 and the head only
        init.encoder.backbone.layer4[0].conv1.weight.mul_(1.5)
        init.head[0].weight.add_(1.0)
    trained = _save(init, cfg, d / "trained.ckpt")
    imgs = d / "images"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (80, 70, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    return at_init, trained, d


def _run(argv):
    parser = argparse.ArgumentParser()
    analysis_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["analyze", *argv])
    return args.func(args)


def test_init_rebuild_reproduces_the_start_and_sees_the_change(ckpts, tmp_path):
    at_init, trained, d = ckpts
    out = tmp_path / "a"
    assert _run([at_init, trained, "--init", "--images", str(d / "images"), "--layers", LAYERS,
                 "--n-images", "4", "--max-samples", "1024", "--out", str(out)]) == 0
    fc = pd.read_csv(out / "filter_change.csv").set_index(["a", "layer"])
    sim = pd.read_csv(out / "similarity.csv").set_index(["a", "layer"])
    for layer in LAYERS.split(","):  # the untouched checkpoint IS its rebuilt init
        assert fc.loc[(at_init, layer), "rel_change"] == 0.0
        assert sim.loc[(at_init, layer), "cka"] == pytest.approx(1.0, abs=1e-6)
    assert fc.loc[(trained, "encoder.backbone.layer1"), "rel_change"] == 0.0
    assert fc.loc[(trained, "encoder.backbone.layer4"), "rel_change"] > 0.05
    assert sim.loc[(trained, "head"), "cka"] < 0.999
    assert sim.loc[(trained, "encoder.backbone.conv1"), "pwcca"] == pytest.approx(1.0, abs=1e-6)
    # layer4 of 4 images at 64 px: 16 positions for 512 channels → PWCCA undefined, said so
    assert np.isnan(sim.loc[(trained, "encoder.backbone.layer4"), "pwcca"])
    assert "more samples than neurons" in sim.loc[(trained, "encoder.backbone.layer4"), "note"]
    for f in ("analysis.md", "similarity.png", "filter_change.png"):
        assert (out / f).stat().st_size > 0


def test_pair_mode_and_feature_reuse(ckpts, tmp_path):
    at_init, trained, d = ckpts
    assert _run([trained, at_init, "--images", str(d / "images"), "--layers", "head", "--n-images", "2",
                 "--out", str(tmp_path / "p")]) == 0
    pair = pd.read_csv(tmp_path / "p" / "filter_change.csv")
    assert pair["rel_change"].item() > 0
    assert _run([trained, "--init", "--scratch", at_init, "--images", str(d / "images"), "--layers",
                 "head,encoder.backbone.layer1", "--n-images", "2", "--out", str(tmp_path / "r")]) == 0
    reuse = pd.read_csv(tmp_path / "r" / "feature_reuse.csv").set_index(["measure", "layer"])
    assert reuse.loc[("cka", "encoder.backbone.layer1"), "reuse"] == pytest.approx(0.0, abs=1e-6)
    assert reuse.loc[("cka", "head"), "reuse"] < 0  # the "transfer" run moved its head, the scratch one not


def test_bad_invocations_exit_2(ckpts, tmp_path, capsys):
    at_init, _, d = ckpts
    assert _run([at_init, "--images", str(d / "images"), "--out", str(tmp_path)]) == 2
    assert _run([at_init, "--init", "--images", str(d / "images"), "--layers", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown layer" in capsys.readouterr().err
    # a dataset name is taken from a given checkpoint's config, never from the project's conf/ folder
    assert _run([at_init, "--init", "--images", "kvasir_seg", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--images kvasir_seg: neither a folder nor the dataset of a given checkpoint" in err
    assert "valid choices: a folder of images, synthetic" in err


def test_cli_modules_do_not_import_torch():
    code = ("import sys, argparse; import medtransfer.report.cli as r, medtransfer.analysis.cli as a; "
            "p = argparse.ArgumentParser(); s = p.add_subparsers(); r.add_parser(s); a.add_parser(s); "
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_images_from_a_dataset_name(ckpts, tmp_path):
    at_init, _, _ = ckpts
    out = tmp_path / "ds"
    assert _run([at_init, "--init", "--images", "synthetic", "--layers", "head", "--n-images", "3",
                 "--out", str(out)]) == 0
    sim = pd.read_csv(out / "similarity.csv")
    assert sim["cka"].item() == pytest.approx(1.0, abs=1e-6)
    assert sim["n_samples"].item() == 4096  # 3 images × 64² = 12288 positions, capped by --max-samples
