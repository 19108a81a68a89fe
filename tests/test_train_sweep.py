"""Issue #3's end-to-end sweep: encoder × pretraining source through train.py -m with cached, format-faithful
checkpoints; the impossible cell (radimagenet × vit_b) stops the whole grid before any job runs, unless
`impossible_cells=not_applicable` carries it as a not-applicable record."""

import json
import os
import subprocess
import sys

import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from medtransfer import settings
from medtransfer.pretrain.fetch import cache_path, sha256_file

ROOT = settings.PROJECT_ROOT
SMOKE = ["dataset=synthetic", "trainer=smoke", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
         "image_size=64", "batch_size=2", "logger=wandb", "eval_surface=false", "study=pre"]


def _spec(source, encoder):
    return OmegaConf.load(ROOT / f"conf/pretrain/{source}.yaml").files[encoder]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The files as each source publishes them: timm hub safetensors (with classifier) and RadImageNet's
    `resnet50_torch.pt` (flat state dict of a `backbone` = nn.Sequential of torchvision children)."""
    tmp = tmp_path_factory.mktemp("sweep")
    old = os.environ.get(settings.CACHE_DIR)
    os.environ[settings.CACHE_DIR] = str(tmp / "cache")
    try:
        files = {}
        for source, encoder, timm_name in [("imagenet", "r50", "resnet50"), ("imagenet", "vit_b", "vit_base_patch16_224")]:
            sd = {k: v.contiguous() for k, v in timm.create_model(timm_name).state_dict().items()}
            path = cache_path(source, encoder, _spec(source, encoder))
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(sd, str(path))
            files[(source, encoder)] = path
        tv_names = {"conv1.": "backbone.0.", "bn1.": "backbone.1.", "layer1.": "backbone.4.", "layer2.": "backbone.5.",
                    "layer3.": "backbone.6.", "layer4.": "backbone.7."}
        sd = timm.create_model("resnet50", num_classes=0).state_dict()
        rad = {next(tv_names[p] + k[len(p):] for p in tv_names if k.startswith(p)): v for k, v in sd.items()}
        path = cache_path("radimagenet", "r50", _spec("radimagenet", "r50"))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(rad, path)
        files[("radimagenet", "r50")] = path
    finally:
        if old is None:
            os.environ.pop(settings.CACHE_DIR)
        else:
            os.environ[settings.CACHE_DIR] = old
    return tmp, files


def _train(args, tmp):
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, settings.RUNS_ROOT: str(tmp / "runs"), settings.CACHE_DIR: str(tmp / "cache"),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_impossible_source_encoder_pair_rejects_the_whole_grid(weights):
    tmp, _ = weights
    p = _train(["-m", "encoder=r50,vit_b", "pretrain=imagenet,radimagenet", *SMOKE], tmp)
    assert p.returncode != 0
    err = p.stderr[p.stderr.index("error: sweep rejected before any job ran"):]
    # every impossible cell is named (one here), and the way to run the others is offered
    assert "[encoder=vit_b pretrain=radimagenet" in err and "no ViT weights" in err
    assert "impossible_cells=not_applicable" in err and "Traceback" not in p.stderr
    assert not (tmp / "runs" / "pre").exists()


@pytest.mark.slow
def test_sweep_over_sources_records_what_was_loaded(weights):
    tmp, files = weights
    # the design card's own grid: the impossible cell is carried as not applicable, the other three train
    p1 = _train(["-m", "encoder=r50,vit_b", "pretrain=imagenet,radimagenet", "impossible_cells=not_applicable",
                 *SMOKE], tmp)
    assert p1.returncode == 0, p1.stderr[-3000:]
    runs = {}
    for f in (tmp / "runs" / "pre").glob("*/seed0/results.json"):
        r = json.loads(f.read_text())
        runs[(r["condition"]["pretrain"], r["condition"]["encoder"])] = r
    na = runs.pop(("radimagenet", "vit_b"))
    assert na["status"] == "not_applicable" and "no ViT weights" in na["error"]
    (na_dir,) = (tmp / "runs" / "pre").glob("enc-vit_b_*_pre-radimagenet_*/seed0")
    assert {p.name for p in na_dir.iterdir()} <= {"results.json", "train.log", ".hydra"}  # nothing trained
    assert set(runs) == {("imagenet", "r50"), ("radimagenet", "r50"), ("imagenet", "vit_b")}
    n_keys = {"r50": len(timm.create_model("resnet50", num_classes=0).state_dict()),
              "vit_b": len(timm.create_model("vit_base_patch16_224", num_classes=0).state_dict())}
    for (source, encoder), r in runs.items():
        assert r["status"] == "complete"
        pre = r["pretrain"]
        assert pre["source"] == source and pre["parts"] == ["encoder"]
        assert pre["tensors_loaded"] + len(pre.get("num_batches_tracked_absent") or []) == n_keys[encoder]
        assert pre["file_sha256"] == sha256_file(files[(source, encoder)])
        assert r["finetune"]["strategy"] == "full" and r["params"]["frozen"] == 0
    # the normalisation each source was trained with reached the data pipeline
    assert runs[("radimagenet", "r50")]["normalisation"] == {"mean": [0.5] * 3, "std": [0.5] * 3, "origin": "source"}
    assert runs[("imagenet", "vit_b")]["normalisation"] == {"mean": [0.5] * 3, "std": [0.5] * 3, "origin": "file"}
