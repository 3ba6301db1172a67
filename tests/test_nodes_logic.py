"""Several engines in one swarm, the pure parts: ATELIER_NODES and
ATELIER_PLACEMENT, placement, the swarm check and which images stream where."""

from __future__ import annotations

from pathlib import Path

import pytest

from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.core.placement import place
from atelier.core.settings import parse_settings
from atelier.core.state import remember_placements
from atelier.engine.client import Engine
from atelier.engine.host import EngineHost
from atelier.engine.nodes import check_swarm_nodes, missing_images
from atelier.engine.up import check_placed_nodes, placement

NODES = "n1=unix:///run/n1.sock,n2=ssh://me@build2,n3=tcp://10.0.0.3:2376"


def settings(**values):
    return parse_settings({"ATELIER_NODES": NODES, **values}, Path("."))


def test_nodes_are_parsed_in_order_and_imply_an_overlay():
    s = settings()
    assert s.nodes == (("n1", "unix:///run/n1.sock"), ("n2", "ssh://me@build2"), ("n3", "tcp://10.0.0.3:2376"))
    assert s.network_driver == "overlay" and s.placement == "group"
    assert parse_settings({}, Path(".")).nodes == ()


@pytest.mark.parametrize("raw, said", [
    ("n1", "is not name=engine"),
    ("n1=build1", "is not name=engine"),
    ("N1=unix:///a", "is not name=engine"),
    ("n1=unix:///a,n1=unix:///b", "names n1 twice"),
    ("n1=unix:///a,n2=unix:///a", "names unix:///a twice"),
])
def test_bad_nodes_get_one_line(raw, said):
    with pytest.raises(AtelierError, match=said):
        parse_settings({"ATELIER_NODES": raw}, Path("."))


def test_a_bridge_cannot_span_nodes():
    with pytest.raises(AtelierError, match="ATELIER_NETWORK=bridge cannot span the nodes of ATELIER_NODES; valid with nodes: overlay"):
        settings(ATELIER_NETWORK="bridge")


def test_a_bogus_placement_names_the_valid_ones():
    with pytest.raises(AtelierError) as raised:
        settings(ATELIER_PLACEMENT="bogus")
    assert str(raised.value).startswith("ATELIER_PLACEMENT=bogus is not a placement; valid: group")
    assert "spread" in str(raised.value)


def env_of(profile="default", **values):
    return Environment(settings(**values), select(profile))


def test_group_placement_keeps_an_os_group_together_and_services_on_the_first_node():
    placed = place(env_of(), ["n1", "n2", "n3"], "group", {}, {})
    assert {placed[n] for n in ("haproxy", "apache2", "squid")} == {"n1"}
    group = {n: v for n, v in placed.items() if n.startswith("debian12-")}
    assert set(group.values()) == {"n2"}  # the least loaded node: n1 holds the services


def test_spread_puts_each_standby_on_another_node_than_its_primary():
    env = env_of("debian", ATELIER_PLACEMENT="spread")
    placed = place(env, ["n1", "n2", "n3"], "spread", {}, {})
    for pair in env.pairs:
        active, standby = (placed[m.name] for m in pair.members)
        assert active != standby, pair.name
        assert placed[f"{pair.name.split('-')[0]}-init"] == active  # the init stays with its group
    assert len(set(placed.values())) == 3


def test_one_node_takes_everything():
    placed = place(env_of("debian"), ["n1"], "spread", {}, {})
    assert set(placed.values()) == {"n1"}


def test_placement_is_stable_when_nodes_and_profiles_are_added():
    before = place(env_of(), ["n1", "n2", "n3"], "spread", {}, {})
    after = place(env_of("debian"), ["n1", "n2", "n3", "n4"], "spread", {}, before)
    assert {n: after[n] for n in before} == before
    assert "n4" in after.values()  # new groups go to the new, empty node first


def test_where_a_container_runs_wins_over_the_record_and_gone_nodes_are_forgotten():
    placed = place(env_of(), ["n1", "n2"], "group", {"debian12-init": "n1"}, {"debian12-init": "n2",
                                                                                  "haproxy": "n9"})
    assert placed["debian12-init"] == "n1" and placed["debian12-pg15-active"] == "n1"
    assert placed["haproxy"] == "n1"


class Named:
    def __init__(self, url):
        self.host = EngineHost(url, "test")


def infos(**states):
    """node -> (LocalNodeState, is manager, NodeID)"""
    return {n: {"Swarm": {"LocalNodeState": s, "ControlAvailable": m, "NodeID": i}} for n, (s, m, i) in states.items()}


NAMED = {n: Named(f"unix:///run/{n}.sock") for n in ("n1", "n2", "n3")}


