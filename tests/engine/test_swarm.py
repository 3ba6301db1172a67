"""Several engines in one swarm, for real: a lab of dockerds in network
namespaces of their own (tests/swarm_lab.py) forms a 3-node Swarm on this
machine, plus a fourth engine outside it. The default profile is spread over
the three (ATELIER_PLACEMENT=spread): the services on n1, debian12's init,
active and standalone on n2, its standby on n3, all on one attachable VXLAN
overlay. What is checked is what the engines and PostgreSQL say.

The machine's own engine builds the images (cached) and streams them to the
nodes; it never joins the swarm and is never restarted. The lab's finalizer
tears everything down and fails the module if anything is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import swarm_lab
from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.core.settings import load_settings
from atelier.engine.client import Engine
from atelier.ssh.session import Session
from helpers import ENGINE, inv, project_settings, wait_for

pytestmark = pytest.mark.engine

PROJECT = "ateliertest-swarm"
NODES = swarm_lab.nodes_of(4)  # n1-n3 in the swarm, n4 outside it
ENTRY = NODES[0].address  # HAProxy's port is published on n1's address on the lab's link
IMAGES = ("atelier-haproxy", "atelier-apache2", "atelier-squid", "atelier-debian12-init", "atelier-debian12-pg15")


def nodes_setting(*nodes) -> str:
    return ",".join(f"{n.name.removeprefix('atl-')}={n.url}" for n in nodes)


def settings_of(tmp: Path, project: str = PROJECT, subnet: str = "172.28", nodes=NODES[:3], **extra) -> dict:
    return {**project_settings(project, subnet, 29000), "ATELIER_BIND_ADDRESS": ENTRY,
            "ATELIER_NODES": nodes_setting(*nodes), "ATELIER_PLACEMENT": "spread",
            "ATELIER_STATE_DIR": str(tmp / project), **extra}


def cli(node, *args) -> str:
    return subprocess.run(["docker", "-H", node.url, *args], capture_output=True, text=True, check=True).stdout


def host_engine_state() -> tuple:
    info = ENGINE.client.info()
    return info["Swarm"]["LocalNodeState"], Path("/var/run/docker.pid").read_text().strip()


@pytest.fixture(scope="module")
def lab():
    if swarm_lab.netns_exists(swarm_lab.HUB):  # what an interrupted run left
        swarm_lab.down()
    before = host_engine_state()

    def interrupted(signum, frame):
        raise KeyboardInterrupt  # pytest then runs this finalizer, as on Ctrl-C

    previous = signal.signal(signal.SIGTERM, interrupted)  # a CI timeout's TERM tears the lab down too
    made = swarm_lab.up(4, joined=3)
    try:
        yield made
    finally:
        signal.signal(signal.SIGTERM, previous)
        swarm_lab.down()
        assert swarm_lab.leftovers() == []
        assert host_engine_state() == before  # not a swarm member, not restarted


def one_line_failure(run) -> str:
    assert run.returncode == 1, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    return lines[0]


def project_traces(node, project: str) -> list[str]:
    """What a project made on a node: containers, volumes, its network."""
    label = f"atelier.project={project}"
    found = cli(node, "ps", "-aq", "--filter", f"label={label}").split()
    found += cli(node, "volume", "ls", "-q", "--filter", f"label={label}").split()
    found += [n for n in cli(node, "network", "ls", "--format", "{{.Name}}").split() if n == project]
    return found


# ---- bad input: one line each, nothing made ----------------------------------------------------

def test_a_node_outside_the_swarm_is_named(lab, tmp_path):
    values = settings_of(tmp_path, nodes=(NODES[0], NODES[3]))
    line = one_line_failure(inv(values, "up", check=False))
    assert line == (f"atelier: node n4 ({NODES[3].url}) is not in a swarm (its swarm is inactive): join it to the "
                    "others' swarm (`docker swarm join-token worker` on the manager), or leave it out of ATELIER_NODES")


def test_two_managers_are_refused(lab, tmp_path):
    cli(NODES[0], "node", "promote", NODES[1].name)
    try:
        assert wait_for(lambda: cli(NODES[1], "info", "--format", "{{.Swarm.ControlAvailable}}").strip() == "true")
        line = one_line_failure(inv(settings_of(tmp_path), "up", check=False))
        assert line.startswith("atelier: ATELIER_NODES names two managers (n1, n2); a swarm of two managers stops")
    finally:
        cli(NODES[0], "node", "demote", NODES[1].name)
    assert wait_for(lambda: cli(NODES[1], "info", "--format", "{{.Swarm.ControlAvailable}}").strip() == "false")


def test_an_unreachable_node_stops_up_before_anything_is_made(lab, tmp_path):
    values = settings_of(tmp_path, project="ateliertest-swarmx", nodes=NODES[:2])
    values["ATELIER_NODES"] += f",n3=unix://{swarm_lab.RUN}/gone.sock"
    line = one_line_failure(inv(values, "up", check=False))
    assert line.startswith(f"atelier: no Docker engine answers at unix://{swarm_lab.RUN}/gone.sock "
                           "(from ATELIER_NODES, node n3)")
    for node in NODES[:2]:
        assert project_traces(node, "ateliertest-swarmx") == []


def test_a_bogus_placement_is_one_line(lab, tmp_path):
    line = one_line_failure(inv(settings_of(tmp_path, ATELIER_PLACEMENT="bogus"), "nodes", check=False))
    assert line.startswith("atelier: ATELIER_PLACEMENT=bogus is not a placement; valid: group")


# ---- the default profile spread over three nodes ------------------------------------------------

def image_ids(node) -> dict[str, str]:
    out = {}
    for line in cli(node, "images", "--no-trunc", "--format", "{{.Repository}} {{.ID}}").splitlines():
        name, image_id = line.split()
        out[name] = image_id
    return out


def host_ids() -> dict[str, str]:
    return {name: ENGINE.client.images.get(name).id for name in IMAGES}


@pytest.fixture(scope="module")
def spread(lab, tmp_path_factory):
    values = settings_of(tmp_path_factory.mktemp("swarm"))
    if "atelier-squid" in image_ids(NODES[0]):
        cli(NODES[0], "rmi", "atelier-squid")  # one image that must stream, whatever the cache holds
    ours = host_ids()
    lacking = {(node.name, name) for node in NODES[:3] for name in IMAGES if image_ids(node).get(name) != ours[name]}
    inv(values, "build")
    up = inv(values, "up")
    yield values, up.stdout, lacking
    inv(values, "down", "--volumes", "--yes", check=False)


def where(values) -> dict[str, str]:
    """Container name -> node, as the nodes' engines say."""
    out = {}
    for node in NODES[:3]:
        for line in cli(node, "ps", "--filter", f"label=atelier.project={values['ATELIER_PROJECT']}",
                        "--format", '{{.Label "atelier.name"}}').split():
            out[line] = node.name.removeprefix("atl-")
    return out


