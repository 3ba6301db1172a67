import io
import os
import stat
import threading

import paramiko
import pytest

from atelier.core.errors import AtelierError
from atelier.ssh.fanout import Prefixed
from atelier.ssh.session import explain
from atelier.ssh.targets import command_after_dashes, remote_command, resolve_targets
from atelier.core.state import ensure_keys, known_hosts_text
from atelier.render.compose import render_all
from atelier.render.runtime import runtime_files

NAMES = ["debian12-init", "debian13-init", "debian12-pg15-active", "debian13-pg17-active",
         "debian12-pg15-standalone", "debian12-pg15-standby", "debian13-pg17-standby"]


def test_targets_by_name_glob_and_list_in_model_order_without_repeats():
    assert resolve_targets("debian12-pg15-active", NAMES) == ["debian12-pg15-active"]
    assert resolve_targets("*-standby", NAMES) == ["debian12-pg15-standby", "debian13-pg17-standby"]
    assert resolve_targets("debian12-pg15-*,*-standby", NAMES) == [
        "debian12-pg15-active", "debian12-pg15-standalone", "debian12-pg15-standby", "debian13-pg17-standby"]
    assert resolve_targets("local", NAMES) == ["local"]


def test_unknown_target_names_the_nearest():
    with pytest.raises(AtelierError) as err:
        resolve_targets("debian12-pg15-activ", NAMES)
    assert "unknown target 'debian12-pg15-activ' (did you mean debian12-pg15-active" in str(err.value)
    with pytest.raises(AtelierError) as err:
        resolve_targets("*-standby", [])
    assert "run `inv up` first" in str(err.value)


def test_command_words():
    assert command_after_dashes(["inv", "run", "-t", "x", "--", "psql", "-c", "select 1"]) == \
        ["psql", "-c", "select 1"]
    assert command_after_dashes(["inv", "run"]) == []
    assert remote_command(["make && make check"]) == "make && make check"
    assert remote_command(["psql", "-c", "select 1"]) == "psql -c 'select 1'"


def test_prefixed_writes_whole_lines():
    out = io.StringIO()
    stream = Prefixed("a | ", out, threading.Lock())
    stream.write("one\ntw")
    assert out.getvalue() == "a | one\n"
    stream.write("o\n")
    stream.write("tail")
    stream.flush()
    assert out.getvalue() == "a | one\na | two\na | tail\n"


def test_keys_are_owner_only_and_stable(tmp_path):
    first = ensure_keys(tmp_path, "p")
    again = ensure_keys(tmp_path, "p")
    assert first == again
    assert first.client_public.startswith("ssh-ed25519 ") and first.client_public.endswith(" atelier-p")
    assert first.bastion_private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    for name in ("id_ed25519", "bastion_host_ed25519_key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    paramiko.Ed25519Key.from_private_key_file(str(first.client_key_path))


def test_known_hosts_pins_the_entry_port_and_each_container(settings):
    text = known_hosts_text(settings, {"debian12-pg15-active": "AAAAkey"})
    lines = text.splitlines()
    assert lines[0] == f"[127.0.0.1]:8022 {settings.keys.bastion_public}"
    assert lines[1] == "debian12-pg15-active ssh-ed25519 AAAAkey"


def test_public_key_and_bastion_key_go_in_at_start_never_to_review(make_env, tmp_path):
    env = make_env("debian")
    keys = env.settings.keys
    init = runtime_files(env, env.container("debian13-init"))
    server = runtime_files(env, env.container("debian12-pg15-active"))
    assert init["etc/ssh/ssh_host_ed25519_key"] == (keys.bastion_private.encode(), 0o600)
    assert "etc/ssh/ssh_host_ed25519_key" not in server
    assert server["etc/ssh/atelier_authorized_keys"][0].decode().strip() == keys.client_public
    review = render_all(env)
    assert not any(keys.bastion_private.encode() in content for content, _ in review.values())


def test_a_changed_host_key_says_what_changed_and_how_to_accept_it(settings):
    expected = paramiko.Ed25519Key.from_private_key_file(str(settings.keys.client_key_path))
    offered = paramiko.Ed25519Key.from_private_key(io.StringIO(settings.keys.bastion_private))
    error = explain(paramiko.BadHostKeyException("debian12-pg15-active", offered, expected),
                    "debian12-pg15-active", settings)
    assert str(error).startswith("host key of debian12-pg15-active changed: ")
    assert "SHA256:" in str(error) and "`inv hostkeys` reads every container's key again" in str(error)


def test_each_hop_failure_is_named(settings):
    assert "cannot reach HAProxy at 127.0.0.1:8022: connection refused" in str(
        explain(ConnectionRefusedError(), "HAProxy at 127.0.0.1:8022", settings, entry=True))
    assert "jump host could not reach debian12-pg15-active port 22" in str(
        explain(paramiko.ChannelException(2, "Connect failed"), "debian12-pg15-active", settings))
    assert "no init container answered" in str(
        explain(paramiko.SSHException("Error reading SSH protocol banner"), "HAProxy at x", settings, entry=True))


def test_container_hosts_forward_the_agent_in_the_ssh_config(make_env):
    from atelier.render.ssh_config import ssh_config_text

    env = make_env("debian")
    text = ssh_config_text(env, ["debian12-pg15-active"])
    block = text.split("Host debian12-pg15-active\n", 1)[1].split("\n\n", 1)[0]
    assert "ForwardAgent yes" in block
    entry = text.split(f"Host atelier-{env.project}-entry\n", 1)[1].split("\n\n", 1)[0]
    assert "HostName" in entry and "ForwardAgent" not in entry  # the jump host gets no agent
