"""The package as a user installs it: a wheel built from this checkout,
installed into a fresh virtual environment outside it, and the `atelier`
command run from an empty folder: --list and render. The installed
package's build, up, status, run and down on the real engine are in
test_remote_engine.py, from a client container with no engine of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import ROOT, project_settings

PROJECT = "ateliertest-pkg"
TEST_ENV = project_settings(PROJECT, "172.23", 22000)


@pytest.fixture(scope="module")
def atelier(tmp_path_factory):
    place = tmp_path_factory.mktemp("package")
    wheels = place / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True)
    venv = place / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheel = next(wheels.glob("atelier-*.whl"))
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True)
    folder = place / "empty"
    folder.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}
    environ.update(TEST_ENV)

    def run(*args, check=True):
        done = subprocess.run([str(venv / "bin" / "atelier"), *args], cwd=folder, env=environ,
                              capture_output=True, text=True, timeout=900)
        if check and done.returncode != 0:
            raise AssertionError(f"atelier {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    run.folder = folder
    return run


def test_the_installed_command_lists_the_same_tasks_as_inv(atelier):
    listed = atelier("--list").stdout
    inv = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    assert "pg.configure" in listed and "db.reseed" in listed
    assert listed.splitlines()[1:] == inv.splitlines()[1:]


def test_render_from_an_empty_folder_uses_the_packaged_templates(atelier):
    atelier("render", "--profile", "full", "--out", "rendered")
    rendered = atelier.folder / "rendered"
    assert (rendered / "images" / "atelier-rocky8-init" / "Dockerfile").read_text().startswith("# atelier-rocky8-init")
    setup = rendered / "images" / "atelier-debian12-pg15" / "postgres/usr/local/sbin/atelier-pg-setup"
    assert setup.stat().st_mode & 0o111  # scripts keep their mode through the wheel
    assert (atelier.folder / ".state" / PROJECT / "id_ed25519").exists()  # state in the folder run from
