"""The SSH path, for real: host -> HAProxy on 127.0.0.1 -> an init container
-> target, with real sshd, real HAProxy and pinned host keys. Uses the
user's own profile of two OSes (ATELIER_PROFILE_PAIR=debian12:15,debian13:17),
which has two init containers for HAProxy to balance over, under a project
of its own."""

from __future__ import annotations

import re
import shlex
import os
import shutil
import subprocess
import sys
import time

from pathlib import Path

import pytest

from atelier.engine.up import down, up, wait_ssh_entry
from atelier.core.model import Environment, select
from atelier.core.state import known_hosts_path
from atelier.core.settings import load_settings
from helpers import ENGINE, ROOT, inv, project_settings, wait_for

pytestmark = pytest.mark.engine

PROJECT = "ateliertest-ssh"
TEST_ENV = {**project_settings(PROJECT, "172.26", 19000), "ATELIER_PROFILE_PAIR": "debian12:15,debian13:17"}


def pair(values):
    return Environment(load_settings(environ=values),
                       select("pair", user_profiles=load_settings(environ=values).profiles))


@pytest.fixture(scope="module")
def environ(tmp_path_factory):
    values = {**TEST_ENV, "ATELIER_STATE_DIR": str(tmp_path_factory.mktemp("ssh-state"))}
    inv(values, "build", "--profile", "pair")
    up(ENGINE, pair(values), say=print)
    yield values
    down(ENGINE, pair(values), remove_volumes=True, say=lambda _: None)


@pytest.fixture(scope="module")
def settings(environ):
    return load_settings(environ=environ)


@pytest.fixture
def container(environ):
    client = ENGINE.client
    return lambda name: client.containers.get(f"{PROJECT}-{name}")