def test_each_node_gets_only_the_images_it_lacks(spread):
    values, said, lacking = spread
    streamed = set()
    for line in said.splitlines():
        if line.startswith("streaming ") and " to " in line and line.endswith("(docker save | docker load)"):
            images, nodes = line.removeprefix("streaming ").split(" (")[0].split(" to ")
            streamed |= {(f"atl-{n}", i) for i in images.split(", ") for n in nodes.split(", ")}
    assert ("atl-n1", "atelier-squid") in streamed
    assert streamed <= lacking, streamed - lacking
    ours = host_ids()
    placed = where(values)
    model = Environment(load_settings(environ=values), select("default"))
    for name, node in placed.items():
        image = model.container(name).image.name
        assert image_ids(NODES[int(node[1:]) - 1])[image] == ours[image], (name, node)
    again = inv(values, "up")
    assert "streaming" not in again.stdout


def test_containers_run_where_placement_says(spread):
    values, _, _ = spread
    placed = where(values)
    assert {placed[n] for n in ("haproxy", "apache2", "squid")} == {"n1"}
    assert placed["debian12-init"] == placed["debian12-pg15-active"] == placed["debian12-pg15-standalone"]
    assert placed["debian12-pg15-standby"] not in (placed["debian12-pg15-active"], "n1")
    recorded = json.loads((Path(values["ATELIER_STATE_DIR"]) / "placement.json").read_text())
    assert recorded == placed
    status = inv(values, "status").stdout.splitlines()
    assert status[0].split()[:6] == ["name", "role", "os", "major", "address", "node"]
    assert {line.split()[0]: line.split()[5] for line in status[1:]} == placed
    nodes = {line.split()[0]: line.split() for line in inv(values, "nodes").stdout.splitlines()[1:]}
    assert [nodes[n][2:4] for n in ("n1", "n2", "n3")] == [["yes", "manager"], ["yes", "worker"], ["yes", "worker"]]
    manager = ENGINE.client.__class__(base_url=NODES[0].url)
    try:
        network = manager.networks.get(PROJECT)
        assert network.attrs["Driver"] == "overlay" and network.attrs["Attachable"] is True
        assert network.attrs["IPAM"]["Config"][0]["Subnet"] == "172.28.0.0/16"
    finally:
        manager.close()


