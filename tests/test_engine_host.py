"""Choosing the engine and reaching a remote one: the pure parts."""

from __future__ import annotations

import hashlib
import json

import pytest

from atelier.engine import host as engine_host
from atelier.core.model import overlay_ip_range
from atelier.engine.up import check_swarm
from atelier.engine.host import EngineHost, SshAddress, choose, parse_ssh_url
from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.core.settings import Settings, parse_settings


@pytest.mark.parametrize("environ, context, atelier, url, source", [
    ({"DOCKER_HOST": "ssh://a"}, ("ctx", "ssh://b"), "ssh://c", "ssh://a", "DOCKER_HOST"),
    ({}, ("ctx", "ssh://b"), "ssh://c", "ssh://b", "docker context ctx"),
    ({}, None, "ssh://c", "ssh://c", "ATELIER_DOCKER_HOST"),
    ({}, None, "", "unix:///var/run/docker.sock", "default"),
    ({"DOCKER_HOST": ""}, ("ctx", ""), "", "unix:///var/run/docker.sock", "default"),
])
def test_the_engine_comes_from_docker_host_then_a_context_then_atelier_docker_host(environ, context, atelier,
                                                                                  url, source):
    assert choose(environ, context, atelier) == EngineHost(url, source)


@pytest.mark.parametrize("url, address", [
    ("ssh://box", SshAddress("box")),
    ("ssh://me@box:2222", SshAddress("box", "me", 2222)),
    ("ssh://me@10.0.0.5", SshAddress("10.0.0.5", "me")),
])
def test_ssh_urls(url, address):
    assert parse_ssh_url(url) == address


def test_ssh_address_as_ssh_arguments_jump_and_command():
    address = SshAddress("box", "me", 2222)
    assert address.args == ["-lme", "-p2222", "box"]
    assert address.jump == "me@box:2222"
    assert address.command == "ssh -p 2222 me@box"
    assert SshAddress("box").args == ["box"] and SshAddress("box").command == "ssh box"


@pytest.mark.parametrize("url, message", [
    ("ssh://", "is not an SSH engine address; write it as ssh://[user@]host[:port]"),
    ("ssh://box:port", "is not an SSH engine address"),
    ("ssh://box/path", "is not an SSH engine address"),
])
def test_bad_ssh_urls_are_one_line(url, message):
    with pytest.raises(AtelierError, match=message.replace("[", r"\[").replace("]", r"\]")):
        choose({}, None, url)


def test_an_unknown_scheme_is_one_line():
    with pytest.raises(AtelierError, match="ATELIER_DOCKER_HOST='box:2375' is not an engine address"):
        choose({}, None, "box:2375")


def test_the_docker_context_is_read_from_the_clis_own_files(tmp_path):
    name = "bigbox"
    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": {"docker": {"Host": "ssh://me@bigbox"}}}))
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": name}))
    environ = {"DOCKER_CONFIG": str(tmp_path)}
    assert engine_host.docker_context(environ) == (name, "ssh://me@bigbox")
    assert engine_host.docker_context({**environ, "DOCKER_CONTEXT": "default"}) is None
    with pytest.raises(AtelierError, match="docker context 'gone' does not exist"):
        engine_host.docker_context({**environ, "DOCKER_CONTEXT": "gone"})
    assert engine_host.docker_context({"DOCKER_CONFIG": str(tmp_path / "none")}) is None


def test_the_proxy_command_is_the_users_own_ssh_with_atelier_options():
    command = engine_host.proxy_command(SshAddress("box", "me", 2222), "127.0.0.1", 8022)
    assert "-oBatchMode=yes" in command and "-oControlMaster=auto" in command
    assert command.endswith("-W127.0.0.1:8022 -lme -p2222 box")


def test_forwards_use_a_connection_of_their_own():
    argv = engine_host.forward_argv(SshAddress("box"), [8080, 6432])
    assert "-oControlPath=none" in argv and "-oExitOnForwardFailure=yes" in argv
    assert argv[-3:] == ["-L127.0.0.1:8080:127.0.0.1:8080", "-L127.0.0.1:6432:127.0.0.1:6432", "box"]


def test_status_says_where_the_ports_are():
    settings = Settings(ssh_port=8022, http_port=8080, pgbouncer=True, pgbouncer_port=6432)
    assert engine_host.reach_line(settings, EngineHost("unix:///var/run/docker.sock", "default")) == \
        "ports on 127.0.0.1: ssh 8022, http 8080, pgbouncer 6432"
    assert engine_host.reach_line(settings, EngineHost("ssh://me@box", "DOCKER_HOST")) == (
        "engine ssh://me@box; ports on box's loopback: ssh 8022, http 8080, pgbouncer 6432; "
        "`inv forward` brings them to this machine's 127.0.0.1")
    exposed = Settings(bind_address="0.0.0.0")
    assert engine_host.reach_line(exposed, EngineHost("ssh://box", "DOCKER_HOST")) == \
        "engine ssh://box; ports on box's 0.0.0.0: ssh 8022, http 8080"


def test_the_generated_ssh_config_reaches_haproxy_through_the_engine_host(make_env):
    from atelier.render.ssh_config import ssh_config_text

    env = make_env(os="debian12", pg="15")
    local = ssh_config_text(env, ["debian12-pg15-active"])
    assert "ProxyCommand" not in local
    remote = ssh_config_text(env, ["debian12-pg15-active"], EngineHost("ssh://me@box:2222", "DOCKER_HOST"))
    entry = remote.split("\n\n")[1]
    assert "    HostName 127.0.0.1" in entry and "    ProxyCommand ssh -W %h:%p -lme -p2222 box" in entry


def test_atelier_network_is_bridge_or_overlay(tmp_path):
    assert parse_settings({"ATELIER_NETWORK": "overlay"}, tmp_path).network_driver == "overlay"
    assert parse_settings({}, tmp_path).network_driver == "bridge"
    with pytest.raises(AtelierError, match="ATELIER_NETWORK=macvlan is not a network driver atelier uses; "
                                           "valid: bridge, overlay"):
        parse_settings({"ATELIER_NETWORK": "macvlan"}, tmp_path)


def test_an_overlay_needs_a_swarm_manager():
    check_swarm({"Swarm": {"LocalNodeState": "active", "ControlAvailable": True}})
    with pytest.raises(AtelierError, match="needs the engine to be a swarm manager, and its swarm is inactive: "
                                           "`docker swarm init`"):
        check_swarm({"Swarm": {"LocalNodeState": "inactive"}})
    with pytest.raises(AtelierError, match=r"its swarm is active \(a worker\)"):
        check_swarm({"Swarm": {"LocalNodeState": "active", "ControlAvailable": False}})


def test_the_overlays_own_addresses_are_outside_every_static_one():
    env = Environment(Settings(subnet="172.30"), select("full"))
    dynamic = overlay_ip_range("172.30")
    assert dynamic == "172.30.254.0/24"
    assert not any(c.address.startswith("172.30.254.") for c in env.containers)
