"""Shared helpers of `scripts/bench.py`: machine facts, peak memory, timing, config loading.

Kept free of heavy imports at module level so `bench.py --help` is instant.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: str, num_workers: int) -> dict:
    """What the table's header shows: enough to tell whether two results files are comparable."""
    import cv2
    import torch

    info = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": cores(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "opencv_threads": cv2.getNumThreads(),
        "dataloader_workers": num_workers,
        "threads_x_workers": torch.get_num_threads() * max(1, num_workers),
        "loadavg_start": loadavg(),
        "git": git_commit(),
    }
    try:
        import lightning

        info["lightning"] = lightning.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


# ---------------------------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak resident memory (CPU: VmHWM, reset through /proc/self/clear_refs) and, on CUDA, max allocated.

    `with PeakMemory(device) as pm: ...` → `pm.rss_mb`, `pm.cuda_mb`. Where the kernel refuses the reset,
    the value is the process's peak so far (said by `rss_reset=False`).
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.rss_mb = self.cuda_mb = None
        self.rss_reset = False

    def __enter__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.rss_reset = True
        except OSError:
            self.rss_reset = False
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc):
        self.rss_mb = peak_rss_mb()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.cuda_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return False


def peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_child(cmd: list[str], env: dict, cwd: Path, log_path: Path, timeout: float) -> dict:
    """Run a subprocess, logging to a file; returns wall seconds, return code and the child's peak RSS."""
    env = {**os.environ, **env}
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"start": t0, "wall_s": time.time() - t0, "returncode": proc.returncode,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "log": str(log_path)}


# ---------------------------------------------------------------------------------------------- misc
def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rnd(x, n=3):
    return None if x is None else round(float(x), n)


def load_yaml(group: str, name: str):
    from omegaconf import OmegaConf

    return OmegaConf.load(CONF / group / f"{name}.yaml")


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
