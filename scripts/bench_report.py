"""The Markdown table and the goal checks of `make bench` (from the results dict that goes to results.json)."""

from __future__ import annotations

from bench_common import median

GOAL_RATIO, GOAL_PIPELINE, GOAL_JOB_S = 0.95, 3.0, 5.0


def machine_line(m: dict) -> str:
    load = m.get("loadavg_start")
    end = m.get("loadavg_end")
    load_s = f"load {load[0]}" + (f" → {end[0]}" if end else "") if load else "load ?"
    over = m["torch_threads"] + m["dataloader_workers"] > m["cores"]
    return (f"**Machine:** {m['cpu']} · {m['cores']} cores · {m['memory_gb']} GiB · device `{m['device']}`"
            f"{' (' + m['device_name'] + ')' if m['device'] != 'cpu' else ''} · torch {m['torch']}"
            f" · lightning {m.get('lightning', '?')} · python {m['python']}  \n"
            f"**Threads:** torch {m['torch_threads']} (interop {m['torch_interop_threads']}) × dataloader workers "
            f"{m['dataloader_workers']} (opencv {m['opencv_threads']})"
            f" → {'OVERSUBSCRIBED: ' if over else 'fits: '}{m['torch_threads']} + {m['dataloader_workers']}"
            f" {'>' if over else '≤'} {m['cores']} cores · {load_s} (1-min) · {m['date']} · git {m.get('git')}")


def link_pipeline(results: dict) -> None:
    """pipeline_vs_model for each configuration: warm pipeline images/s at its size ÷ its training images/s."""
    by_size = {p["image_size"]: p for p in results.get("pipeline", [])}
    for c in results.get("configurations", []):
        p = by_size.get(c["image_size"])
        model = c.get("lightning_images_per_s")
        c["pipeline_images_per_s"] = p["warm_images_per_s"] if p else None
        c["pipeline_vs_model"] = round(p["warm_images_per_s"] / model, 2) if p and model else None
        if p and model and results["settings"]["num_workers"] == 0:
            # workers 0: loading runs in the training process, so its time adds to every step
            c["end_to_end_images_per_s_estimate"] = round(1 / (1 / model + 1 / p["warm_images_per_s"]), 3)


def goals(results: dict) -> list[dict]:
    out = []
    for c in results.get("configurations", []):
        if c.get("lightning_vs_bare") is not None:
            out.append({"goal": f"Lightning/bare ≥ {GOAL_RATIO} ({c['name']}, {c['device']})",
                        "value": c["lightning_vs_bare"], "met": c["lightning_vs_bare"] >= GOAL_RATIO})
        if c.get("pipeline_vs_model") is not None:
            out.append({"goal": f"warm pipeline ≥ {GOAL_PIPELINE:g}× model ({c['name']})",
                        "value": c["pipeline_vs_model"], "met": c["pipeline_vs_model"] >= GOAL_PIPELINE})
    for c in results.get("classification") or []:
        out.append({"goal": f"classification pipeline ≥ {GOAL_PIPELINE:g}× model ({c['name']})",
                    "value": c["pipeline_vs_model"], "met": c["pipeline_vs_model"] >= GOAL_PIPELINE})
    s = results.get("sweep")
    if s:
        out.append({"goal": f"sweep overhead < {GOAL_JOB_S:g} s per job ({s['jobs']} jobs, amortised, incl. the "
                            "process's one-off imports)",
                    "value": s["job_overhead_s"], "met": s["job_overhead_s"] < GOAL_JOB_S})
        steady = s["job_overhead_s_later_jobs"]
        out.append({"goal": f"sweep overhead < {GOAL_JOB_S:g} s per job (in-job, median of jobs 2..{s['jobs']})",
                    "value": steady, "met": steady < GOAL_JOB_S})
    return out


def _f(x, n=2, unit=""):
    if x is None:
        return "–"
    return f"{x:.{n}f}{unit}"


