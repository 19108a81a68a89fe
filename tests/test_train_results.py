import json
import os

import pytest

from medtransfer.files import write_json as write_json_atomic
from medtransfer.runs import convergence_epoch
from medtransfer.train.results import read_results


def epochs_to_converge(history, **kw):
    return convergence_epoch(history, **kw)[1]


def test_epochs_to_converge_uses_logged_epochs_and_half_percent_tolerance():
    hist = [{"epoch": 0, "dice_per_image": 0.50}, {"epoch": 2, "dice_per_image": 0.797},
            {"epoch": 4, "dice_per_image": 0.80}, {"epoch": 6, "dice_per_image": 0.79}]
    # best 0.80; within 0.5%: >= 0.796 → epoch 2 (0-based) → 3 epochs trained
    assert epochs_to_converge(hist) == 3
    assert epochs_to_converge(hist, tol=0.0) == 5
    assert epochs_to_converge([]) is None
    assert epochs_to_converge([{"epoch": 0, "dice_per_image": float("nan")}]) is None
    # out of order and a negative best: sorted by epoch, within |best| * tol below it
    assert convergence_epoch([{"epoch": 3, "m": -1.0}, {"epoch": 1, "m": -1.004}, {"epoch": 0, "m": -2.0}],
                             key="m") == (1, 2)


def test_atomic_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_json_atomic(path, {"status": "complete", "x": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_json_atomic(path, {"status": "failed"})
    assert read_results(tmp_path) == {"status": "complete", "x": 1}
    assert json.loads(path.read_text())["status"] == "complete"


def test_wandb_tags_respect_the_64_character_limit():
    from medtransfer.train.run import wandb_tags

    extra = "decoder.kwargs.decoder_channels=[256,128,64,32,16];" + "optimizer.lr=0.01;" + "x" * 80 + "=1"
    tags = wandb_tags({"encoder": "r50", "n_train": None, "extra": extra}, 3)
    assert tags[0] == "encoder=r50" and "optimizer.lr=0.01" in tags and tags[-1] == "seed=3"
    assert "decoder.kwargs.decoder_channels=[256,128,64,32,16]" in tags
    assert all(1 <= len(t) <= 64 for t in tags) and not any(t.startswith("n_train") for t in tags)
