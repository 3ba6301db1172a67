"""The tmux session atelier wants, and the changes that make a session match
it. Pure: the layout comes from the model, the plan from the layout and the
session's state as read; tmux.py reads the state and applies the plan.

A pane is known by its key (the container's name, or a service pane's
name), carried in its start command as `ATELIER_PANE=<key> ...`, so that a
reload can tell which pane shows what without asking each pane."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from atelier.core.matrix import ROLES, SERVICES

MARK = "ATELIER_PANE"
MARK_PATTERN = re.compile(rf"^{MARK}=(\S+) ")


@dataclass(frozen=True)
class PaneSpec:
    key: str
    command: str  # run by tmux's shell; the key is put in front of it

    @property
    def start_command(self) -> str:
        return f"{MARK}={self.key} {self.command}"


@dataclass(frozen=True)
class Layout:
    windows: tuple[tuple[str, tuple[PaneSpec, ...]], ...]  # (window name, panes), in order


def key_of(start_command: str) -> str | None:
    """The pane key in a start command atelier gave, else None (not ours)."""
    found = MARK_PATTERN.match(start_command.strip().strip('"'))
    return found.group(1) if found else None


def container_layout(containers, ssh_config: str, services_commands: dict[str, str]) -> Layout:
    """One window per role with a pane per running container, in the model's
    order; then `services` (status, and the services' logs)."""
    windows = []
    for role in ROLES:
        panes = tuple(PaneSpec(c.name, f"exec ssh -F {shlex.quote(ssh_config)} -t {c.name}")
                      for c in containers if c.role == role)
        if panes:
            windows.append((role, panes))
    services = tuple(PaneSpec(key, command) for key, command in services_commands.items())
    if services:
        windows.append(("services", services))
    return Layout(tuple(windows))


# ---- the session as read ----------------------------------------------------------------

@dataclass(frozen=True)
class SeenPane:
    pane_id: str  # %12
    key: str | None
    dead: bool


@dataclass(frozen=True)
class SeenWindow:
    window_id: str  # @3
    name: str
    panes: tuple[SeenPane, ...]  # in index order


# ---- the plan -----------------------------------------------------------------------------

@dataclass
class Plan:
    """tmux commands (argument lists), in the order they must run."""

    commands: list[list[str]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # pane ids left as they were
    counts: dict[str, int] = field(default_factory=lambda: {"kill": 0, "add": 0, "respawn": 0, "move": 0})

    def add(self, *words: str, count: str = "") -> None:
        self.commands.append(list(words))
        if count:
            self.counts[count] += 1

    @property
    def empty(self) -> bool:
        return not self.commands


def plan(session: str, layout: Layout, seen: list[SeenWindow], window_options: list[list[str]]) -> Plan:
    """What to kill, add, respawn and move so that `session` shows `layout`.
    Live panes of wanted keys are kept (same id, scrollback intact); dead
    ones are respawned in place. A session that already matches gives an
    empty plan. `window_options` are set on every window atelier makes.
    Panes atelier did not make (a shell, a pgbench the user started there)
    are never killed, nor are the windows that hold them."""
    out = Plan()
    wanted = dict(layout.windows)
    seen_by_name: dict[str, SeenWindow] = {}
    for window in seen:  # atelier's panes in windows not wanted (or a second of one name) go
        if window.name in wanted and window.name not in seen_by_name:
            seen_by_name[window.name] = window
        elif all(pane.key for pane in window.panes):
            out.add("kill-window", "-t", window.window_id, count="kill")
        else:
            for pane in window.panes:
                if pane.key:
                    out.add("kill-pane", "-t", pane.pane_id, count="kill")
    final_order = [w.name for w in seen if seen_by_name.get(w.name) is w]
    for name, panes in layout.windows:
        window = seen_by_name.get(name)
        if window is None or not _reconcile_window(out, window, panes):
            if window is not None:
                out.add("kill-window", "-t", window.window_id, count="kill")
                final_order.remove(name)
            _new_window(out, session, name, panes, window_options)
            final_order.append(name)
    names = [name for name, _ in layout.windows]
    if final_order != names:
        target = f"={session}:"
        out.add("swap-window", "-d", "-s", f"{target}{names[0]}", "-t", f"{target}^", count="move")
        for before, name in zip(names, names[1:]):
            out.add("move-window", "-a", "-d", "-s", f"{target}{name}", "-t", f"{target}{before}", count="move")
    return out


def _reconcile_window(out: Plan, window: SeenWindow, panes: tuple[PaneSpec, ...]) -> bool:
    """Make one existing window show `panes`; False when it holds nothing
    to keep (the window is then made anew)."""
    keys = [p.key for p in panes]
    kept: dict[str, SeenPane] = {}
    gone = []
    for pane in window.panes:
        if pane.key in keys and pane.key not in kept:
            kept[pane.key] = pane
        elif pane.key:
            gone.append(pane)  # not wanted here, or a second pane of one key
    foreign = [pane for pane in window.panes if not pane.key]
    if not kept and not foreign:
        return False
    for pane in gone:
        out.add("kill-pane", "-t", pane.pane_id, count="kill")
    if not kept:  # only the user's own panes: atelier's go after them, in order
        for spec in reversed(panes):
            out.add("split-window", "-d", "-t", foreign[-1].pane_id, spec.start_command, count="add")
            out.add("select-layout", "-t", window.window_id, "tiled")
        return True
    in_order = [kept[k] for k in keys if k in kept]
    for pane in in_order:
        if pane.dead:
            spec = panes[keys.index(pane.key)]
            out.add("respawn-pane", "-t", pane.pane_id, spec.start_command, count="respawn")
        else:
            out.kept.append(pane.pane_id)
    changed = bool(gone)
    # Kept panes back in the wanted order (a user may have swapped them).
    current = [p for p in window.panes if p.key in kept and kept[p.key] is p]
    for index, pane in enumerate(in_order):
        if current[index] is not pane:
            other = current.index(pane)
            out.add("swap-pane", "-d", "-s", pane.pane_id, "-t", current[index].pane_id, count="move")
            current[index], current[other] = current[other], current[index]
            changed = True
    # Missing panes: before the first kept one (each put right before it, so
    # they end in order), or after the kept one they follow (put right after
    # it, last first, for the same reason).
    first = keys.index(in_order[0].key)
    for spec in panes[:first]:
        out.add("split-window", "-d", "-b", "-t", in_order[0].pane_id, spec.start_command, count="add")
        out.add("select-layout", "-t", window.window_id, "tiled")
        changed = True
    for index, pane in enumerate(in_order):
        start = keys.index(pane.key) + 1
        end = keys.index(in_order[index + 1].key) if index + 1 < len(in_order) else len(keys)
        for spec in reversed(panes[start:end]):
            out.add("split-window", "-d", "-t", pane.pane_id, spec.start_command, count="add")
            out.add("select-layout", "-t", window.window_id, "tiled")
            changed = True
    if changed:
        out.add("select-layout", "-t", window.window_id, "tiled")
    return True


def _new_window(out: Plan, session: str, name: str, panes, window_options) -> None:
    """A new window at the end, its panes in order, tiled as they come (a
    split needs room, so the layout is re-applied after each)."""
    window = f"={session}:{name}"
    out.add("new-window", "-d", "-t", f"={session}:", "-n", name, panes[0].start_command, count="add")
    for option in window_options:
        out.add("set-option", "-w", "-t", window, *option)
    for index, spec in enumerate(panes[1:]):
        out.add("split-window", "-d", "-t", f"{window}.{index}", spec.start_command, count="add")
        out.add("select-layout", "-t", window, "tiled")
    out.add("select-layout", "-t", window, "tiled")


SESSION_OPTIONS = [["mouse", "on"], ["history-limit", "10000"],
                   ["status-right", "#{?pane_synchronized,#[reverse] SYNC ON #[default],sync off} "
                                    "(C-b C-s or click) | %H:%M"]]
WINDOW_OPTIONS = [["remain-on-exit", "on"]]
SYNC_TOGGLE = ["set-option", "-w", "synchronize-panes"]


def new_session(session: str, layout: Layout, width: int = 200, height: int = 50) -> Plan:
    """Everything for a session from nothing: options first (history-limit
    applies to panes made after it), then the windows; the placeholder
    window the session starts with goes at the end."""
    out = Plan()
    out.add("new-session", "-d", "-s", session, "-n", "atelier-setup", "-x", str(width), "-y", str(height))
    for option in SESSION_OPTIONS:
        out.add("set-option", "-t", f"={session}:", *option)
    out.add("bind-key", "-T", "prefix", "C-s", *SYNC_TOGGLE)
    out.add("bind-key", "-n", "MouseDown1StatusRight", *SYNC_TOGGLE)
    for name, panes in layout.windows:
        _new_window(out, session, name, panes, WINDOW_OPTIONS)
    out.add("kill-window", "-t", f"={session}:atelier-setup")
    first = layout.windows[0][0] if layout.windows else ""
    if first:
        out.add("select-window", "-t", f"={session}:{first}")
    return out


def services_commands(inv: str, project: str, services=SERVICES) -> dict[str, str]:
    """The services window: `inv status` refreshed, and each service's log."""
    commands = {"status": f"exec sh -c {shlex.quote(f'while :; do clear; {inv} status; sleep 5; done')}"}
    for service in services:
        commands[f"{service}-log"] = f"exec docker logs -f --tail 100 {project}-{service}"
    return commands
