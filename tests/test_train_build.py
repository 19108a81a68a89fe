"""One build for training, eval.py and analyze: the network training starts from is the one
medtransfer.networks rebuilds (analyze --init compares against it), for both tasks; the head is sized by the
dataset's labels; a checkpoint round-trips through load_checkpoint with its labels."""

import pytest
import torch
from omegaconf import OmegaConf

from medtransfer import settings
from tests.test_train_classification import make_npz
from tests.test_train_run import _cfg


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_training_starts_from_the_network_analyze_rebuilds(task, tmp_path, monkeypatch):
    from medtransfer.networks import initial_network
    from medtransfer.train.build import build

    monkeypatch.setenv(settings.CACHE_DIR, str(tmp_path / "cache"))
    if task == "segmentation":
        cfg = _cfg(["experiment=smoke", "image_size=64", "seed=7"])
    else:
        f = make_npz(tmp_path / "toy.npz", classes=3)
        cfg = _cfg(["dataset=medmnist", f"dataset.file={f}", "loss=cross_entropy", "encoder=r18",
                    "pretrain=scratch", "seed=7"])
    built = build(cfg)
    assert built.task.name == task and built.normalisation["origin"] in {"source", "default"}
    assert _same_weights(built.model, initial_network(cfg))
    other = initial_network(OmegaConf.merge(cfg, {"seed": 8}))
    assert not _same_weights(built.model, other)  # the seed reaches the initialisation
    if task == "classification":
        assert built.dm.label_names == ["0", "1", "2"]
        out = built.model(torch.zeros(2, 3, 28, 28))
        assert out.shape == (2, 3)


def test_a_saved_classifier_loads_with_its_labels(tmp_path, monkeypatch):
    """The labels travel in the checkpoint (an inferred label kind is in no config), and the file need not
    exist any more to rebuild the network."""
    from medtransfer.networks import build_network, load_checkpoint

    f = make_npz(tmp_path / "toy.npz")
    cfg = _cfg(["dataset=medmnist", f"dataset.file={f}", "dataset.labels=[bright]", "encoder=r18",
                "pretrain=scratch"])
    model = build_network(cfg)
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"cfg": OmegaConf.to_container(cfg, resolve=True), "normalisation": None,
                                     "labels": {"kind": "binary", "names": ["bright"]}}}, path)
    f.unlink()
    loaded = load_checkpoint(path)
    assert loaded.task == "classification" and (loaded.labels.kind, loaded.labels.names) == ("binary", ("bright",))
    assert _same_weights(loaded.model, model) and not loaded.model.training