def test_the_swarm_check_finds_the_manager():
    given = infos(n1=("active", False, "a"), n2=("active", True, "b"), n3=("active", False, "c"))
    assert check_swarm_nodes(NAMED, given, {"a", "b", "c"}) == "n2"


@pytest.mark.parametrize("given, members, said", [
    (infos(n1=("active", True, "a"), n2=("inactive", False, "")), None,
     "node n2 (unix:///run/n2.sock) is not in a swarm (its swarm is inactive)"),
    (infos(n1=("active", False, "a"), n2=("active", False, "b")), None, "no node of ATELIER_NODES is a swarm manager"),
    (infos(n1=("active", True, "a"), n2=("active", True, "b")), None, "ATELIER_NODES names two managers (n1, n2)"),
    (infos(n1=("active", True, "a"), n2=("active", False, "z")), {"a", "b"},
     "node n2 (unix:///run/n2.sock) is in another swarm than n1's"),
])
def test_what_is_not_one_swarm_gets_one_line(given, members, said):
    with pytest.raises(AtelierError, match=said.replace("(", r"\(").replace(")", r"\)")):
        check_swarm_nodes(NAMED, given, members)


def test_three_managers_are_a_swarm():
    given = infos(n1=("active", True, "a"), n2=("active", True, "b"), n3=("active", True, "c"))
    assert check_swarm_nodes(NAMED, given, {"a", "b", "c"}) == "n1"


def test_only_missing_or_stale_images_stream_and_nodes_missing_the_same_share_one_save():
    source = {"init": "sha:i", "pg": "sha:p", "haproxy": "sha:h"}
    nodes = {"n1": {"haproxy": "sha:h"}, "n2": {"init": "sha:old"}, "n3": {}}
    needed = {"n1": {"haproxy"}, "n2": {"init", "pg"}, "n3": {"init", "pg"}}
    transfers = missing_images(source, nodes, needed)
    assert [(t.images, t.nodes) for t in transfers] == [(("init", "pg"), ("n2", "n3"))]
    assert missing_images(source, {"n1": {"haproxy": "sha:h"}}, {"n1": {"haproxy"}}) == []


def test_the_entry_is_on_the_first_node():
    engine = Engine.chosen(environ={"DOCKER_HOST": "unix:///run/build.sock"},
                           nodes=(("n1", "ssh://me@box1"), ("n2", "unix:///run/n2.sock")))
    assert engine.host.url == "unix:///run/build.sock"
    assert engine.entry_host.url == "ssh://me@box1" and engine.entry_host.is_remote
    assert list(engine.runners) == ["n1", "n2"]
    single = Engine.chosen(environ={"DOCKER_HOST": "unix:///run/build.sock"})
    assert single.entry_host is single.host and list(single.runners) == [""]


def test_up_refuses_containers_placed_on_a_node_no_longer_listed(tmp_path):
    s = parse_settings({"ATELIER_NODES": "n1=unix:///run/n1.sock", "ATELIER_STATE_DIR": str(tmp_path)}, Path("."))
    env = Environment(s, select("default"))
    remember_placements(tmp_path, {"debian12-pg15-standby": "n3", "rocky8-init": "n9"})
    engine = Engine.chosen(environ={"DOCKER_HOST": "unix:///run/build.sock"}, nodes=s.nodes)
    with pytest.raises(AtelierError, match=r"placed on node\(s\) n3, which ATELIER_NODES no longer names"):
        placement(engine, env, {})


def test_spread_puts_one_etcd_member_per_node():
    env = env_of(ATELIER_HA="patroni", ATELIER_PLACEMENT="spread")
    placed = place(env, ["n1", "n2", "n3"], "spread", {}, {})
    assert [placed[f"etcd{i}"] for i in (1, 2, 3)] == ["n1", "n2", "n3"]
    grouped = place(env, ["n1", "n2", "n3"], "group", {}, {})
    assert {grouped[f"etcd{i}"] for i in (1, 2, 3)} == {"n1"}


def test_down_refuses_when_any_recorded_node_is_gone():
    engine = Engine.chosen(environ={"DOCKER_HOST": "unix:///run/build.sock"}, nodes=(("n1", "unix:///run/n1.sock"),))
    check_placed_nodes(engine, {"haproxy": "n1"})
    with pytest.raises(AtelierError, match=r"placed on node\(s\) n2, n9, which"):
        check_placed_nodes(engine, {"haproxy": "n1", "a": "n9", "b": "n2"})
    check_placed_nodes(Engine.chosen(environ={"DOCKER_HOST": "unix:///run/build.sock"}), {"a": "n9"})  # one engine
