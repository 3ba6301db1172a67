"""tmux.*: the original's tmux half. One session per project, a window per
role and a pane per running container (a login shell over the SSH path),
reconciled rather than rebuilt."""

from __future__ import annotations

import os
import shlex
import sys

from atelier.core.errors import AtelierError
from atelier.core.model import all_profiles, profile_named
from atelier.core.table import format_table
from atelier.render.ssh_config import write_ssh_config
from atelier.tmux.plan import container_layout, services_commands
from atelier.tmux.session import attach, attach_command, list_rows, reconcile, tmux_server

from .common import SELECT_HELP, atelier_task, engine_of, remembered_environment, selected_environment, settings_of
from .lifecycle import bring_up


def _server(c):
    return tmux_server(settings_of(c).tmux_socket or None)


def _status_command(c) -> str:
    """How a pane runs `inv status` again: this checkout's inv, or the
    installed command; with this run's non-secret ATELIER_* settings."""
    root = c.config.atelier.root
    inv = (f"cd {shlex.quote(root)} && {shlex.quote(sys.executable)} -m invoke" if root
           else shlex.quote(sys.argv[0]))
    settings = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
                        if k.startswith("ATELIER_") and "PASSWORD" not in k)
    return f"env {settings} sh -c {shlex.quote(inv + ' status')}" if settings else inv + " status"


def reconcile_session(c):
    """Make the project's session match what runs; returns (server, name, plan)."""
    env, engine = selected_environment(c, "full"), engine_of(c)
    server = _server(c)
    running = {name for name, container in engine.project_containers(env.project).items()
               if container.status == "running"}
    config = str(write_ssh_config(env, engine.entry_host))
    servers_and_inits = [container for container in env.containers if container.systemd and container.name in running]
    services = [container.name for container in env.containers if not container.systemd and container.name in running]
    if not servers_and_inits:
        raise AtelierError(f"no container of project {env.project} is running, so a session would be empty; "
                           "`inv up` (or `inv tmux.reload --profile P`) first")
    commands = services_commands(_status_command(c), env.project, services)
    layout = container_layout(servers_and_inits, config, commands)
    return server, env.project, reconcile(server, env.project, layout)


def _attach_or_print(server, name, no_attach) -> None:
    if no_attach or not sys.stdout.isatty():
        print(shlex.join(attach_command(server, name)))
    else:
        attach(server, name)


@atelier_task(default=True, help={"no_attach": "print the attach command instead of attaching"})
def session(c, no_attach=False):
    """Make or reconcile the project's tmux session (a window per role, a pane per container), then attach."""
    server, name, steps = reconcile_session(c)
    counts = ", ".join(f"{n} {what}" for what, n in steps.counts.items() if n) or "nothing to change"
    print(f"tmux session {name}: {counts}", file=sys.stderr)
    _attach_or_print(server, name, no_attach)


@atelier_task(help={**SELECT_HELP, "no_attach": "print the attach command instead of attaching"})
def reload(c, profile=None, os=None, pg=None, no_attach=False):
    """Bring a selection up (what inv up does), then reconcile the tmux session: the original's tmux-reload."""
    if not (profile or os or pg) and sys.stdin.isatty():
        profile = _choose_profile(c)
    bring_up(c, profile, os, pg)
    session.body(c, no_attach=no_attach)


def _choose_profile(c) -> str | None:
    """On a terminal: the profiles, the current one marked; Enter keeps it."""
    PROFILES = all_profiles(settings_of(c).profiles)
    _, current = remembered_environment(c)
    now = current.get("profile", "default" if not current else "")
    for number, name in enumerate(PROFILES, 1):
        print(f"{'*' if name == now else ' '} {number:2} {name}")
    answer = input(f"profile [{now or 'the last selection'}]: ").strip()
    if not answer:
        return now or None
    if answer.isdigit():
        if not 1 <= int(answer) <= len(PROFILES):
            raise AtelierError(f"no profile number {answer}; valid: 1 to {len(PROFILES)}")
        return list(PROFILES)[int(answer) - 1]
    return profile_named(answer, PROFILES)


@atelier_task(name="list")
def list_(c):
    """Sessions, windows and panes of the tmux server: each pane's container, dead or live, and command."""
    rows = list_rows(_server(c))
    if not rows:
        print("no tmux session; `inv tmux` makes the project's")
        return
    print(format_table(("session", "window", "pane", "container", "state", "command"), rows))
