"""`make bench`: what a medtransfer run costs, side by side with what it could cost, in ONE process run.

    python scripts/bench.py                       # full default run (< 10 min on the 2-core CPU machine)
    python scripts/bench.py --tiny --out-dir /tmp/b   # seconds: the test's sizes
    python scripts/bench.py --sections train --configs r18:unet:128:4

Sections: 1 `train` Lightning (SegmentationModule + Trainer) vs a bare PyTorch loop, interleaved, same
batches/optimizer/precision; 2 `pipeline` SegDataModule images/s, cold vs warm decode cache, cache size;
2b `cls` the classification pipeline (ClsDataModule) vs the classifier's training step at 28 and 224 px;
3 `sweep` seconds per job beyond training in a 4-job `train.py -m` sweep; 4 `eval` eval.py images/s and the
share in HD95/ASSD; 5 peak memory (RSS on CPU, max allocated on CUDA) in every section.
Writes <out-dir>/results.json and <out-dir>/results.md and prints the table. See bench_*.py for the methods.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _k, _v in {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1",
               "WANDB_SILENT": "true"}.items():
    os.environ.setdefault(_k, _v)

import bench_common as bc  # noqa: E402
import bench_report  # noqa: E402

SECTIONS = ("pipeline", "train", "cls", "sweep", "eval")
# The two configurations. CPU: a step of R50+U-Net 352² b8 takes ~15 s and ViT-S+DPT 224² b8 ~19 s on
# the 2-core machine, so 1 warm-up + 3 interleaved repeats of 1 step per arm (8 steps per config, ~4.5 min
# for both) is what fits the 10-minute budget; on CUDA 10 warm-up steps and 5 repeats of 20 steps.
DEFAULT_CONFIGS = "r50:unet:352:8,vit_s:dpt:224:8"
TINY_CONFIGS = "r18:unet:64:2"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (seconds): r18 U-Net 64 px, synthetic data, "
                   "2 sweep jobs; for tests and a smoke check of the script")
    p.add_argument("--configs", default=None, help=f"encoder:decoder:size:batch,... (default {DEFAULT_CONFIGS})")
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    p.add_argument("--precision", default=None, help="comma list; default 32-true on CPU, 32-true,bf16-mixed on CUDA")
    p.add_argument("--compile", action="store_true", help="also measure every configuration with torch.compile")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps per arm (excluded)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats per arm (median)")
    p.add_argument("--dataset", default=None, help="pipeline/eval data: auto (Kvasir-SEG if present, else "
                   "synthetic) | kvasir_seg | synthetic | cvc_clinicdb")
    p.add_argument("--workers", type=int, default=None, help="dataloader workers (default: the config default, "
                   "medtransfer's auto_workers for this machine)")
    p.add_argument("--pipeline-repeats", type=int, default=None, help="warm epochs (median)")
    p.add_argument("--sweep-jobs", type=int, default=None, help="jobs in the sweep (default 4)")
    p.add_argument("--eval-model", default=None, help="encoder:decoder of the eval checkpoint (default r50:unet)")
    p.add_argument("--cls-configs", default=None, help="classification encoder:size:batch:augment,... (default "
                   "r18:28:128:none,r50:224:32:cls_benchmark)")
    p.add_argument("--out-dir", default=str(bc.ROOT / "bench"), help="where results.json / results.md go")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (runs, logs, caches)")
    a = p.parse_args(argv)
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = [s for s in a.sections if s not in SECTIONS]
    if bad:
        p.error(f"unknown section(s) {bad}; valid: {', '.join(SECTIONS)}")
    return a


def resolve(a) -> None:
    import torch

    a.device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    cuda = a.device.startswith("cuda")
    a.configs = a.configs or (TINY_CONFIGS if a.tiny else DEFAULT_CONFIGS)
    a.config_list = []
    for c in a.configs.split(","):
        enc, dec, size, batch = c.split(":")
        a.config_list.append((enc, dec, int(size), int(batch)))
    a.precisions = (a.precision.split(",") if a.precision else
                    (["32-true", "bf16-mixed"] if cuda and torch.cuda.is_bf16_supported() else ["32-true"]))
    d_warm, d_steps, d_rep = (10, 20, 5) if cuda else (1, 1, 3)
    if a.tiny:
        d_warm, d_steps, d_rep = 1, 2, 2
    a.warmup = d_warm if a.warmup is None else a.warmup
    a.steps = d_steps if a.steps is None else a.steps
    a.repeats = d_rep if a.repeats is None else a.repeats
    a.dataset = a.dataset or ("synthetic" if a.tiny else "auto")
    a.pipeline_repeats = a.pipeline_repeats or (2 if a.tiny else 3)
    a.sweep_jobs = a.sweep_jobs or (2 if a.tiny else 4)
    import bench_cls

    a.cls_configs = bench_cls.parse(a.cls_configs or (bench_cls.TINY_CLS if a.tiny else bench_cls.DEFAULT_CLS))
    a.eval_model = a.eval_model or ("r18:unet" if a.tiny else "r50:unet")
    if a.workers is None:
        from medtransfer.train.resolvers import auto_workers

        a.workers = auto_workers()


def main(argv=None) -> int:
    a = parse_args(argv)
    t_start = time.time()
    resolve(a)
    import bench_data

    a.dataset = bench_data.pick_dataset(a.dataset)
    machine = bc.machine_info(a.device, a.workers)
    print(bench_report.machine_line(machine), flush=True)
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mt-bench-"))
    cache_dir = tmp / "cache"  # fresh: the pipeline section's first pass is a genuinely cold cache
    results = {"schema": 1, "date": machine["date"], "device": a.device, "torch": machine["torch"],
               "machine": machine, "settings": {
                   "sections": a.sections, "configs": a.configs, "precisions": a.precisions, "compile": a.compile,
                   "warmup_steps": a.warmup, "steps_per_repeat": a.steps, "repeats": a.repeats,
                   "dataset": a.dataset, "num_workers": a.workers, "pipeline_repeats": a.pipeline_repeats,
                   "sweep_jobs": a.sweep_jobs, "eval_model": a.eval_model, "tiny": a.tiny,
                   "cls_configs": [":".join(map(str, c)) for c in a.cls_configs]},
               "configurations": [], "pipeline": [], "classification": [], "sweep": None, "eval": None, "errors": []}

    def guarded(section, fn):
        try:
            return fn()
        except Exception as e:  # one failing section must not lose the others' numbers
            import traceback

            traceback.print_exc()
            results["errors"].append({"section": section, "error": f"{type(e).__name__}: {e}"})
            return None

    try:
        if "pipeline" in a.sections:
            sizes = sorted({size for _, _, size, _ in a.config_list}, reverse=True)
            batch = a.config_list[0][3]
            for size in sizes:
                r = guarded("pipeline", lambda: bench_data.bench_pipeline(
                    a.dataset, size, batch, a.workers, cache_dir, repeats=a.pipeline_repeats))
                if r:
                    results["pipeline"].append(r)
        if "train" in a.sections:
            import bench_train

            for enc, dec, size, batch in a.config_list:
                for prec in a.precisions:
                    for comp in ([False, True] if a.compile else [False]):
                        r = guarded("train", lambda: bench_train.bench_config(
                            enc, dec, size, batch, a.device, prec, comp, a.warmup, a.steps, a.repeats))
                        if r:
                            results["configurations"].append(r)
        if "cls" in a.sections:
            import bench_cls

            results["classification"] = guarded("cls", lambda: bench_cls.bench_cls(
                a.cls_configs, tmp / "cls", a.workers, a.pipeline_repeats, a.steps + (0 if a.tiny else 2),
                a.tiny)) or []
        if "sweep" in a.sections:
            import bench_jobs

            over = ("encoder=r18", "decoder=unet", "trainer.max_epochs=1") if a.tiny else ()
            results["sweep"] = guarded("sweep", lambda: bench_jobs.bench_sweep(
                tmp / "sweep", cache_dir, jobs=a.sweep_jobs, overrides=over))
        if "eval" in a.sections:
            import bench_jobs

            def _eval():
                enc, dec = a.eval_model.split(":")
                size = int(bench_data.dataset_cfg(a.dataset)["image_size"])
                ckpt = bench_jobs.make_checkpoint(tmp / "eval_ckpt" / "model.ckpt", enc, dec, a.dataset, size)
                os.environ["MEDTRANSFER_CACHE_DIR"] = str(cache_dir)
                # the decode cache is built before timing (eval reads it warm, as after training)
                real = bench_data.realistic_surface_s(a.dataset, size, cache_dir)
                r = bench_jobs.bench_eval(tmp, cache_dir, ckpt, a.dataset)
                r.update(model=f"{enc}+{dec}", image_size=size, realistic_surface=real)
                loop_wo = r["loop_s"] - r["surface_s"]
                r["surface_share_realistic"] = bc.rnd(real["surface_s"] / (loop_wo + real["surface_s"]), 4)
                return r

            results["eval"] = guarded("eval", _eval)
    finally:
        if a.keep:
            print(f"[bench] kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    bench_report.link_pipeline(results)
    results["goals"] = bench_report.goals(results)
    results["machine"]["loadavg_end"] = bc.loadavg()
    results["bench_wall_s"] = bc.rnd(time.time() - t_start, 1)
    md = bench_report.markdown(results)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "results.md").write_text(md)
    print("\n" + md)
    print(f"[bench] {out_dir / 'results.json'}, {out_dir / 'results.md'} ({results['bench_wall_s']} s)")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
