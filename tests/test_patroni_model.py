"""ATELIER_HA=patroni in the model and in what atelier writes into
containers (etcd members, Patroni's configuration), and patronictl's view
parsed: pure, no engine."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from atelier.core.errors import AtelierError
from atelier.core.model import PATRONI_TIMINGS, Environment, select
from atelier.core.settings import parse_settings
from atelier.dba.patroni import ClusterView, parse_members
from atelier.render.runtime import runtime_files


@pytest.fixture
def patroni(settings):
    return Environment(dataclasses.replace(settings, ha="patroni", pgbouncer=True), select("debian"),
                       nofile_ceiling=20000)


def test_ha_and_etcd_members_are_checked_in_one_line():
    assert parse_settings({"ATELIER_HA": "patroni"}, Path(".")).patroni
    assert parse_settings({}, Path(".")).ha == "plain"
    with pytest.raises(AtelierError, match=r"^ATELIER_HA=bogus is not a failover mode atelier knows; valid: plain, "
                                           r"patroni$"):
        parse_settings({"ATELIER_HA": "bogus"}, Path("."))
    with pytest.raises(AtelierError, match=r"ATELIER_ETCD_MEMBERS=2 .*valid: 3 .*1 "):
        parse_settings({"ATELIER_ETCD_MEMBERS": "2"}, Path("."))


def test_patroni_adds_three_etcd_members_of_one_image_and_plain_none(settings, patroni):
    plain = Environment(settings, select("debian"), nofile_ceiling=20000)
    assert not plain.etcd_members and "atelier-etcd" not in [i.name for i in plain.images]
    members = patroni.etcd_members
    assert [m.name for m in members] == ["etcd1", "etcd2", "etcd3"]
    assert {m.image.name for m in members} == {"atelier-etcd"}
    assert [i.name for i in patroni.images].count("atelier-etcd") == 1
    assert all(not m.ports for m in members), "etcd is never published on the host"
    assert len({m.address for m in members}) == 3
    one = Environment(dataclasses.replace(patroni.settings, etcd_members=1), select("debian"), nofile_ceiling=20000)
    assert [m.name for m in one.etcd_members] == ["etcd1"]


def etcd_env(env, member) -> dict:
    text = runtime_files(env, member)["etc/atelier/etcd.env"][0].decode()
    return dict(line.split("=", 1) for line in text.splitlines())


def test_each_etcd_member_knows_itself_and_every_peer(patroni):
    values = [etcd_env(patroni, m) for m in patroni.etcd_members]
    assert [v["ETCD_NAME"] for v in values] == ["etcd1", "etcd2", "etcd3"]
    assert len({v["ETCD_INITIAL_CLUSTER"] for v in values}) == 1
    for member, v in zip(patroni.etcd_members, values):
        assert f"{member.name}=http://{member.address}:2380" in v["ETCD_INITIAL_CLUSTER"]
        assert v["ETCD_ADVERTISE_CLIENT_URLS"] == f"http://{member.address}:2379"


def patroni_config(env, name) -> dict:
    files = runtime_files(env, env.container(name))
    data, mode = files["etc/atelier/patroni.yml"]
    assert mode == 0o600
    return yaml.safe_load(data)


def test_each_member_of_a_pair_is_one_patroni_cluster_named_after_the_pair(patroni):
    active = patroni_config(patroni, "debian13-pg17-active")
    standby = patroni_config(patroni, "debian13-pg17-standby")
    assert active["scope"] == standby["scope"] == "debian13-pg17"
    assert active["namespace"] == standby["namespace"] == f"/atelier/{patroni.project}/"
    assert (active["name"], standby["name"]) == ("debian13-pg17-active", "debian13-pg17-standby")
    assert active["restapi"]["connect_address"] == f"{patroni.container('debian13-pg17-active').address}:8008"
    assert active["etcd3"]["hosts"] == ",".join(patroni.etcd_hosts)
    pg = active["postgresql"]
    assert pg["data_dir"] == "/var/lib/postgresql/17/main" and pg["bin_dir"] == "/usr/lib/postgresql/17/bin"
    assert pg["custom_conf"] == "/etc/postgresql/17/main/postgresql.conf"
    assert pg["config_dir"].startswith("/var/lib/postgresql/17/"), "Patroni's own conf lives in the data volume"
    assert pg["remove_data_directory_on_rewind_failure"] is False
    dcs = active["bootstrap"]["dcs"]
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert {k: dcs[k] for k in PATRONI_TIMINGS} == PATRONI_TIMINGS
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"], "Patroni's own rule"


def test_passwords_reach_patroni_only_through_its_0600_file(patroni):
    s = patroni.settings
    config = patroni_config(patroni, "debian12-pg15-active")
    assert config["postgresql"]["authentication"]["replication"]["password"] == s.replication_password
    assert config["postgresql"]["authentication"]["rewind"]["password"] == s.superuser_password
    assert config["restapi"]["authentication"]["password"] == s.patroni_api_password
    assert "password" not in config["postgresql"]["authentication"]["superuser"], "postgres by peer"


def test_standalone_servers_and_plain_pairs_get_no_patroni(settings, patroni):
    assert "etc/atelier/patroni.yml" not in runtime_files(patroni, patroni.container("debian12-pg15-standalone"))
    plain = Environment(settings, select("debian"), nofile_ceiling=20000)
    files = runtime_files(plain, plain.container("debian12-pg15-standby"))
    assert "etc/atelier/patroni.yml" not in files and "etc/atelier/roles.sql" not in files
    assert "etc/atelier/roles.sql" in runtime_files(patroni, patroni.container("debian12-pg15-standby")), \
        "either member may lead and make the roles"


def test_patronictl_list_json_of_3_0_and_4_x_reads_alike():
    three = json.dumps([
        {"Cluster": "debian12-pg15", "Member": "debian12-pg15-active", "Host": "172.19.12.15", "Role": "Leader",
         "State": "running", "TL": 2},
        {"Cluster": "debian12-pg15", "Member": "debian12-pg15-standby", "Host": "172.19.12.45", "Role": "Replica",
         "State": "running", "TL": 2, "Lag in MB": 0}])
    four = json.dumps([
        {"Cluster": "debian13-pg17", "Member": "debian13-pg17-standby", "Host": "172.19.13.47",
         "Role": "Sync Standby", "State": "streaming", "TL": 3, "Lag in MB": 0.5},
        {"Cluster": "debian13-pg17", "Member": "debian13-pg17-active", "Host": "172.19.13.17", "Role": "Leader",
         "State": "running", "TL": 3}])
    view = ClusterView("debian12-pg15", parse_members(three), "debian12-pg15-active")
    assert view.leader.name == "debian12-pg15-active" and view.leader.timeline == 2
    assert view.member("debian12-pg15-standby").lag_mb == 0
    members = parse_members(four)
    assert [m.role for m in members] == ["sync standby", "leader"]
    assert members[0].state == "streaming" and members[0].lag_mb == 0.5
    assert parse_members("") == ()


def test_a_pair_starts_with_the_member_that_led_it_when_it_stopped(patroni, settings):
    from atelier.engine.up import start_order

    names = [c.name for c in patroni.containers]
    first, after = start_order(patroni, names, {"debian12-pg15": "debian12-pg15-standby"})
    # The recorded leader first; a pair with no record starts with its active.
    assert after == ["debian12-pg15-active", "debian13-pg17-standby", "debian14-pg18-standby"]
    assert "debian12-pg15-standby" in first and "etcd1" in first and set(first) | set(after) == set(names)
    # Only when both members start: a partner already running is the leader's concern, not up's.
    assert start_order(patroni, ["debian12-pg15-standby"], {"debian12-pg15": "debian12-pg15-active"}) == \
        (["debian12-pg15-standby"], [])
    plain = Environment(settings, select("debian"), nofile_ceiling=20000)
    assert start_order(plain, names, {}) == (names, [])
