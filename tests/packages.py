"""The package names a rendered Dockerfile installs: every word of its
`dnf install` and `apt-get install` commands that is not an option, a URL or
a shell expansion. Shared by the package tests."""

from __future__ import annotations

import re
import shlex


def run_commands(dockerfile: str) -> list[str]:
    """Each RUN instruction's shell line, continuations joined, comments dropped."""
    lines, current, out = dockerfile.splitlines(), None, []
    for line in lines:
        stripped = line.strip()
        if current is None:
            if not stripped.upper().startswith("RUN "):
                continue
            current = stripped[4:]
        elif stripped.startswith("#"):
            continue
        else:
            current += " " + stripped
        if current.endswith("\\"):
            current = current[:-1]
            continue
        out.append(current)
        current = None
    return out


INSTALL = re.compile(r"^(dnf|apt-get)\s+(.*\s)?install(\s|$)")


def installed_packages(dockerfile: str) -> set[str]:
    found = set()
    for line in run_commands(dockerfile):
        for command in re.split(r"&&|;|\|\|", line):
            command = command.strip()
            if not INSTALL.match(command):
                continue
            words = shlex.split(command)[words_start(command):]
            found |= {w for w in words if not w.startswith(("-", "http", "$")) and "=" not in w}
    return found


def words_start(command: str) -> int:
    words = shlex.split(command)
    return words.index("install") + 1
