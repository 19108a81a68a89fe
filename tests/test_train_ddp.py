"""trainer=ddp on the CPU: 2 processes on the gloo backend through the real CLI. Both ranks share the one
deterministic run dir; metrics cover every test image exactly once; only rank 0 writes the records."""

import csv
import json

import pytest

from tests.test_train_run import _cli


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    p = _cli("train.py", ["experiment=smoke", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                          "trainer.precision=32-true", "logger=csv", "study=ddp", "trainer.limit_test_batches=null",
                          # trainer=ddp replaces experiment=smoke's trainer group: keep the run smoke-sized
                          "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                          "trainer.enable_progress_bar=false"],
             tmp_path)
    assert p.stderr.count("Initializing distributed: GLOBAL_RANK: 1") + p.stdout.count("GLOBAL_RANK: 1") >= 1
    (res,) = (tmp_path / "runs" / "ddp").glob("*/seed0/results.json")
    r = json.loads(res.read_text())
    assert r["status"] == "complete" and r["config"]["trainer"]["strategy"] == "ddp"
    split = json.loads((res.parent / "split.json").read_text())
    assert r["metrics"]["test"]["n_images"] == len(split["test"])  # synced across ranks, padding removed
    with open(res.parent / "test_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["id"] for row in rows) == sorted(split["test"])
    assert all(row["hd95"] != "" for row in rows)  # surface metrics gathered from both ranks
    assert len(list((tmp_path / "runs" / "ddp").glob("*"))) == 1  # no per-rank output dirs
