"""`scripts/bench.py` runs at tiny sizes and writes its results JSON + Markdown (not a timing test).

Sections pipeline, train, cls and sweep (one job); `eval` costs another child process start (~10 s of imports) and is
left to `make bench` to keep this test under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_tiny_writes_results(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1",
           "WANDB_SILENT": "true", "MEDTRANSFER_CACHE_DIR": str(tmp_path / "cache"),
           "MEDTRANSFER_RUNS_ROOT": str(tmp_path / "runs")}
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--tiny", "--sweep-jobs", "1",
                           "--sections", "pipeline,train,cls,sweep", "--out-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "results.json").read_text())
    assert r["errors"] == []
    for key in ("date", "device", "torch", "machine", "configurations", "pipeline", "sweep", "eval", "goals"):
        assert key in r, key
    m = r["machine"]
    assert m["cores"] >= 1 and m["torch_threads"] >= 1 and m["dataloader_workers"] >= 0 and m["cpu"]
    (c,) = r["configurations"]
    assert c["lightning_images_per_s"] > 0 and c["bare_images_per_s"] > 0
    assert c["lightning_vs_bare"] > 0 and c["pipeline_vs_model"] > 0
    assert len(c["lightning_repeats_images_per_s"]) == r["settings"]["repeats"]
    assert c["peak_rss_mb"] > 0 and c["device"] == r["device"]
    (p,) = r["pipeline"]
    assert p["warm_images_per_s"] > 0 and p["cold_images_per_s"] > 0 and p["cache_bytes"] > 0
    cls = {c["name"]: c for c in r["classification"]}
    assert set(cls) == {"r18 28px", "r18 64px"}  # MedMNIST's size and the benchmark augmentation's path
    for c in cls.values():
        assert c["pipeline"]["images_per_s"] > 0 and c["model"]["images_per_s"] > 0
        assert c["pipeline_vs_model"] == pytest.approx(c["pipeline"]["images_per_s"] / c["model"]["images_per_s"], abs=0.01)
    assert cls["r18 64px"]["pipeline"]["augment"] == "cls_benchmark"
    s = r["sweep"]
    assert s["jobs"] == 1 and s["job_overhead_s"] > 0 and s["per_job"][0]["steps"] > 0
    assert s["per_job"][0]["start_to_first_step_s"] > 0 and s["per_job"][0]["last_step_to_results_s"] > 0
    assert r["eval"] is None
    assert {g["goal"].split(" ")[0] for g in r["goals"]} >= {"Lightning/bare", "warm", "sweep", "classification"}
    md = (out / "results.md").read_text()
    assert "Lightning/bare" in md and m["cpu"] in md and "workers" in md and "2b. Classification" in md
    assert "Lightning/bare" in proc.stdout  # the table is printed