def markdown(r: dict) -> str:
    m = r["machine"]
    st = r["settings"]
    lines = [f"## medtransfer bench ({r['date']})", "", machine_line(m), ""]
    if r["configurations"]:
        lines += ["### 1. Training step throughput: medtransfer (Lightning) vs bare PyTorch loop", "",
                  f"Same model (`build_model`), same in-memory batches, AdamW, BCE+Dice, same precision; interleaved; "
                  f"{st['warmup_steps']} warm-up step(s) excluded, median of {st['repeats']} repeats × "
                  f"{st['steps_per_repeat']} step(s) per arm.", "",
                  "| configuration | device | Lightning img/s | bare img/s | Lightning/bare (goal ≥ 0.95) "
                  "| warm pipeline img/s | pipeline/model (goal ≥ 3) | peak RSS MB | max alloc MB |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in r["configurations"]:
            lines.append(
                f"| {c['name']} | {c['device']} | {_f(c['lightning_images_per_s'])} | {_f(c['bare_images_per_s'])} "
                f"| **{_f(c['lightning_vs_bare'], 3)}** | {_f(c.get('pipeline_images_per_s'), 1)} "
                f"| **{_f(c.get('pipeline_vs_model'), 1)}** | {_f(c['peak_rss_mb'], 0)} "
                f"| {_f(c.get('max_allocated_mb'), 0)} |")
        lines.append("")
    if r["pipeline"]:
        lines += ["### 2. Data pipeline alone (SegDataModule: decode cache → augment `standard` → collate)", "",
                  "| dataset | size | batch | workers | cold: decode img/s | cold: first epoch img/s (incl. decode) "
                  "| warm img/s | warm setup s | cache on disk MB | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for p in r["pipeline"]:
            mb = p["cache_bytes"] / 2**20 if p.get("cache_bytes") else None
            lines.append(
                f"| {p['dataset']} ({p['n_images']} images, {p['n_train']} train) | {p['image_size']} "
                f"| {p['batch_size']} | {p['num_workers']} | {_f(p['decode_images_per_s'], 1)} "
                f"| {_f(p['cold_images_per_s'], 1)} | **{_f(p['warm_images_per_s'], 1)}** "
                f"| {_f(p['warm_setup_s'])} | {_f(mb, 1)} | {_f(p['peak_rss_mb'], 0)} |")
        lines.append("")
    if r.get("classification"):
        lines += ["### 2b. Classification: data pipeline vs the classifier's training step", "",
                  "ClsDataModule train loader (setup decodes and resizes once) vs a bare step (forward, BCE, "
                  "backward, Adam) of `build_classifier` on an in-memory batch, median after one warm-up.", "",
                  "| configuration | batch | augment | workers | pipeline img/s | model img/s "
                  "| pipeline/model (goal ≥ 3) | setup s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
        for c in r["classification"]:
            p = c["pipeline"]
            lines.append(f"| {c['name']} ({p['file']}, {p['n_images']} train) | {c['batch_size']} | {p['augment']} "
                         f"| {c['num_workers']} | {_f(p['images_per_s'], 1)} | {_f(c['model']['images_per_s'], 1)} "
                         f"| **{_f(c['pipeline_vs_model'], 1)}** | {_f(p['setup_s'])} | {_f(c['peak_rss_mb'], 0)} |")
        lines.append("")
    s = r.get("sweep")
    if s:
        later = s["per_job"][1:] or s["per_job"]
        med = median([j["start_to_first_step_s"] for j in later])
        med_after = median([j["last_step_to_results_s"] for j in later])
        lines += ["### 3. Sweep overhead", "", f"`{s['command']}`", "",
                  "| jobs | sweep wall s | training s (all jobs) | overhead per job, amortised (goal < 5 s) "
                  "| process start → sweep start s | job start → first step s (job 1 / later) "
                  "| last step → results.json s (job 1 / later) | results → job end s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|",
                  f"| {s['jobs']} | {_f(s['wall_s'], 1)} | {_f(s['training_s_total'], 1)} "
                  f"| **{_f(s['job_overhead_s'])}** | {_f(s['process_start_to_sweep_start_s'])} "
                  f"| {_f(s['per_job'][0]['start_to_first_step_s'])} / {_f(med)} "
                  f"| {_f(s['per_job'][0]['last_step_to_results_s'])} / {_f(med_after)} "
                  f"| {_f(median([j['results_to_job_end_s'] for j in s['per_job']]))} "
                  f"| {_f(s['peak_rss_mb'], 0)} |", ""]
    e = r.get("eval")
    if e:
        real = e.get("realistic_surface") or {}
        lines += ["### 4. Evaluation (`eval.py`, HD95/ASSD included)", "", f"`{e['command']}`", "",
                  "| model | data | images | wall s | img/s (incl. start-up) | loop img/s | surface s "
                  "| surface share of loop | realistic surface ms/img | realistic share | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {e['model']} {e['image_size']}px | {e['dataset']}/{e['split']} | {e['n_images']} "
                  f"| {_f(e['wall_s'], 1)} | {_f(e['images_per_s'])} | {_f(e['loop_images_per_s'])} "
                  f"| {_f(e['surface_s'], 2)} | {_f(100 * (e['surface_share_of_loop'] or 0), 1, ' %')} "
                  f"| {_f(real.get('surface_ms_per_image'), 1)} "
                  f"| {_f(100 * (e.get('surface_share_realistic') or 0), 1, ' %')} | {_f(e['peak_rss_mb'], 0)} |",
                  "", f"Surface policies of the (random-weight) checkpoint's predictions: {e['surface_policies']}; "
                  "'realistic' = the same masks vs. a dilated, shifted copy (a model that finds the polyp).", ""]
    if r.get("goals"):
        lines += ["### Goals", ""]
        for g in r["goals"]:
            lines.append(f"- {'✅' if g['met'] else '❌'} {g['goal']}: {g['value']}")
        lines.append("")
    for err in r.get("errors", []):
        lines.append(f"- ⚠️ section `{err['section']}` failed: {err['error']}")
    lines.append(f"_bench wall {r.get('bench_wall_s')} s; load (1-min) {m.get('loadavg_start')} → "
                 f"{m.get('loadavg_end')}_")
    return "\n".join(lines) + "\n"