def lines_by_target(stdout: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        name, _, text = line.partition(" | ")
        out.setdefault(name.strip(), []).append(text)
    return out


def test_hostname_on_three_targets_through_haproxy(environ):
    run = inv(environ, "run", "-t", "debian12-pg15-active,debian13-pg17-standby,debian12-init", "--", "hostname")
    assert lines_by_target(run.stdout) == {"debian12-pg15-active": ["debian12-pg15-active"],
                                           "debian13-pg17-standby": ["debian13-pg17-standby"],
                                           "debian12-init": ["debian12-init"]}
    summary = run.stderr.splitlines()
    assert summary[0].split() == ["container", "exit", "seconds"]
    assert all(re.match(r"\S+\s+0\s+[\d.]+$", row) for row in summary[1:]) and len(summary) == 4


def test_globs_users_and_exit_codes(environ):
    run = inv(environ, "run", "-t", "*-standby", "--", "id -un; test $(hostname) = debian12-pg15-standby",
              check=False)
    assert lines_by_target(run.stdout) == {"debian12-pg15-standby": ["postgres"],
                                           "debian13-pg17-standby": ["postgres"]}
    assert run.returncode == 1
    assert re.search(r"debian13-pg17-standby\s+1\s", run.stderr)
    init = inv(environ, "run", "-t", "debian13-init", "--", "id", "-un")
    assert init.stdout.strip() == "atelier"


def test_a_server_answers_over_ssh_as_postgres(environ):
    run = inv(environ, "run", "-t", "debian13-pg17-active", "--", "psql", "-XAtc", "select current_setting('server_version_num')::int / 10000")
    assert run.stdout.strip() == "17"


def test_local_target_runs_the_same_helper_with_an_invoke_context(environ):
    run = inv(environ, "run", "-t", "local", "--", "echo", "here")
    assert run.stdout.strip() == "here"


def test_put_and_get_through_the_same_path(environ, tmp_path):
    source = tmp_path / "patch.diff"
    source.write_text("--- a\n+++ b\n")
    inv(environ, "put", str(source), "--remote", "workspace/patch.diff", "-t", "debian12-pg15-*")
    inv(environ, "get", "workspace/patch.diff", "--local", str(tmp_path / "{name}.diff"), "-t", "debian12-pg15-*")
    for role in ("active", "standby", "standalone"):
        assert (tmp_path / f"debian12-pg15-{role}.diff").read_text() == "--- a\n+++ b\n"


def test_a_tampered_known_hosts_entry_is_refused(environ, settings):
    path = known_hosts_path(settings)
    original = path.read_text()
    other_key = settings.keys.client_public.split()[1]
    path.write_text(re.sub(r"^(debian12-pg15-active ssh-ed25519) \S+", rf"\1 {other_key}", original, flags=re.M))
    try:
        run = inv(environ, "run", "-t", "debian12-pg15-active", "--", "hostname", check=False)
    finally:
        path.write_text(original)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.startswith("atelier: host key of debian12-pg15-active changed: ")
    assert "`inv hostkeys` reads every container's key again" in run.stderr


def test_an_unrecorded_host_is_refused(environ, settings):
    path = known_hosts_path(settings)
    original = path.read_text()
    path.write_text("\n".join(l for l in original.splitlines() if not l.startswith("[")) + "\n")
    try:
        run = inv(environ, "run", "-t", "debian12-pg15-active", "--", "hostname", check=False)
    finally:
        path.write_text(original)
    assert run.returncode == 1 and "no host key recorded for HAProxy at 127.0.0.1:19022" in run.stderr


def test_with_one_init_stopped_commands_still_succeed(environ, container):
    container("debian12-init").stop(timeout=5)
    try:
        for _ in range(4):  # round-robin would hit the stopped one at least once
            run = inv(environ, "run", "-t", "debian12-pg15-active,debian13-pg17-active", "--", "hostname")
            assert set(lines_by_target(run.stdout)) == {"debian12-pg15-active", "debian13-pg17-active"}
    finally:
        container("debian12-init").start()


def test_target_down_names_the_hop(environ, container):
    container("debian12-pg15-standalone").stop(timeout=5)
    try:
        run = inv(environ, "run", "-t", "debian12-pg15-standalone", "--", "hostname", check=False)
    finally:
        container("debian12-pg15-standalone").start()
    assert run.returncode == 1
    assert run.stderr.strip() == ("atelier: the jump host could not reach debian12-pg15-standalone port 22 "
                                  "(Connect failed); is that container running? (`inv status`)")


def test_haproxy_down_names_the_hop(environ, container):
    container("haproxy").stop(timeout=5)
    try:
        run = inv(environ, "run", "-t", "debian12-pg15-active", "--", "hostname", check=False)
    finally:
        container("haproxy").start()
        wait_ssh_entry(ENGINE, pair(environ), deadline=time.monotonic() + 30)
    assert run.returncode == 1
    assert run.stderr.strip() == ("atelier: cannot reach HAProxy at 127.0.0.1:19022: connection refused; "
                                  "is the environment up? (`inv status`)")


def test_unknown_target_lists_the_nearest(environ):
    run = inv(environ, "run", "-t", "debian12-pg15-stanby", "--", "true", check=False)
    assert run.returncode == 1
    assert "unknown target 'debian12-pg15-stanby' (did you mean debian12-pg15-standby" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_keys_only_no_root_no_passwords(environ, container):
    run = inv(environ, "run", "-t", "debian12-pg15-active", "-u", "root", "--", "true", check=False)
    assert run.returncode == 1 and "refused atelier's key" in run.stderr
    config = container("debian12-pg15-active").exec_run(["sshd", "-T"]).output.decode()
    assert "passwordauthentication no" in config and "permitrootlogin no" in config


def test_init_containers_share_one_host_key_and_servers_have_their_own(settings):
    entries = dict(line.split(" ", 1) for line in known_hosts_path(settings).read_text().splitlines())
    bastion = settings.keys.bastion_public
    assert entries["debian12-init"] == entries["debian13-init"] == bastion
    servers = [v for k, v in entries.items() if "-pg" in k]
    assert len(servers) == 6 and len(set(servers)) == 6 and bastion not in servers


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_interactive_shell_has_a_pty_and_the_originals_prompt(environ):
    session = f"{PROJECT}-shell"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in environ.items())
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40",
                    f"cd {shlex.quote(str(ROOT))} && env {exports} {shlex.quote(sys.executable)} -m invoke "
                    "shell -t debian12-pg15-standby; sleep 30"],
                   check=True)
    try:
        screen = lambda: subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                        capture_output=True, text=True).stdout
        assert wait_for(lambda: "p@d12-p15-s:" in screen(), timeout=20), screen()
        subprocess.run(["tmux", "send-keys", "-t", session, "tty; echo $((6*7))", "Enter"], check=True)
        assert wait_for(lambda: "/dev/pts/" in screen() and "\n42" in screen(), timeout=10), screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


