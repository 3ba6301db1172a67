"""atelier's task collections, one module per topic, assembled here for
`inv` (tasks.py in a checkout) and the `atelier` command alike."""

from __future__ import annotations

import os
import sys

from invoke import Collection

from . import db, git, lifecycle, pg, remote, tmux, workspace
from .common import CONFIG_DEFAULTS


def namespace(root: str | None = None) -> Collection:
    """Every task: the environment's life and SSH at the top level, then
    pg.*, db.*, git.*, workspace.*. `root` is the folder whose .env and
    .state/ are used (default: the folder atelier is run from)."""
    ns = Collection.from_module(lifecycle)
    for name, task in Collection.from_module(remote).tasks.items():
        ns.add_task(task, name)
    for module, name in ((pg, "pg"), (db, "db"), (git, "git"), (workspace, "workspace"), (tmux, "tmux")):
        ns.add_collection(Collection.from_module(module), name)
    ns.configure({"atelier": {**CONFIG_DEFAULTS["atelier"], "root": root}})
    quiet_broken_pipe()
    return ns


def quiet_broken_pipe() -> None:
    """`inv --list | head`: when the reader of our output goes away, leave
    quietly as a Unix tool does, not with a traceback. (SIGPIPE's default
    action would also do it, but would kill the process when an SSH or
    engine socket breaks, where atelier says what happened.)"""
    previous = sys.excepthook
    if getattr(previous, "atelier", False):
        return

    def hook(kind, value, traceback):
        if issubclass(kind, BrokenPipeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return
        previous(kind, value, traceback)

    hook.atelier = True
    sys.excepthook = hook
