"""Helpers the end-to-end test modules share."""

import os
import subprocess
import sys
import time

from pathlib import Path

# The checkout the tests run in: `inv` there finds its tasks.py.
ROOT = Path(__file__).resolve().parent.parent


def inv(environ: dict, *args, check: bool = True, timeout: float = 900):
    """Run the real command line, as a user does."""
    run = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                         env={**os.environ, **environ}, capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"inv {' '.join(args)} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return run


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def project_settings(project: str, subnet: str, port_base: int) -> dict:
    """Settings of a test project of its own: name, subnet and host ports
    (SSH port_base+22, HTTP +80, squid +128), all on 127.0.0.1."""
    return {
        "ATELIER_PROJECT": project,
        "ATELIER_SUBNET": subnet,
        "ATELIER_SSH_PORT": str(port_base + 22),
        "ATELIER_HTTP_PORT": str(port_base + 80),
        "ATELIER_SQUID_PORT": str(port_base + 128),
        "ATELIER_BIND_ADDRESS": "127.0.0.1",
        # This machine's Debian mirror is a frozen copy: forky's Release files
        # have expired on it (see ATELIER_DEBIAN_SNAPSHOT in .env.example).
        "ATELIER_DEBIAN_SNAPSHOT": "1",
        # Images are shared by name across projects: every test project asks
        # for the same locales, the Korean ones the original generated among them.
        "ATELIER_LOCALES": "C.UTF-8,en_US.UTF-8,ko_KR.UTF-8,ko_KR.EUC-KR",
    }


# The engine the tests drive from this process (DOCKER_HOST, a context, or
# the local socket), one client for the whole run.
from atelier.engine.client import Engine  # noqa: E402

ENGINE = Engine.chosen()
