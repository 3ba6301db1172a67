"""tmux through libtmux: read a session's windows and panes, apply a plan
(tmux_plan.py) in one tmux invocation, attach. Pure decisions live in
tmux_plan.py; this module only talks to the tmux server."""

from __future__ import annotations

import os
import shutil
import time

from atelier.core.errors import AtelierError
from atelier.tmux.plan import WINDOW_OPTIONS, Layout, Plan, SeenPane, SeenWindow, key_of, new_session, plan


def tmux_server(socket_name: str | None = None):
    """The tmux server to use: the user's default, or a named socket."""
    if shutil.which("tmux") is None:
        raise AtelierError("tmux is not installed; `apt-get install tmux` (or dnf), then try again")
    import libtmux

    return libtmux.Server(socket_name=socket_name) if socket_name else libtmux.Server()


def read_session(server, session: str) -> list[SeenWindow] | None:
    """The session's windows (in index order) and panes, or None if absent."""
    if not server.is_alive() or not server.has_session(session, exact=True):
        return None
    panes = [p for p in server.panes if p.session_name == session]
    windows: dict[str, list] = {}
    names: dict[str, str] = {}
    window_index: dict[str, int] = {}
    for pane in sorted(panes, key=lambda p: (int(p.window_index), int(p.pane_index))):
        windows.setdefault(pane.window_id, []).append(
            SeenPane(pane.pane_id, key_of(pane.pane_start_command or ""), pane.pane_dead == "1"))
        names[pane.window_id] = pane.window_name
        window_index[pane.window_id] = int(pane.window_index)
    return [SeenWindow(window_id, names[window_id], tuple(windows[window_id]))
            for window_id in sorted(windows, key=window_index.get)]


def run_plan(server, steps: Plan) -> None:
    """Every command of the plan in one tmux invocation (`a ; b ; c`), which
    is what makes a 60-pane session take a fraction of a second."""
    if steps.empty:
        return
    words: list[str] = []
    for command in steps.commands:
        if words:
            words.append(";")
        words.extend(command)
    result = server.cmd(*words)
    if result.stderr:
        raise AtelierError(f"tmux refused a step: {' '.join(result.stderr).strip()}")


def reconcile(server, session: str, layout: Layout, width: int = 200, height: int = 50) -> Plan:
    """Make `session` show `layout`: from nothing, or by the least change."""
    seen = read_session(server, session)
    steps = new_session(session, layout, width, height) if seen is None \
        else plan(session, layout, seen, WINDOW_OPTIONS)
    run_plan(server, steps)
    return steps


def wait_for_prompts(server, session: str, needle: str, timeout: float = 60.0) -> float:
    """Seconds until every pane of the session's container windows shows
    `needle` (a prompt), or raise after `timeout`."""
    started = time.monotonic()
    while True:
        waiting = [p for p in server.panes if p.session_name == session and p.window_name != "services"
                   and needle not in "\n".join(p.capture_pane())]
        if not waiting:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AtelierError(f"{len(waiting)} pane(s) showed no prompt within {timeout:.0f}s")
        time.sleep(0.2)


def attach_command(server, session: str) -> list[str]:
    """How to attach: switch the client from inside tmux, attach from outside."""
    socket = ["-L", server.socket_name] if server.socket_name else []
    verb = "switch-client" if os.environ.get("TMUX") else "attach-session"
    return ["tmux", *socket, verb, "-t", f"={session}"]


def attach(server, session: str) -> None:
    command = attach_command(server, session)
    os.execvp(command[0], command)


def list_rows(server) -> list[tuple]:
    """session, window, pane, container, dead, command: every pane of the server."""
    if not server.is_alive():
        return []
    return [(p.session_name, f"{p.window_index}:{p.window_name}", p.pane_id, key_of(p.pane_start_command or "")
             or "-", "dead" if p.pane_dead == "1" else "live", p.pane_current_command or "-")
            for p in sorted(server.panes, key=lambda p: (p.session_name, int(p.window_index),
                                                          int(p.pane_index)))]
