"""Shared by the benchmarks: a project of their own, and timing helpers."""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BENCH_ENV = {
    "ATELIER_PROJECT": "atelierbench",
    "ATELIER_SUBNET": "172.27",
    "ATELIER_SSH_PORT": "28022",
    "ATELIER_HTTP_PORT": "28080",
    "ATELIER_SQUID_PORT": "23128",
    "ATELIER_STATE_DIR": str(ROOT / ".state" / "atelierbench"),
}


def env() -> dict:
    return {**os.environ, **BENCH_ENV}


def timed(command: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=ROOT, env=env(), **kwargs)
    return time.perf_counter() - started


def report(name: str, samples: list[float], aim: str = "") -> None:
    print(f"{name}: median {statistics.median(samples):.3f}s, min {min(samples):.3f}s, "
          f"max {max(samples):.3f}s over {len(samples)} runs" + (f" (aim: {aim})" if aim else ""))
