"""The project network as an attachable overlay (ATELIER_NETWORK=overlay),
on a single-node swarm of this machine's engine: the debian profile comes
up with its static addresses, the standbys stream, and SSH goes through
HAProxy and the init containers, all on the overlay.

It needs the engine to be a swarm manager. With ATELIER_TEST_SWARM=1 the
module makes this engine a single-node swarm for its run and leaves the
swarm at the end (unless the engine was a manager already); without it, and
on an engine that is not a manager, the module is skipped and says why.

Run it alone (`.ci/run` does not): in the full suite on this 2-core machine,
with two other environments up, its standbys' systemd did not start (all
root containers share one fs.inotify.max_user_instances, 128 here), and the
suite's shared replication environment failed after it."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from atelier.engine.up import check_swarm, down
from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.core.settings import load_settings
from helpers import ENGINE, inv, project_settings, wait_for

pytestmark = pytest.mark.engine

PROJECT = "ateliertest-overlay"
TEST_ENV = {**project_settings(PROJECT, "172.16", 26000), "ATELIER_NETWORK": "overlay"}


def is_manager(info: dict) -> bool:
    try:
        check_swarm(info)
        return True
    except AtelierError:
        return False


@pytest.fixture(scope="module")
def environ(tmp_path_factory):
    client = ENGINE.client
    joined = False
    if not is_manager(client.info()):
        if os.environ.get("ATELIER_TEST_SWARM") != "1":
            pytest.skip("the engine is not a swarm manager; ATELIER_TEST_SWARM=1 makes it a single-node swarm "
                        "for this module")
        client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        joined = True
    values = {**TEST_ENV, "ATELIER_STATE_DIR": str(tmp_path_factory.mktemp("overlay-state"))}
    try:
        inv(values, "build", "--profile", "debian")
        inv(values, "up", "--profile", "debian")
        yield values
    finally:
        down(ENGINE, Environment(load_settings(environ=values), select("debian")), remove_volumes=True,
                    say=lambda _: None)
        if joined:
            client.swarm.leave(force=True)
            try:  # what swarm init made, and leaving keeps
                client.networks.get("docker_gwbridge").remove()
            except Exception:
                pass


def test_the_network_is_an_attachable_overlay_with_the_static_plan(environ):
    network = ENGINE.client.networks.get(PROJECT)
    assert network.attrs["Driver"] == "overlay" and network.attrs["Attachable"] is True
    ipam = network.attrs["IPAM"]["Config"][0]
    assert ipam["Subnet"] == "172.16.0.0/16" and ipam["IPRange"] == "172.16.254.0/24"
    status = inv(environ, "status").stdout
    standby = next(line.split() for line in status.splitlines() if line.startswith("debian13-pg17-standby"))
    assert standby[4] == "172.16.13.47"  # the static plan, as on a bridge


def test_the_standbys_stream_over_the_overlay(environ):
    for os_name, major in (("debian12", 15), ("debian13", 17), ("debian14", 18)):
        active, standby = f"{os_name}-pg{major}-active", f"{os_name}-pg{major}-standby"
        inv(environ, "run", "-t", active, "--", "psql -XAtc 'create table if not exists o (n int); "
                                                "insert into o values (1)'")
        assert wait_for(lambda: inv(environ, "run", "-t", standby, "--", "psql -XAtc 'select count(*) from o'",
                                    check=False).stdout.strip() == "1", timeout=30)
        rows = json.loads(inv(environ, "db.replication", "-t", active, "--json").stdout)
        assert [(r["standby"], r["state"]) for r in rows] == [(standby, "streaming")]


def test_ssh_reaches_every_server_through_haproxy_on_the_overlay(environ):
    run = inv(environ, "run", "-t", "*-pg*", "--", "hostname")
    names = sorted(line.split()[-1] for line in run.stdout.splitlines())
    assert len(names) == 9 and all("-pg" in n for n in names)
    # What it went through: HAProxy's published port on this host, as on a bridge.
    done = subprocess.run(["ssh", "-F", os.path.join(environ["ATELIER_STATE_DIR"], "ssh_config"),
                           "-oBatchMode=yes", "debian12-pg15-active", "hostname"], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "debian12-pg15-active", done.stderr
