"""The tmux half, for real: a tmux server on a socket of its own, panes that
are login shells in real containers over the generated ssh_config (HAProxy,
an init container, the target), reconciled across profile switches."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest

from atelier.engine.up import down
from atelier.core.model import Environment, select
from atelier.core.settings import load_settings
from helpers import ENGINE, inv, project_settings, wait_for

pytestmark = [pytest.mark.engine,
              pytest.mark.skipif(shutil.which("tmux") is None or shutil.which("ssh") is None,
                                 reason="needs tmux and ssh")]

PROJECT = "ateliertest-tmux"
# The user's own two-OS profile: a switch adds an OS's panes (and its containers).
TEST_ENV = {**project_settings(PROJECT, "172.22", 23000), "ATELIER_TMUX_SOCKET": f"ateliertest-{os.getpid()}",
            "ATELIER_PROFILE_PAIR": "debian12:15,debian13:17"}


@pytest.fixture(scope="module")
def environ(tmp_path_factory):
    import libtmux

    values = {**TEST_ENV, "ATELIER_STATE_DIR": str(tmp_path_factory.mktemp("tmux-state"))}
    inv(values, "build", "--profile", "pair")
    inv(values, "up", "--profile", "default")
    yield values
    libtmux.Server(socket_name=TEST_ENV["ATELIER_TMUX_SOCKET"]).kill()
    down(ENGINE, Environment(load_settings(environ=values), select()), remove_volumes=True, say=lambda _: None)


@pytest.fixture
def server(environ):
    import libtmux

    return libtmux.Server(socket_name=TEST_ENV["ATELIER_TMUX_SOCKET"])


def windows(server) -> dict[str, list[tuple[str, str]]]:
    """window name -> [(pane id, container)], in order."""
    from atelier.tmux.session import read_session

    return {w.name: [(p.pane_id, p.key) for p in w.panes] for w in read_session(server, PROJECT)}


def screen(server, pane_id) -> str:
    return "\n".join(server.panes.get(pane_id=pane_id).capture_pane())


def prompts_shown(server) -> bool:
    for name, panes in windows(server).items():
        if name == "services":
            continue
        for pane_id, key in panes:
            if not re.search(r"[pa]@d1[234]-(p1[578]|init)-[ias#]", screen(server, pane_id)):
                return False
    return True


def test_a_window_per_role_a_pane_per_container_each_a_login_shell(environ, server):
    started = time.monotonic()
    made = inv(environ, "tmux", "--no-attach")
    assert made.stdout.strip() == f"tmux -L {TEST_ENV['ATELIER_TMUX_SOCKET']} attach-session -t ={PROJECT}"
    assert wait_for(lambda: prompts_shown(server), timeout=60)
    print(f"inv tmux --no-attach, default profile, until every prompt: {time.monotonic() - started:.2f}s")
    seen = windows(server)
    assert list(seen) == ["init", "active", "standby", "standalone", "services"]
    assert [key for _, key in seen["standby"]] == ["debian12-pg15-standby"]
    assert [key for _, key in seen["services"]] == ["status", "haproxy-log", "apache2-log", "squid-log"]
    pane = seen["active"][0][0]
    # postgres, in its workspace (its login goes there), and the original's prompt
    assert "p@d12-p15-a:~/workspace$" in screen(server, pane)
    assert "a@d12-init-i:~$" in screen(server, seen["init"][0][0])
    option = lambda name: server.cmd("show-options", "-v", "-t", f"={PROJECT}:", name).stdout  # noqa: E731
    assert option("mouse") == ["on"] and option("history-limit") == ["10000"]
    assert "#{?pane_synchronized" in option("status-right")[0]


def test_a_profile_switch_adds_then_removes_panes_in_order_keeping_the_rest(environ, server):
    inv(environ, "tmux", "--no-attach")
    before = windows(server)
    inv(environ, "tmux.reload", "--profile", "pair", "--no-attach")
    after = windows(server)
    assert [key for _, key in after["init"]] == ["debian12-init", "debian13-init"]
    assert [key for _, key in after["standby"]] == ["debian12-pg15-standby", "debian13-pg17-standby"]
    for name in ("init", "active", "standby", "standalone"):
        assert after[name][0] == before[name][0]  # debian12's panes kept, same id
    # While the pair profile is up (bringing it up is most of this test's
    # time): C-b C-s sends one line to every pane of a window.
    assert wait_for(lambda: prompts_shown(server), timeout=60)
    panes = [pane_id for pane_id, _ in after["active"]]
    window = server.panes.get(pane_id=panes[0]).window_id
    bound = server.cmd("list-keys", "-T", "prefix", "C-s").stdout
    assert bound and "synchronize-panes" in bound[0]
    server.cmd("set-option", "-w", "-t", window, "synchronize-panes", "on")  # what C-b C-s runs
    try:
        assert server.cmd("display-message", "-p", "-t", panes[0], "#{pane_synchronized}").stdout == ["1"]
        server.cmd("send-keys", "-t", panes[0], "echo SYNC-$((40+2))", "Enter")
        assert wait_for(lambda: all("SYNC-42" in screen(server, p) for p in panes), timeout=10)
    finally:
        server.cmd("set-option", "-w", "-t", window, "synchronize-panes", "off")
    # The selection is remembered: a bare `up` keeps the pair profile.
    again = inv(environ, "up")
    assert "removed" not in again.stdout and "pair" in again.stdout
    inv(environ, "tmux.reload", "--profile", "default", "--no-attach")
    back = windows(server)
    assert [key for _, key in back["standby"]] == ["debian12-pg15-standby"]
    assert back["active"][0] == before["active"][0]


def test_a_dead_pane_is_respawned_and_a_live_one_keeps_its_id_and_scrollback(environ, server):
    inv(environ, "tmux", "--no-attach")
    assert wait_for(lambda: prompts_shown(server), timeout=60)
    seen = windows(server)
    live, dying = seen["active"][0][0], seen["standalone"][0][0]
    server.cmd("send-keys", "-t", live, "echo MARK-$((6*7))", "Enter")
    assert wait_for(lambda: "MARK-42" in screen(server, live), timeout=10)
    server.cmd("send-keys", "-t", dying, "exit", "Enter")
    assert wait_for(lambda: server.panes.get(pane_id=dying).pane_dead == "1", timeout=10)
    steps = inv(environ, "tmux", "--no-attach").stderr
    assert "1 respawn" in steps
    after = windows(server)
    assert after["active"][0][0] == live and after["standalone"][0][0] == dying
    assert server.panes.get(pane_id=dying).pane_dead == "0"
    assert "MARK-42" in screen(server, live)


def test_a_reload_with_nothing_changed_changes_nothing(environ, server):
    inv(environ, "tmux", "--no-attach")
    ids = windows(server)
    layouts = {w.window_name: w.window_layout for w in server.windows}
    again = inv(environ, "tmux", "--no-attach")
    assert "nothing to change" in again.stderr
    assert windows(server) == ids
    assert {w.window_name: w.window_layout for w in server.windows} == layouts


def test_the_ssh_config_reaches_every_container_and_refuses_a_changed_key(environ):
    from atelier.core.state import known_hosts_path, recorded_keys

    settings = load_settings(environ=environ)
    config = str(settings.state_dir / "ssh_config")
    printed = inv(environ, "ssh-config").stdout
    assert f"Include {config}" in printed
    for name in recorded_keys(settings):
        ran = subprocess.run(["ssh", "-F", config, name, "hostname"], capture_output=True, text=True, timeout=30)
        assert ran.stdout.strip() == name, ran.stderr
    path = known_hosts_path(settings)
    original = path.read_text()
    other = settings.keys.client_public.split()[1]
    path.write_text(re.sub(r"^(debian12-pg15-active ssh-ed25519) \S+", rf"\1 {other}", original, flags=re.M))
    try:
        refused = subprocess.run(["ssh", "-F", config, "-o", "ControlPath=none", "debian12-pg15-active",
                                  "hostname"], capture_output=True, text=True, timeout=30)
    finally:
        path.write_text(original)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr


def test_list_shows_each_pane_with_its_container(environ):
    inv(environ, "tmux", "--no-attach")
    listed = inv(environ, "tmux.list").stdout.splitlines()
    assert listed[0].split() == ["session", "window", "pane", "container", "state", "command"]
    assert any(line.split()[3] == "debian12-pg15-active" and line.split()[4] == "live" for line in listed[1:])


def test_bad_input_is_one_line(environ):
    several = inv(environ, "tmux.reload", "--profile", "pg1", "--no-attach", check=False)
    assert several.returncode == 1
    assert several.stderr.strip() == "atelier: profile 'pg1' matches pg14, pg15, pg16, pg17, pg18, pg19; give more of its name"
    unknown = inv(environ, "tmux.reload", "--profile", "zzz", "--no-attach", check=False)
    assert unknown.returncode == 1 and unknown.stderr.startswith("atelier: unknown profile 'zzz'")
    nothing = inv({**environ, "ATELIER_PROJECT": "ateliertest-none"}, "tmux", "--no-attach", check=False)
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("atelier: no container of project ateliertest-none is running")
    no_tmux = inv({**environ, "PATH": "/nonexistent"}, "tmux", "--no-attach", check=False)
    assert no_tmux.returncode == 1
    assert no_tmux.stderr.strip() == "atelier: tmux is not installed; `apt-get install tmux` (or dnf), then try again"
