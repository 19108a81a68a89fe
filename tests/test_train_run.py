"""End to end: a smoke fit writes a complete run directory; a 2×2 multirun gives 4 runs; eval.py evaluates a
checkpoint on another dataset; bad input fails in one line before compute."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from medtransfer import settings
from medtransfer.train import resolvers  # noqa: F401

ROOT = settings.PROJECT_ROOT


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _env(tmp: Path) -> dict:
    # not the pytest process's W&B service (wandb.init exports WANDB_SERVICE): jobs must start their own
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update({settings.RUNS_ROOT: str(tmp / "runs"), settings.CACHE_DIR: str(tmp / "cache"),
                "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1",
                "WANDB_SILENT": "true", "PYTHONWARNINGS": "ignore"})
    return env


def _cli(script, args, tmp, check=True):
    p = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=_env(tmp), capture_output=True,
                       text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"{script} {args} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from medtransfer.train.run import run

    tmp = tmp_path_factory.mktemp("smoke")
    os.environ[settings.RUNS_ROOT] = str(tmp / "runs")
    try:
        cfg = _cfg(["experiment=smoke", "logger=wandb", "trainer.max_epochs=2"])
        run_dir = Path(cfg.run_dir)
        record = run(cfg)
    finally:
        os.environ.pop(settings.RUNS_ROOT, None)
    return run_dir, record


def test_smoke_fit_writes_a_complete_run_directory(smoke_run):
    run_dir, record = smoke_run
    assert record["status"] == "complete" and record["error"] is None
    for f in ["results.json", "config.yaml", "split.json", "metrics.csv", "test_per_image.csv",
              "checkpoints/best.ckpt"]:
        assert (run_dir / f).is_file(), f
    # the resume point goes once the run is complete (keep_last_ckpt=false): a study keeps only best.ckpt
    assert not (run_dir / "checkpoints/last.ckpt").exists() and record["checkpoints"]["last"] is None
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb")), "no offline W&B run"
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["condition"] == {"encoder": "r18", "decoder": "unet", "pretrain": "scratch", "finetune": "full",
                                    "dataset": "synthetic", "n_train": None, "fold": None, "extra": None}
    test = on_disk["metrics"]["test"]
    for k in ["dice_per_image", "iou_per_image", "precision", "recall", "accuracy", "dice_pooled"]:
        assert 0 <= test[k] <= 1, k  # NaN fails too
    for k in ["hd95", "assd"]:  # pixels, at most the image diagonal (the empty-prediction policy)
        assert 0 <= test[k] <= 2 ** 0.5 * 256, k
    assert on_disk["params"]["total"] == on_disk["params"]["trainable"] > 1_000_000
    assert on_disk["epochs"] == 2 and len(on_disk["metrics"]["val_history"]) == 2
    assert on_disk["best_epoch"] in (0, 1) and on_disk["versions"]["torch"].startswith("2.14")
    split = json.loads((run_dir / "split.json").read_text())
    assert on_disk["split"]["n_test"] == len(split["test"]) > 0
    assert on_disk["metrics"]["test"]["n_images"] == min(len(split["test"]), 2 * 4)  # limit_test_batches=2, bs 4


def test_the_applied_normalisation_is_recorded_and_reused_by_eval(smoke_run):
    from medtransfer.networks import load_checkpoint

    run_dir, record = smoke_run
    assert record["normalisation"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                       "origin": "source"}
    train_cfg = load_checkpoint(run_dir / "checkpoints" / "best.ckpt").cfg
    assert list(train_cfg.pretrain.mean) == record["normalisation"]["mean"]
    assert list(train_cfg.pretrain.std) == record["normalisation"]["std"]


def test_the_lr_of_each_param_group_is_logged_every_step(smoke_run):
    """LearningRateMonitor: the LR actually used (a flat schedule is visible) per group, in metrics.csv."""
    import csv

    run_dir, record = smoke_run
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    cols = sorted(k for k in rows[0] if k.startswith("lr-"))
    assert cols == ["lr-AdamW/decoder", "lr-AdamW/encoder"]
    for col in cols:
        lrs = [float(r[col]) for r in rows if r[col]]
        assert len(lrs) == record["config"]["trainer"]["limit_train_batches"] * 2  # every step of 2 epochs
        assert lrs[0] == pytest.approx(record["config"]["optimizer"]["lr"]) and lrs[-1] < lrs[0]  # cosine


def test_rerun_skips_a_complete_run(smoke_run, monkeypatch):
    from medtransfer.train.run import run

    run_dir, record = smoke_run
    monkeypatch.setenv(settings.RUNS_ROOT, str(run_dir.parents[2]))
    cfg = _cfg(["experiment=smoke", "logger=wandb", "trainer.max_epochs=2"])
    assert Path(cfg.run_dir) == run_dir
    mtime = (run_dir / "results.json").stat().st_mtime
    assert run(cfg)["wall_time_s"] == record["wall_time_s"]
    assert (run_dir / "results.json").stat().st_mtime == mtime


def test_eval_cli_on_another_dataset(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    out = tmp_path / "eval"
    data = tmp_path / "folder"
    _folder_dataset(data, n=5)  # trained on synthetic; evaluated out of distribution on a folder dataset
    p = _cli("eval.py", [f"ckpt={run_dir}", "dataset=folder", f"dataset.root={data}",
                         f"out_dir={out}", "surface=true"], tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "folder" and summary["split"] == "all"  # another dataset: every image
    assert summary["metrics"]["n_images"] == 5 and 0 <= summary["metrics"]["dice_per_image"] <= 1
    assert summary["metrics"]["hd95"] >= 0
    rows = (out / "per_image.csv").read_text().splitlines()
    assert rows[0].startswith("id,") and len(rows) == summary["metrics"]["n_images"] + 1
    assert "dice_per_image=" in p.stdout


def test_drive_is_scored_inside_its_field_of_view(tmp_path, monkeypatch):
    """DRIVE: every test pixel counted is inside the FOV (30×34 of the 36×40 frame), in training's test and
    eval.py alike; `dataset.metrics_in_fov=false` counts the whole frame."""
    import csv

    from medtransfer.train.evaluate import evaluate
    from medtransfer.train.run import run
    from tests.test_data_datamodule import make_drive

    root = make_drive(tmp_path / "drive")
    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    rec = run(_cfg(["experiment=smoke", "dataset=drive", f"dataset.root={root}", "image_size=32", "batch_size=2",
                    "logger=none", "study=fov", "trainer.max_epochs=1"]))
    assert rec["status"] == "complete" and rec["metrics_region"] == "fov"

    def pixels_counted(path):
        with open(path) as f:
            return [sum(int(r[k]) for k in ("tp", "fp", "fn", "tn")) for r in csv.DictReader(f)]

    run_dir = Path(rec["checkpoints"]["best"]).parent.parent
    assert pixels_counted(run_dir / "test_per_image.csv") == [30 * 34] * 2
    assert rec["metrics"]["test"]["hd95"] <= (29 ** 2 + 33 ** 2) ** 0.5  # distances within the FOV
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        ev = compose(config_name="eval", overrides=[f"ckpt={run_dir}", "dataset=drive", f"dataset.root={root}",
                                                    "dataset.metrics_in_fov=false", f"out_dir={tmp_path / 'ev'}",
                                                    "num_workers=0"])
    summary = evaluate(ev)
    assert summary["metrics_region"] == "image" and summary["split"] == "official"
    assert pixels_counted(tmp_path / "ev" / "per_image.csv") == [36 * 40] * 2


def test_analyze_runs_on_a_trained_checkpoint(smoke_run, tmp_path):
    """`medtransfer analyze` on what training really saved (weights-only best.ckpt), against its rebuilt init."""
    import pandas as pd

    from medtransfer.cli import main

    run_dir, _ = smoke_run
    best = str(run_dir / "checkpoints" / "best.ckpt")
    out = tmp_path / "analysis"
    layers = "encoder.backbone.layer1,encoder.backbone.layer4,head"
    assert main(["analyze", best, "--init", "--images", "synthetic", "--layers", layers, "--n-images", "4",
                 "--max-samples", "512", "--out", str(out)]) == 0
    fc = pd.read_csv(out / "filter_change.csv").set_index("layer")
    sim = pd.read_csv(out / "similarity.csv").set_index("layer")
    assert set(fc.index) == set(sim.index) == set(layers.split(","))
    assert (fc["rel_change"] > 0).all()  # two epochs of AdamW moved every analysed layer away from its init
    assert sim["cka"].between(0, 1 + 1e-6).all()


@pytest.mark.slow
def test_multirun_2x2_gives_four_runs(tmp_path):
    _cli("train.py", ["-m", "encoder=r18,r50", "decoder=unet,deeplabv3plus", "dataset=synthetic", "trainer=smoke",
                      "study=grid", "batch_size=4", "eval_surface=false"], tmp_path)
    results = sorted((tmp_path / "runs" / "grid").glob("*/seed0/results.json"))
    assert len(results) == 4
    conds = {(json.loads(r.read_text())["condition"]["encoder"], json.loads(r.read_text())["condition"]["decoder"])
             for r in results}
    assert conds == {("r18", "unet"), ("r18", "deeplabv3plus"), ("r50", "unet"), ("r50", "deeplabv3plus")}
    assert all(json.loads(r.read_text())["status"] == "complete" for r in results)
    wandb_runs = list((tmp_path / "runs" / "grid").glob("*/seed0/wandb/offline-run-*"))
    assert len(wandb_runs) == 4 and len({p.name.rsplit("-", 1)[1] for p in wandb_runs}) == 4


@pytest.mark.slow
def test_sweeping_a_hyperparameter_gives_one_run_per_value(tmp_path):
    # without the lr in the condition both jobs would share one run dir and the second would skip
    _cli("train.py", ["-m", "optimizer.lr=0.01,0.001", "dataset=synthetic", "trainer=smoke", "logger=none",
                      "trainer.max_epochs=1", "trainer.limit_train_batches=1", "eval_surface=false", "study=lr"],
         tmp_path)
    runs = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "lr").glob("*/seed0/results.json")]
    assert sorted(r["condition"]["extra"] for r in runs) == [
        "optimizer.lr=0.001;trainer.limit_train_batches=1;trainer.max_epochs=1",
        "optimizer.lr=0.01;trainer.limit_train_batches=1;trainer.max_epochs=1"]
    assert sorted(r["config"]["optimizer"]["lr"] for r in runs) == [0.001, 0.01]


@pytest.mark.slow
def test_failed_job_does_not_stop_the_sweep_and_shows_in_the_report(tmp_path):
    # a corrupt image in the second folder: known only when the job decodes it (the grid check lists files)
    good, bad = tmp_path / "good", tmp_path / "bad"
    _folder_dataset(good)
    _folder_dataset(bad)
    (bad / "images" / "3.png").write_bytes(b"not a png at all")
    p = _cli("train.py", ["-m", f"dataset.root={bad},{good}", "dataset=folder", "image_size=32", "encoder=r18",
                          "decoder=unet", "trainer=smoke", "logger=none", "trainer.max_epochs=1",
                          "eval_surface=false", "study=fail"], tmp_path, check=False)
    assert p.returncode != 0  # the sweep says something failed ...
    runs = {json.loads(r.read_text())["config"]["dataset"]["root"]: json.loads(r.read_text())
            for r in (tmp_path / "runs" / "fail").glob("*/seed0/results.json")}
    assert set(runs) == {str(bad), str(good)}  # ... after running the job that came after the failure
    assert runs[str(bad)]["status"] == "failed" and "3.png" in runs[str(bad)]["error"]
    assert runs[str(good)]["status"] == "complete"
    out = tmp_path / "report"
    rep = subprocess.run([sys.executable, "-m", "medtransfer.cli", "report", str(tmp_path / "runs" / "fail"),
                          "--out", str(out), "--rows", "encoder"], cwd=ROOT, env=_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    md = (out / "report.md").read_text()
    failures = md.split("## Failures", 1)[1]
    assert "3.png" in failures and "1 failed" in md and "1 complete" in md


def test_unknown_option_fails_naming_choices(tmp_path):
    p = _cli("train.py", ["encoder=resnet9000", "dataset=synthetic"], tmp_path, check=False)
    assert p.returncode != 0
    assert "encoder/resnet9000" in p.stderr and "r50" in p.stderr


def test_impossible_combination_rejects_whole_sweep_before_any_job(tmp_path):
    # the first cell (64 px) is fine; the second (80 px) cannot build: nothing may run
    p = _cli("train.py", ["-m", "encoder=r18", "image_size=64,80", "dataset=synthetic", "trainer=smoke",
                          "study=bad"], tmp_path, check=False)
    assert p.returncode != 0
    err = p.stderr[p.stderr.index("error: sweep rejected before any job ran"):]
    assert "[encoder=r18 image_size=80" in err and "multiple of 32" in err and "image_size=64 " not in err
    assert not (tmp_path / "runs" / "bad").exists() or not list((tmp_path / "runs" / "bad").rglob("results.json"))


def _folder_dataset(root: Path, n=8, size=32):
    import numpy as np

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        m = np.zeros((size, size), np.uint8)
        m[8:20, 8:20] = 255
        Image.fromarray(m).save(root / "masks" / f"{i}.png")


def test_corrupt_image_fails_naming_the_file(tmp_path):
    data = tmp_path / "folder"
    _folder_dataset(data)
    (data / "images" / "3.png").write_bytes(b"not a png at all")
    p = _cli("train.py", ["dataset=folder", f"dataset.root={data}", "encoder=r18", "decoder=unet", "trainer=smoke",
                          "logger=none", "image_size=32"], tmp_path, check=False)
    assert p.returncode != 0
    assert "3.png" in p.stderr and "cannot decode" in p.stderr


def test_size_mismatched_mask_fails_naming_the_file(tmp_path):
    data = tmp_path / "folder"
    _folder_dataset(data)
    Image.new("L", (31, 32)).save(data / "masks" / "5.png")
    p = _cli("train.py", ["dataset=folder", f"dataset.root={data}", "encoder=r18", "decoder=unet", "trainer=smoke",
                          "logger=none", "image_size=32"], tmp_path, check=False)
    assert p.returncode != 0 and "5.png" in p.stderr


@pytest.mark.parametrize("dataset", ["kvasir_seg", "cvc_clinicdb"])
def test_smoke_run_on_real_data(dataset, shared_data, tmp_path):
    _cli("train.py", [f"dataset={dataset}", "encoder=r18", "decoder=unet", "trainer=smoke", "logger=csv",
                      "image_size=64", "study=real", "trainer.max_epochs=1", "eval_surface=false"], tmp_path)
    (res,) = (tmp_path / "runs" / "real").glob("*/seed0/results.json")
    rec = json.loads(res.read_text())
    assert rec["status"] == "complete" and rec["condition"]["dataset"] == dataset
    # the default splits: Kvasir-SEG medico2020 (official 120 test), CVC-ClinicDB by video sequence
    sizes = {"kvasir_seg": (792, 88, 120), "cvc_clinicdb": (483, 60, 69)}[dataset]
    assert (rec["split"]["n_train"], rec["split"]["n_val"], rec["split"]["n_test"]) == sizes


@pytest.mark.parametrize("encoder,decoder,params", [("vit_s", "deeplabv3plus", 21e6), ("vit_b", "upernet", 85e6)])
def test_paper_vit_cells_build_and_train(encoder, decoder, params, tmp_path, monkeypatch):
    """Paper 001's ViT-S + DeepLabV3+ and paper 000's ViT-B + UPerNet (paper 002's ViT-B + DPT trains in
    test_config_experiments) go through the whole job: fit, checkpoints, test at native size."""
    from medtransfer.train.run import run

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    cfg = _cfg(["experiment=smoke", f"encoder={encoder}", f"decoder={decoder}", "logger=none", "batch_size=2",
                "trainer.max_epochs=1", "trainer.limit_test_batches=1", "study=vit"])
    rec = run(cfg)
    assert rec["status"] == "complete" and (rec["condition"]["encoder"], rec["condition"]["decoder"]) == (
        encoder, decoder)
    assert rec["params"]["trainable"] == rec["params"]["total"] > params  # the whole ViT is in the model
    (val,) = rec["metrics"]["val_history"]
    assert 0 <= val["dice_per_image"] <= 1 and val["epoch"] == 0  # (a NaN fails the range check)
    assert rec["metrics"]["test"]["n_images"] == 2 and 0 <= rec["metrics"]["test"]["hd95"]
    assert Path(rec["checkpoints"]["best"]).is_file() and rec["checkpoints"]["last"] is None


def test_unfinished_run_resumes_from_last_checkpoint_with_same_wandb_id(tmp_path, monkeypatch):
    from medtransfer.train.run import run

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    cfg = _cfg(["experiment=smoke", "logger=wandb", "study=resume", "eval_surface=false", "keep_last_ckpt=true"])
    run_dir = Path(cfg.run_dir)
    first = run(cfg)
    assert Path(first["checkpoints"]["last"]).is_file()  # keep_last_ckpt=true keeps the resume point
    run_id = (run_dir / "wandb_id.txt").read_text()
    (run_dir / "results.json").unlink()  # as if the job was killed after its last checkpoint
    second = run(cfg)
    assert second["status"] == "complete" and second["resumed_from"] == str(run_dir / "checkpoints/last.ckpt")
    assert first["resumed_from"] is None and second["epochs"] == first["epochs"]
    # what the report reads survives the restart (it lives in the checkpoint, not only in the process)
    assert len(first["metrics"]["val_history"]) == first["epochs"] >= 1
    for key in ("best_epoch", "epochs_to_converge", "train_images_per_s"):
        assert second[key] == first[key], key
    assert second["metrics"]["val_history"] == first["metrics"]["val_history"]
    assert second["metrics"]["val_best"] == first["metrics"]["val_best"] != {}
    assert (run_dir / "wandb_id.txt").read_text() == run_id
    assert {p.name.rsplit("-", 1)[1] for p in (run_dir / "wandb").glob("offline-run-*")} == {run_id}


def test_second_launch_of_a_running_condition_fails_at_once_naming_the_holder(tmp_path, monkeypatch):
    """Two launches of one condition share its deterministic run directory: the second must not train into
    it. A live process holds the lock (as a running job does); once it dies, the run goes ahead."""
    import time

    from medtransfer.errors import RunInUse
    from medtransfer.train.run import run

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    cfg = _cfg(["experiment=smoke", "logger=none", "study=lock", "eval_surface=false", "trainer.max_epochs=1"])
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
         "fcntl.flock(f, fcntl.LOCK_EX); f.write('pid 4242 on node7 since then'); f.flush(); print('held', "
         "flush=True); time.sleep(120)", str(run_dir / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        with pytest.raises(RunInUse, match=r"seed0 is being trained by pid 4242 on node7 since then; once it"):
            run(cfg)
        assert time.time() - t0 < 10  # at once: no data decoded, no model built
        assert not (run_dir / "results.json").exists() and not (run_dir / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    assert run(cfg)["status"] == "complete"  # the kernel released the dead holder's lock
    assert (run_dir / ".lock").read_text().startswith(f"pid {os.getpid()} on ")


def test_truncated_last_checkpoint_is_set_aside_not_resumed(tmp_path, monkeypatch):
    from medtransfer.train.run import run

    monkeypatch.setenv(settings.RUNS_ROOT, str(tmp_path / "runs"))
    cfg = _cfg(["experiment=smoke", "logger=none", "study=trunc", "eval_surface=false", "trainer.max_epochs=1",
                "keep_last_ckpt=true"])
    run_dir = Path(cfg.run_dir)
    run(cfg)
    last = run_dir / "checkpoints/last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # killed mid-save
    (run_dir / "results.json").unlink()
    again = run(cfg)
    assert again["status"] == "complete" and again["resumed_from"] is None
    assert len(list((run_dir / "checkpoints").glob("last.ckpt.corrupt-*"))) == 1


def _kill_processes_mentioning(text: str) -> None:
    import signal

    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                env = (proc / "environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if text in cmd or text in env:
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.mark.slow
def test_interrupted_submitit_sweep_rerun_completes_without_duplicates(tmp_path):
    import time

    # two concurrent jobs (submitit's local executor starts all at once), one 12× longer than the other, so
    # the sweep is killed while the long one trains
    args = [sys.executable, str(ROOT / "train.py"), "-m", "launcher=submitit_local", "encoder=r18",
            "trainer.max_epochs=1,12", "dataset=synthetic", "trainer=smoke", "logger=wandb", "study=sub",
            "eval_surface=false"]
    p = subprocess.Popen(args, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    study = tmp_path / "runs" / "sub"
    deadline = time.time() + 600
    while time.time() < deadline and not list(study.glob("*/seed*/results.json")):
        time.sleep(0.5)
    _kill_processes_mentioning(str(tmp_path))  # the launcher and its job processes: an interrupted sweep
    p.wait(timeout=60)
    first = {r.parent: r.stat().st_mtime for r in study.glob("*/seed*/results.json")
             if json.loads(r.read_text())["status"] == "complete"}
    assert len(first) == 1, "the sweep was not interrupted after its first job"
    resumable = {c.parent.parent for c in study.glob("*/seed*/checkpoints/last.ckpt")}

    rerun = subprocess.run(args, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    results = sorted(study.glob("*/seed*/results.json"))
    assert len(results) == 2 and len({r.parent for r in results}) == 2
    assert all(json.loads(r.read_text())["status"] == "complete" for r in results)
    for r in results:  # a job killed after an epoch's checkpoint resumed from it
        assert (json.loads(r.read_text())["resumed_from"] is not None) == (r.parent in resumable), r.parent
    assert all(r.stat().st_mtime == first[r.parent] for r in results if r.parent in first)  # skipped, not re-run
    for r in results:
        ids = {p.name.rsplit("-", 1)[1] for p in (r.parent / "wandb").glob("offline-run-*")}
        assert ids == {(r.parent / "wandb_id.txt").read_text()}  # a resumed job continues its W&B run