# ---- VS Code over Remote-SSH ------------------------------------------------------------------

VSCODE = "/var/lib/postgresql/workspace/.vscode"


def vscode_files(environ, target) -> dict:
    import json

    out = {}
    for name in ("launch.json", "c_cpp_properties.json", "settings.json"):
        text = inv(environ, "run", "-t", target, "--", f"cat {VSCODE}/{name}").stdout
        out[name] = json.loads(text)  # every file parses
    return out


@pytest.mark.parametrize("target, major", [("debian12-pg15-active", 15), ("debian13-pg17-standby", 17)])
def test_vscode_configs_name_this_containers_own_programs_and_paths(environ, target, major):
    files = vscode_files(environ, target)
    settings, launch = files["settings.json"], files["launch.json"]
    assert settings["editor.tabSize"] == 4 and settings["editor.insertSpaces"] is False
    assert settings["atelier.postgres"] == f"/usr/lib/postgresql/{major}/bin/postgres"
    entries = {e["name"]: e for e in launch["configurations"]}
    assert set(entries) == {"postgres (attach)", "postgres (launch)", "psql (launch)"}
    single = entries["postgres (launch)"]["args"]
    data_dir, config_file = single[single.index("-D") + 1], single[single.index("-c") + 1].split("=", 1)[1]
    include = files["c_cpp_properties.json"]["configurations"][0]["includePath"]
    assert f"/usr/include/postgresql/{major}/server" in include
    assert files["c_cpp_properties.json"]["configurations"][0]["cStandard"] == "c11"
    paths = [settings["atelier.postgres"], settings["atelier.psql"], data_dir, config_file,
             *[p for p in include if "/workspace/" not in p]]
    checked = inv(environ, "run", "-t", target, "--", " && ".join(f"test -e {shlex.quote(p)}" for p in paths),
                  check=False)
    assert checked.returncode == 0, paths
    text = " ".join(inv(environ, "run", "-t", target, "--", f"cat {VSCODE}/*.json").stdout.split()).lower()
    assert "password" not in text


def test_gdb_with_the_attach_entrys_program_backtraces_a_live_backend(environ):
    target = "debian12-pg15-active"
    program = vscode_files(environ, target)["settings.json"]["atelier.postgres"]
    script = ("psql -XAtq -c 'select pg_sleep(60)' >/dev/null 2>&1 & sleeper=$!; "
              "for i in $(seq 50); do pid=$(psql -XAtq -c \"select pid from pg_stat_activity "
              "where query like 'select pg_sleep%' and pid <> pg_backend_pid()\"); [ -n \"$pid\" ] && break; "
              "sleep 0.2; done; "
              f"gdb -batch -nx -ex bt {shlex.quote(program)} -p \"$pid\" 2>&1; kill $sleeper")
    out = inv(environ, "run", "-t", target, "--", script).stdout
    assert "PostgresMain" in out, out


