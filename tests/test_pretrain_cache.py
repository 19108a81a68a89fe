"""What may enter the weights cache (issue 9, defect 7): `convert` and `fetch` check a file the way a run loads
it (published hash, read, map, exact key accounting against the target encoder) before it is moved into the
cache, leave nothing there when it does not fit, and `fetch` re-checks a file already cached. Through the
`medtransfer` CLI and the library, with ResNet-18 checkpoints built here; no network."""

import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from medtransfer import settings
from medtransfer.cli import main
from medtransfer.errors import WeightsError
from medtransfer.pretrain import load_pretrained
from medtransfer.pretrain.convert import convert
from medtransfer.pretrain.fetch import cache_path
from tests._catalogue import PROJECT, SOURCES

IMAGENET = SOURCES["imagenet"]


pytestmark = pytest.mark.usefixtures("offline_cache")


def _target():
    return cache_path("imagenet", "r18", IMAGENET["files"]["r18"])


def _r18(prefix=""):
    """timm's hub layout for resnet18 (classifier included); a prefix makes a file that fits no encoder."""
    return {prefix + k: v.contiguous() for k, v in timm.create_model("resnet18").state_dict().items()}


def _save(path, sd):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def _cli(capsys, *argv):
    rc = main(["pretrain", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _cache_files():
    root = settings.cache_dir() / "weights"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def test_convert_of_a_file_that_does_not_fit_caches_nothing(tmp_path, capsys, monkeypatch):
    bad = _save(tmp_path / "downloaded.safetensors", _r18("module."))
    rc, out, err = _cli(capsys, "convert", bad, "--source", "imagenet", "--encoder", "r18")
    assert rc != 0 and out == ""
    assert err.count("\n") == 1 and str(bad) in err
    assert "100 missing ['bn1.bias'" in err and "122 unexpected ['module.bn1.bias'" in err
    assert _cache_files() == []
    with pytest.raises(WeightsError, match=rf"{bad} \(pretrain=imagenet\): keys do not map onto the r18 encoder"):
        convert(bad, "imagenet", "r18", catalogue=PROJECT)
    assert _cache_files() == []
    # so a later fetch (offline) cannot mistake a leftover for the weights: it says where to put the real file
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, _, err = _cli(capsys, "fetch", "imagenet", "--encoder", "r18")
    assert rc != 0 and "weights not cached" in err and str(_target()) in err


def test_convert_of_a_truncated_file_caches_nothing(tmp_path, capsys):
    bad = _save(tmp_path / "downloaded.safetensors", _r18())
    bad.write_bytes(bad.read_bytes()[:5000])
    rc, _, err = _cli(capsys, "convert", bad, "--source", "imagenet", "--encoder", "r18")
    assert rc != 0 and err.count("\n") == 1 and str(bad) in err and "corrupt or truncated" in err
    assert _cache_files() == []


def test_convert_then_fetch_then_a_run_loads_it(tmp_path, capsys):
    sd = _r18()
    good = _save(tmp_path / "downloaded.safetensors", sd)
    rc, out, err = _cli(capsys, "convert", good, "--source", "imagenet", "--encoder", "r18")
    assert rc == 0, err
    assert _target().is_file() and not any(p.name.endswith(".part") for p in _cache_files())
    rc, out, err = _cli(capsys, "fetch", "imagenet", "--encoder", "r18")
    assert rc == 0 and out.strip() == str(_target()), err
    model = type("M", (), {})()
    model.encoder = type("E", (), {})()
    model.encoder.backbone = timm.create_model("resnet18", num_classes=0)
    rec = load_pretrained(model, IMAGENET, "r18")
    assert rec["file"] == str(_target()) and rec["tensors_loaded"] == len(model.encoder.backbone.state_dict())
    assert torch.equal(model.encoder.backbone.state_dict()["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])


@pytest.mark.parametrize("damage", ["misfit", "truncated"])
def test_fetch_verifies_an_already_cached_file(capsys, damage):
    path = _save(_target(), _r18("module." if damage == "misfit" else ""))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    rc, out, err = _cli(capsys, "fetch", "imagenet", "--encoder", "r18")
    assert rc != 0 and out == "" and err.count("\n") == 1 and str(path) in err
    assert ("100 missing" in err and "delete it" in err) if damage == "misfit" else ("corrupt or truncated" in err)


def test_fetch_checks_the_published_hash_of_a_cached_file(capsys):
    path = cache_path("mocov2", "r50", SOURCES["mocov2"]["files"]["r50"])
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the published file")
    rc, _, err = _cli(capsys, "fetch", "mocov2", "--encoder", "r50")
    assert rc != 0 and f"{path}: md5 prefix" in err and "!= published a04e12f8" in err


def test_a_download_that_does_not_fit_never_enters_the_cache(capsys, monkeypatch):
    """The hub answers with a file of another layout: fetch fails naming it, the cache stays empty; the next
    (good) download is checked the same way and lands at the cache path."""
    import huggingface_hub

    served = {"sd": _r18("module.")}

    def hub(repo, filename, revision=None, local_dir=None):
        assert (repo, filename) == ("timm/resnet18.tv_in1k", "model.safetensors")
        return str(_save(local_dir / filename, served["sd"]))

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("medtransfer.pretrain.fetch._reachable", lambda url, timeout=3.0: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    rc, _, err = _cli(capsys, "fetch", "imagenet", "--encoder", "r18")
    assert rc != 0 and err.count("\n") == 1 and "100 missing" in err
    assert (f"the download of https://huggingface.co/timm/resnet18.tv_in1k/resolve/main/model.safetensors was not "
            f"cached at {_target()}") in err
    assert _cache_files() == []
    served["sd"] = _r18()
    rc, out, err = _cli(capsys, "fetch", "imagenet", "--encoder", "r18")
    assert rc == 0 and out.strip() == str(_target()) and _target().is_file(), err


def test_a_url_download_that_is_no_checkpoint_is_not_cached(capsys, monkeypatch):
    """An HTML error page saved under the checkpoint's name: never written at the cache path."""
    import io
    import urllib.request

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("medtransfer.pretrain.fetch._reachable", lambda url, timeout=3.0: True)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"<html>403</html>"))
    rc, _, err = _cli(capsys, "fetch", "dino", "--encoder", "r50")
    assert rc != 0 and err.count("\n") == 1 and "cannot be read as a checkpoint" in err
    assert str(cache_path("dino", "r50", SOURCES["dino"]["files"]["r50"])) in err
    assert _cache_files() == []


def test_offline_fetch_of_an_uncached_file_fails_at_once_naming_url_and_path(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    rc, _, err = _cli(capsys, "fetch", "imagenet", "--encoder", "r18")
    assert time.perf_counter() - t0 < 5
    assert rc != 0 and err.count("\n") == 1
    assert "https://huggingface.co/timm/resnet18.tv_in1k/resolve/main/model.safetensors" in err
    assert f"place it at {_target()}" in err


def _lightning_ckpt(path, backbone_sd):
    """The `file` source's default format: a medtransfer Lightning checkpoint."""
    torch.save({"state_dict": {**{f"model.encoder.backbone.{k}": v for k, v in backbone_sd.items()},
                               "model.decoder.conv.weight": torch.randn(4, 4)}}, path)
    return path


def test_convert_file_source_that_fits_no_encoder_fails_naming_those_tried(tmp_path, capsys):
    bad = _lightning_ckpt(tmp_path / "best.ckpt", {"stem.weight": torch.randn(8, 3, 3, 3)})
    rc, out, err = _cli(capsys, "convert", bad, "--source", "file", "--encoder", "r18")
    assert rc != 0 and out == "" and err.count("\n") == 1
    assert str(bad) in err and "r18 encoder" in err and "1 unexpected ['stem.weight']" in err
    rc, out, err = _cli(capsys, "convert", bad, "--source", "file")  # every encoder in conf/encoder
    encoders = PROJECT.names("encoder")
    assert rc != 0 and err.count("\n") == 1 and str(bad) in err
    assert "fits no encoder; tried " in err and all(f"{e} (" in err for e in encoders)  # one reason each
    assert _cache_files() == []


def test_convert_file_source_names_the_encoders_it_fits(tmp_path, capsys):
    sd = timm.create_model("resnet18", num_classes=0).state_dict()
    good = _lightning_ckpt(tmp_path / "best.ckpt", sd)
    rc, out, err = _cli(capsys, "convert", good, "--source", "file")
    assert rc == 0, err
    assert out.strip().endswith(".safetensors") and "fits encoder(s): r18" in err
    rc, out, err = _cli(capsys, "convert", good, "--source", "file", "--encoder", "r18")
    assert rc == 0 and out.strip().endswith(".safetensors"), err