def session_of(values) -> Session:
    settings = load_settings(environ=values)
    return Session(settings, Engine.chosen(nodes=settings.nodes))


def sql(session, target: str, query: str, db: str = "postgres") -> str:
    return session.context(target, "postgres").run(f"psql -d {db} -XAtqc \"{query}\"", hide=True,
                                                    in_stream=False).stdout.strip()


def test_the_standby_streams_from_a_primary_on_another_node(spread):
    values, _, _ = spread
    placed = where(values)
    assert placed["debian12-pg15-active"] != placed["debian12-pg15-standby"]
    session = session_of(values)
    try:
        rows = sql(session, "debian12-pg15-active", "select client_addr, state from pg_stat_replication")
        standby = session.matrix.container("debian12-pg15-standby").address
        assert rows == f"{standby}|streaming"
        sql(session, "debian12-pg15-active", "create table crossing (n int); insert into crossing values (42)")
        assert wait_for(lambda: sql(session, "debian12-pg15-standby", "select n from crossing") == "42", 20)
    finally:
        session.close()


def test_inv_run_and_ssh_reach_every_server_through_the_first_node(spread):
    values, _, _ = spread
    run = inv(values, "run", "-t", "debian12-*", "--", "hostname")
    assert sorted(line.split()[-1] for line in run.stdout.splitlines() if "|" in line) == sorted(
        ["debian12-init", "debian12-pg15-active", "debian12-pg15-standalone", "debian12-pg15-standby"])
    config = os.path.join(values["ATELIER_STATE_DIR"], "ssh_config")
    assert f"Port 29022" in Path(config).read_text() and ENTRY in Path(config).read_text()
    done = subprocess.run(["ssh", "-F", config, "-oBatchMode=yes", "debian12-pg15-standby", "hostname"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "debian12-pg15-standby", done.stderr


def drill(values, *args) -> dict:
    run = inv(values, "db.drill", "partition", "-t", "debian12-pg15-*", "--json", *args, check=False)
    assert run.returncode == 0, (run.stdout, run.stderr)
    return json.loads(run.stdout)


def answer_over_ssh(values, target: str, query: str, seconds: float = 30) -> str:
    """A query on `target` through a fresh SSH path. After a node's link
    comes back, the swarm's gossip may take seconds to restore the overlay's
    paths to it (seen once: the jump host's connect failed 2 s after the
    drill's own rejoin had worked), so a refused connection is tried again."""
    deadline = time.monotonic() + seconds
    while True:
        session = session_of(values)
        try:
            return sql(session, target, query)
        except AtelierError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
        finally:
            session.close()


def check_after_partition(values, report: dict) -> None:
    """PostgreSQL's word: the new primary serves and holds every commit;
    the old one streams from it again, back on the overlay."""
    new, old = report["new_primary"], report["old_primary"]
    assert answer_over_ssh(values, old, "select pg_is_in_recovery()") == "t"
    session = session_of(values)
    try:
        assert sql(session, new, "select pg_is_in_recovery()") == "f"
        held = int(sql(session, new, f"select count(*) from atelier_drill where run = '{report['run']}'", "experdb"))
        assert held >= report["committed"] and report["present"] == report["committed"] - report["lost_count"]
        address = session.matrix.container(old).address
        assert sql(session, new, "select host(client_addr) || ' ' || state from pg_stat_replication") == \
            f"{address} streaming"
    finally:
        session.close()


def test_a_partitioned_primary_fails_over_and_rejoins(spread):
    values, _, _ = spread
    report = drill(values, "--sync")
    assert (report["old_primary"], report["new_primary"]) == ("debian12-pg15-active", "debian12-pg15-standby")
    assert report["lost_count"] == 0 and report["committed"] > 100  # synchronous: nothing may be lost
    assert "disconnected from network ateliertest-swarm through node n2's engine" in report["cut"]
    assert report["cut_to_write"] is not None and report["rejoined"].endswith("streams from debian12-pg15-standby again")
    check_after_partition(values, report)


def test_a_whole_node_cut_off_fails_over_and_rejoins(spread):
    values, _, _ = spread
    node = where(values)["debian12-pg15-standby"]  # the primary's node since the drill before
    link = f"ip -n atl-{node} link set eth0"
    report = drill(values, "--cut", f"{link} down", "--heal", f"{link} up")
    assert (report["old_primary"], report["new_primary"]) == ("debian12-pg15-standby", "debian12-pg15-active")
    assert report["committed"] > 100 and report["cut_to_write"] is not None
    check_after_partition(values, report)


def test_down_with_a_node_left_out_refuses_and_removes_nothing(spread):
    values, _, _ = spread
    before = where(values)
    line = one_line_failure(inv({**values, "ATELIER_NODES": nodes_setting(NODES[0])}, "down", "--volumes", "--yes",
                                check=False))
    assert line.startswith("atelier: containers were placed on node(s) n2, n3, which ATELIER_NODES no longer names")
    assert where(values) == before


def test_down_keeps_each_nodes_volumes_and_up_brings_everything_back_where_it_was(spread):
    values, _, _ = spread
    before = where(values)
    volumes = {n.name: set(cli(n, "volume", "ls", "-q", "--filter", f"label=atelier.project={PROJECT}").split())
               for n in NODES[:3]}
    assert all(volumes.values())
    said = inv(values, "down").stdout
    assert "volumes kept on their 3 nodes" in said
    assert {n.name: set(cli(n, "volume", "ls", "-q", "--filter", f"label=atelier.project={PROJECT}").split())
            for n in NODES[:3]} == volumes
    inv(values, "up")
    assert where(values) == before
    session = session_of(values)
    try:
        assert sql(session, "debian12-pg15-standby", "select n from crossing") == "42"  # its data came back with it
    finally:
        session.close()
    gone = inv(values, "down", "--volumes", "--yes").stdout
    assert "on 3 nodes" in gone
    for node in NODES[:3]:
        assert project_traces(node, PROJECT) == []
    assert not (Path(values["ATELIER_STATE_DIR"]) / "placement.json").exists()


# ---- one node is a swarm too ------------------------------------------------------------------

def test_one_node_of_its_own_swarm_runs_the_profile_on_an_attachable_overlay(lab, tmp_path):
    """n4, outside the others' swarm, made a single-node swarm: the overlay
    needs no second node."""
    alone = NODES[3]
    cli(alone, "swarm", "init", "--advertise-addr", alone.address, "--listen-addr", f"{alone.address}:2377",
        "--default-addr-pool", "10.220.0.0/16")
    values = settings_of(tmp_path, project="ateliertest-swarm1", subnet="10.77", nodes=(alone,),
                         ATELIER_PLACEMENT="group", ATELIER_BIND_ADDRESS=alone.address)
    try:
        inv(values, "up")
        found = cli(alone, "ps", "--filter", "label=atelier.project=ateliertest-swarm1", "--format", "{{.Names}}")
        assert len(found.split()) == 7
        manager = ENGINE.client.__class__(base_url=alone.url)
        try:
            network = manager.networks.get("ateliertest-swarm1")
            ipam = network.attrs["IPAM"]["Config"][0]
            assert network.attrs["Driver"] == "overlay" and network.attrs["Attachable"] is True
            assert (ipam["Subnet"], ipam["IPRange"]) == ("10.77.0.0/16", "10.77.254.0/24")
        finally:
            manager.close()
        rows = json.loads(inv(values, "db.replication", "-t", "debian12-pg15-active", "--json").stdout)
        assert [(r["standby"], r["state"]) for r in rows] == [("debian12-pg15-standby", "streaming")]
        run = inv(values, "run", "-t", "debian12-*", "--", "hostname")
        assert len([line for line in run.stdout.splitlines() if "|" in line]) == 4
    finally:
        inv(values, "down", "--volumes", "--yes", check=False)
