"""Shared by the benchmarks: a project of their own, and timing helpers."""

import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Bytecode, as a user's machine has it (pip writes it for a wheel, Python on
# first import for a checkout): where PYTHONDONTWRITEBYTECODE is set, as on
# these machines, every `inv` would otherwise compile atelier's source again.
compileall.compile_dir(ROOT / "atelier", quiet=1)
compileall.compile_file(ROOT / "tasks.py", quiet=1)

BENCH_ENV = {
    "ATELIER_PROJECT": "atelierbench",
    "ATELIER_SUBNET": "172.27",
    "ATELIER_SSH_PORT": "28022",
    "ATELIER_HTTP_PORT": "28080",
    "ATELIER_SQUID_PORT": "28128",
    "ATELIER_STATE_DIR": str(ROOT / ".state" / "atelierbench"),
    "ATELIER_DEBIAN_SNAPSHOT": "1",  # as the tests: this machine's Debian mirror is a frozen copy
    "ATELIER_LOCALES": "C.UTF-8,en_US.UTF-8,ko_KR.UTF-8,ko_KR.EUC-KR",  # as the tests: one set of images
}


def env() -> dict:
    """The benchmark's settings, and the interpreter's own bin folder first on
    PATH: `inv` is then the installed script, not a version manager's shim
    (pyenv's is a bash script that costs 0.1 s before Python starts)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **BENCH_ENV, "PATH": path}


def timed(command: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=ROOT, env=env(), **kwargs)
    return time.perf_counter() - started


def alternate(a, b, runs: int) -> tuple[list[float], list[float]]:
    """Time two sides in turns (A B A B ...), so that a change in the
    machine's load falls on both alike. Each side is a callable -> seconds."""
    first, second = [], []
    for _ in range(runs):
        first.append(a())
        second.append(b())
    return first, second


def compare(name_a: str, a: list[float], name_b: str, b: list[float], aim: str = "") -> float:
    """Both sides' medians and their ratio, from the same run."""
    report(name_a, a)
    report(name_b, b)
    ratio = statistics.median(a) / statistics.median(b)
    print(f"ratio {name_a} / {name_b} (medians): {ratio:.2f}" + (f" (aim: {aim})" if aim else ""))
    return ratio


def report(name: str, samples: list[float], aim: str = "") -> None:
    print(f"{name}: median {statistics.median(samples):.3f}s, min {min(samples):.3f}s, "
          f"max {max(samples):.3f}s over {len(samples)} runs" + (f" (aim: {aim})" if aim else ""))