def test_a_changed_vscode_folder_survives_down_up_and_recreation(environ, container):
    target = "debian12-pg15-standalone"
    inv(environ, "run", "-t", target, "--", f"echo '{{\"mine\": true}}' > {VSCODE}/settings.json")
    inv(environ, "down")
    inv(environ, "up", "--profile", "pair")
    assert vscode_files(environ, target)["settings.json"] == {"mine": True}
    container(target).remove(force=True)  # recreated by the next up, volumes kept
    inv(environ, "up", "--profile", "pair")
    assert vscode_files(environ, target)["settings.json"] == {"mine": True}
    # A workspace without the folder gets it again at the next start.
    inv(environ, "run", "-t", target, "--", f"rm -rf {VSCODE}")
    container(target).restart()
    inv(environ, "up", "--profile", "pair")
    assert vscode_files(environ, target)["settings.json"]["editor.rulers"] == [80]


def test_inv_vscode_prints_the_host_folder_and_code_command(environ):
    one = inv(environ, "vscode", "-t", "debian12-pg15-active").stdout.splitlines()
    assert "Include " in one[0] and "ssh_config" in one[0]
    assert one[1:] == ["host:   debian12-pg15-active", "folder: /var/lib/postgresql/workspace",
                       "open:   code --remote ssh-remote+debian12-pg15-active /var/lib/postgresql/workspace"]
    many = inv(environ, "vscode", "-t", "*-standby").stdout.splitlines()[1:]
    assert [line.split()[0] for line in many] == ["debian12-pg15-standby", "debian13-pg17-standby"]
    init = inv(environ, "vscode", "-t", "debian12-init", check=False)
    assert init.returncode == 1 and "no server among them" in init.stderr


def test_git_push_to_a_fork_with_a_key_that_exists_only_in_the_hosts_agent(environ, tmp_path):
    """A bare repository in another container plays the user's fork: its
    authorized key is one that lives only in an ssh-agent on this host."""
    fork_host, pusher = "debian13-pg17-active", "debian12-pg15-active"
    key = tmp_path / "fork_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    agent_sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_sock)], stdout=subprocess.DEVNULL)
    try:
        assert wait_for(agent_sock.exists, timeout=10)
        with_agent = {**environ, "SSH_AUTH_SOCK": str(agent_sock)}
        subprocess.run(["ssh-add", "-q", str(key)], env={**os.environ, "SSH_AUTH_SOCK": str(agent_sock)},
                       check=True)
        key.unlink()  # from here on the key exists only in the agent
        public = (tmp_path / "fork_key.pub").read_text().strip()
        inv(environ, "run", "-t", fork_host, "--",
            f"set -e; install -d -m 700 ~/.ssh; echo {shlex.quote(public)} >> ~/.ssh/authorized_keys; "
            "rm -rf ~/fork.git; git init -q --bare -b main ~/fork.git")
        commit = ("set -e; rm -rf /tmp/mine; git init -q -b main /tmp/mine; cd /tmp/mine; echo x > f; git add f; "
                  "git -c user.name=t -c user.email=t@t commit -qm mine; "
                  "GIT_SSH_COMMAND='ssh -o StrictHostKeyChecking=accept-new -o BatchMode=yes' "
                  f"git push -q postgres@{fork_host}:fork.git main")
        refused = inv(environ, "run", "-t", pusher, "--", commit, check=False)
        assert refused.returncode != 0 and "Permission denied" in refused.stdout + refused.stderr
        inv(with_agent, "run", "--agent", "-t", pusher, "--", commit)
        assert inv(environ, "run", "-t", fork_host, "--", "git -C ~/fork.git log --format=%s main").stdout.strip() \
            == "mine"
        absent = inv({**environ, "SSH_AUTH_SOCK": ""}, "run", "--agent", "-t", pusher, "--", "true")
        assert "no SSH agent runs here" in absent.stderr and len(absent.stderr.strip().splitlines()) == 1
    finally:
        agent.terminate()
    config = inv(environ, "ssh-config").stdout
    assert "ForwardAgent yes" in (Path(environ["ATELIER_STATE_DIR"]) / "ssh_config").read_text() + config
