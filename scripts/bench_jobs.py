"""Sections 3 and 4 of `make bench`: what a job costs beyond its training (a real `train.py -m` sweep) and
`eval.py` throughput with the share spent in the surface metrics (HD95/ASSD).

Both run the real entry points in a child process (so imports, Hydra composition, model build, logger
init/finish are all counted) with `bench_hooks.BenchTimer` added as a Hydra callback for in-process
timestamps. The children get a bench-owned runs root and cache dir, so nothing of the user's is touched.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import bench_common as bc

SCRIPTS = Path(__file__).resolve().parent
HOOK = "+hydra.callbacks.bench_timer._target_=bench_hooks.BenchTimer"


def _env(tmp: Path, cache_dir: Path, timing: Path) -> dict:
    pp = os.pathsep.join(x for x in (str(SCRIPTS), os.environ.get("PYTHONPATH", "")) if x)
    return {"PYTHONPATH": pp, "MEDTRANSFER_BENCH_TIMING": str(timing), "MEDTRANSFER_CACHE_DIR": str(cache_dir),
            "MEDTRANSFER_RUNS_ROOT": str(tmp / "runs"), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
            "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_DIR": str(tmp)}


def _events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tail(path: str, n: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def bench_sweep(tmp: Path, cache_dir: Path, jobs: int = 4, overrides: tuple[str, ...] = (), timeout: float = 600,
                log=print) -> dict:
    """`python train.py -m dataset=synthetic trainer=smoke seed=0..jobs-1` (defaults otherwise: R50 +
    DeepLabV3+, W&B offline, HD95/ASSD on the test part). Per job: start → first training forward (imports
    on the first job, config, data setup, model build, logger and Trainer init) and last optimizer step →
    results.json written (last validation, checkpoints, test incl. surface metrics), then W&B finish."""
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["MEDTRANSFER_CACHE_DIR"] = str(cache_dir)
    _prewarm_synthetic(overrides)
    timing = tmp / "sweep_timing.jsonl"
    seeds = ",".join(str(i) for i in range(jobs))
    cmd = [sys.executable, "train.py", "-m", "dataset=synthetic", "trainer=smoke", f"seed={seeds}",
           "study=bench_sweep", *overrides, HOOK]
    log(f"[bench] sweep: {' '.join(cmd[1:-1])}")
    child = bc.run_child(cmd, _env(tmp, cache_dir, timing), bc.ROOT, tmp / "sweep.log", timeout)
    ev = _events(timing)
    jobs_ev = [e for e in ev if e.get("event") == "job"]
    if child["returncode"] != 0 or len(jobs_ev) != jobs:
        raise RuntimeError(f"sweep failed (rc={child['returncode']}, {len(jobs_ev)}/{jobs} jobs timed); "
                           f"log {child['log']}:\n{_tail(child['log'])}")
    start = child["start"]
    mr = next((e["t"] for e in ev if e.get("event") == "multirun_start"), None)
    per_job = []
    for k, j in enumerate(jobs_ev):
        t_first = j.get("first_train_forward")
        t_last = j.get("last_step_end")
        t_res = j.get("results_mtime", j["job_end"])
        before = t_first - j["job_start"]
        after = t_res - t_last
        finish = j["job_end"] - t_res
        per_job.append({
            "job": k, "start_to_first_step_s": bc.rnd(before), "last_step_to_results_s": bc.rnd(after),
            "results_to_job_end_s": bc.rnd(finish), "training_s": bc.rnd(t_last - t_first),
            "steps": j.get("steps"), "surface_s": bc.rnd(j.get("surface_s", 0.0)),
            "job_overhead_s": bc.rnd(before + after + finish),
            "job_wall_s": bc.rnd(j["job_end"] - j["job_start"]),
        })
    training = sum(j["training_s"] for j in per_job)
    startup = (mr or jobs_ev[0]["job_start"]) - start
    teardown = start + child["wall_s"] - jobs_ev[-1]["job_end"]
    amortised = (child["wall_s"] - training) / jobs
    log(f"[bench]   sweep wall {child['wall_s']:.1f} s, training {training:.1f} s, "
        f"overhead per job (amortised) {amortised:.2f} s")
    return {
        "jobs": jobs, "command": " ".join(["python", *cmd[1:-1]]), "wall_s": bc.rnd(child["wall_s"]),
        "process_start_to_sweep_start_s": bc.rnd(startup), "last_job_end_to_exit_s": bc.rnd(teardown),
        "training_s_total": bc.rnd(training), "per_job": per_job,
        # the goal's figure: everything that is not training, spread over the jobs (process start-up included)
        "job_overhead_s": bc.rnd(amortised),
        "job_overhead_s_median_in_job": bc.rnd(bc.median([j["job_overhead_s"] for j in per_job])),
        # steady state: jobs 2..n (job 1 also pays first-time lazy imports such as MONAI)
        "job_overhead_s_later_jobs": bc.rnd(bc.median([j["job_overhead_s"] for j in per_job[1:] or per_job])),
        "first_job_overhead_s": per_job[0]["job_overhead_s"], "peak_rss_mb": child["peak_rss_mb"],
    }


def _prewarm_synthetic(overrides) -> None:
    """Generate the synthetic images and their decode cache first: a study pays that once, not per job."""
    import bench_data

    cfg = bench_data.dataset_cfg("synthetic")
    size = int(cfg["image_size"])
    for o in overrides:
        if o.startswith("image_size="):
            size = int(o.split("=", 1)[1])
    dm = bench_data._datamodule(cfg, size, 8, 0, "standard")
    dm.prepare_data()


def make_checkpoint(path: Path, encoder: str, decoder: str, dataset: str, size: int, seed: int = 0) -> Path:
    """A medtransfer checkpoint (resolved training config + `model.*` state dict) that `eval.py` loads.
    Random initial weights: the bench measures cost, not quality."""
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import medtransfer.train.resolvers  # noqa: F401  (registers ${mt.*})
    from medtransfer.models import build_model

    with initialize_config_dir(config_dir=str(bc.CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"encoder={encoder}", f"decoder={decoder}", f"dataset={dataset}",
                                          f"image_size={size}", f"seed={seed}", "pretrain=scratch"])
    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(seed)
    model = build_model(cfg.encoder, cfg.decoder, num_classes=int(cfg.dataset.num_classes), image_size=size)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "hyper_parameters": {"cfg": cfg_dict}}, path)
    return path


def bench_eval(tmp: Path, cache_dir: Path, ckpt: Path, dataset: str, timeout: float = 600, extra=(),
               log=print) -> dict:
    """`python eval.py ckpt=... dataset=...` on the test part (Kvasir-SEG: the 120 medico2020 images)."""
    timing = tmp / "eval_timing.jsonl"
    out_dir = tmp / "eval_out"
    cmd = [sys.executable, "eval.py", f"ckpt={ckpt}", f"dataset={dataset}", f"out_dir={out_dir}", *extra, HOOK]
    log(f"[bench] eval: {' '.join(cmd[1:-1])}")
    child = bc.run_child(cmd, _env(tmp, cache_dir, timing), bc.ROOT, tmp / "eval.log", timeout)
    jobs_ev = [e for e in _events(timing) if e.get("event") == "job"]
    summary_path = out_dir / "summary.json"
    if child["returncode"] != 0 or not jobs_ev or not summary_path.is_file():
        raise RuntimeError(f"eval failed (rc={child['returncode']}); log {child['log']}:\n{_tail(child['log'])}")
    j = jobs_ev[0]
    summary = json.loads(summary_path.read_text())
    m = summary["metrics"]
    n = int(m.get("n_images", 0))
    loop_s = j["job_end"] - j.get("first_forward", j["job_start"])
    surface_s = j.get("surface_s", 0.0)
    policies = {k: m[k] for k in m if k.startswith("n_surface_")}
    log(f"[bench]   eval {n} images: wall {child['wall_s']:.1f} s, loop {loop_s:.1f} s, surface {surface_s:.1f} s")
    return {
        "command": " ".join(["python", *cmd[1:-1]]), "dataset": summary["dataset"], "split": summary["split"],
        "n_images": n, "wall_s": bc.rnd(child["wall_s"]), "images_per_s": bc.rnd(n / child["wall_s"]),
        "start_to_first_forward_s": bc.rnd(j.get("first_forward", j["job_end"]) - child["start"]),
        "loop_s": bc.rnd(loop_s), "loop_images_per_s": bc.rnd(n / loop_s) if loop_s else None,
        "surface_s": bc.rnd(surface_s), "surface_calls": j.get("surface_calls", 0),
        "surface_share_of_loop": bc.rnd(surface_s / loop_s, 4) if loop_s else None,
        "surface_share_of_wall": bc.rnd(surface_s / child["wall_s"], 4),
        "surface_policies": policies, "peak_rss_mb": child["peak_rss_mb"],
    }
