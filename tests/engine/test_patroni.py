"""ATELIER_HA=patroni on the real engine: each pair a Patroni cluster from
the OS's own archive (Patroni 3.0.2 on Debian 12, 4.0.7 on Debian 13),
three real etcd members, HAProxy routing by Patroni's REST API, PgBouncer in
front. Every drill writes through the pool, and its counts are checked
against what PostgreSQL itself says (rows present, pg_is_in_recovery(),
timelines), never against the task's printout alone. One environment for
the module; each test first waits for its pair to settle.
Run alone with `python3 -m pytest tests/engine/test_patroni.py`."""

from __future__ import annotations

import json
import re

import pytest

from atelier.core.model import Environment, select
from atelier.core.settings import load_settings
from atelier.engine.up import down
from helpers import ENGINE, close_servers, inv, pgbouncer_psql, project_settings, prometheus, secret, wait_for
from helpers import servers_of as on

pytestmark = pytest.mark.engine

PROFILE = "ha"
PAIRS = {"debian12-pg15": "3.0.2", "debian13-pg17": "4.0.7"}


def members(pair: str) -> tuple[str, str]:
    return f"{pair}-active", f"{pair}-standby"


@pytest.fixture(scope="module")
def environ(tmp_path_factory):
    state = tmp_path_factory.mktemp("patroni-state")
    values = {**project_settings("ateliertest-ha", "172.31", 17000), "ATELIER_STATE_DIR": str(state),
              "ATELIER_HA": "patroni", "ATELIER_PGBOUNCER": "1", "ATELIER_PGBOUNCER_PORT": "17432",
              "ATELIER_PROFILE_HA": "debian12:15,debian13:17",
              # Prometheus labels each server by Patroni's own answer (GET /primary on its API).
              "ATELIER_MONITORING": "1", "ATELIER_PROMETHEUS_PORT": "17090"}
    inv(values, "build", "--profile", PROFILE)
    inv(values, "up", "--profile", PROFILE)
    yield values
    close_servers(values)
    # Everything goes with its volumes: no clean shutdown to wait for.
    for container in ENGINE.client.containers.list(filters={"label": "atelier.project=ateliertest-ha"}):
        container.kill()
    settings = load_settings(environ=values)
    down(ENGINE, Environment(settings, select(PROFILE, user_profiles=settings.profiles)), remove_volumes=True,
         say=lambda _: None)


def serves(environ, name) -> str:
    return on(environ).serves(name)


def settle(environ, pair: str, timeout: float = 120) -> tuple[str, str]:
    """(primary, replica) once one member serves and the other streams from
    it, as PostgreSQL says; a member a drill killed is started first."""
    stopped = [c for c in ENGINE.client.containers.list(all=True, filters={
        "label": "atelier.project=ateliertest-ha", "status": "exited"})]
    if stopped:
        inv(environ, "up", "--profile", PROFILE)

    def settled():
        a, b = members(pair)
        for primary, replica in ((a, b), (b, a)):
            if serves(environ, primary) == "primary" and on(environ).follows(replica) == primary:
                return primary, replica
        return None
    found = wait_for(settled, timeout=timeout)
    assert found, f"{pair} did not settle into a leader and a streaming replica in {timeout} s"
    return found


def scraped_serves(environ) -> set[tuple[str, str]]:
    """(server, serves label) of each exporter Prometheus scraped last."""
    found = prometheus(environ, "query", query='up{job="postgres"} == 1')["result"]
    return {(r["metric"]["container"], r["metric"]["serves"]) for r in found}


def drill(environ, *args) -> dict:
    run = inv(environ, "db.drill", *args, "--json", check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


def rows_of_run(environ, server: str, run: str, where: str = "true") -> set[int]:
    out = on(environ).sql(server, f"select n from atelier_drill where run = '{run}' and {where}", "experdb")
    return {int(n) for n in out.split()}


def timeline(environ, primary: str) -> int:
    return int(on(environ).sql(primary, "select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"), 16)


def pooled(environ, pair: str, query: str, read_only: bool = False):
    db = f"{pair}{'-ro' if read_only else ''}.experdb"
    return pgbouncer_psql(environ, "experdba", secret(environ, "ATELIER_SUPERUSER_PASSWORD"), query, db=db)


# ---- the clusters --------------------------------------------------------------------------------

def test_each_pair_is_a_patroni_cluster_of_its_archives_version_routed_by_its_rest_api(environ):
    status = inv(environ, "status")
    for pair, version in PAIRS.items():
        primary, replica = settle(environ, pair)
        for member in members(pair):
            assert on(environ).run(member, "patroni --version").stdout.split() == ["patroni", version]
        assert f"patroni {pair}: " in status.stderr and f"leader {primary}" in inv(environ, "status").stderr
        # Through the pool: the read-write entry reaches the leader, the read-only one the replica.
        rw = pooled(environ, pair, "select pg_is_in_recovery()")
        ro = pooled(environ, pair, "select pg_is_in_recovery()", read_only=True)
        assert (rw.returncode, rw.stdout.strip(), ro.stdout.strip()) == (0, "f", "t"), rw.stderr + ro.stderr
        # Patroni's REST API answers inside the network (HAProxy's question), never on the host.
        answer = on(environ).run(replica, f"curl -s -o /dev/null -w '%{{http_code}}' http://{primary}:8008/primary")
        assert answer.stdout == "200"
        view = [line.split() for line in inv(environ, "db.replication", "-t", f"{pair}-*").stdout.splitlines()]
        assert [pair, primary, "leader"] in [words[:3] for words in view]
        assert [pair, replica, "replica"] in [words[:3] for words in view]
    for container in ENGINE.client.containers.list(filters={"label": "atelier.project=ateliertest-ha"}):
        published = {p for p, bound in (container.attrs["NetworkSettings"]["Ports"] or {}).items() if bound}
        assert not published & {"8008/tcp", "2379/tcp", "2380/tcp"}, container.name


# ---- drills through the pool ---------------------------------------------------------------------

def test_a_switchover_through_the_pool_loses_nothing(environ):
    old, new = settle(environ, "debian12-pg15")
    report = drill(environ, "switchover", "-t", "debian12-pg15-*")
    assert report["mode"] == "patroni" and report["path"].startswith("PgBouncer")
    assert (report["old_primary"], report["new_primary"]) == (old, new)
    assert report["committed"] > 50 and report["lost_count"] == 0 and report["write_gap"] is not None
    assert serves(environ, new) == "primary" and wait_for(lambda: on(environ).follows(old) == new, timeout=60)
    # Monitoring's serves label comes from Patroni's REST API here: both change.
    assert wait_for(lambda: {(new, "primary"), (old, "standby")} <= scraped_serves(environ), timeout=30), \
        scraped_serves(environ)
    logged_in = {r["metric"]["container"] for r in prometheus(environ, "query", query="pg_up == 1")["result"]}
    assert {old, new} <= logged_in, logged_in  # the exporters reach PostgreSQL under Patroni too
    present = rows_of_run(environ, new, report["run"])
    assert len(present) >= report["committed"] == report["present"]


def test_a_killed_leader_under_synchronous_mode_loses_nothing_and_comes_back_by_rewind(environ):
    old, new = settle(environ, "debian12-pg15")
    timeline_before = timeline(environ, old)
    sysid = on(environ).sql(old, "select system_identifier from pg_control_system()")
    report = drill(environ, "failover", "--auto", "--sync", "-t", "debian12-pg15-*")
    assert report["synchronous"] and report["new_primary"] == new
    assert report["lost_count"] == 0 and report["killed_to_write"] is not None
    assert serves(environ, new) == "primary" and timeline(environ, new) > timeline_before
    assert report["committed"] <= len(rows_of_run(environ, new, report["run"]))
    # A row written through the pool after the failover, then the old leader back.
    assert pooled(environ, "debian12-pg15", "create table if not exists after_failover (n int); "
                                            "insert into after_failover values (1)").returncode == 0
    rejoined = inv(environ, "db.rejoin", "-t", old)
    assert ("patroni: running pg_rewind from" in rejoined.stderr and "pg_rewind: Done!" in rejoined.stderr) \
        or "patroni: no rewind" in rejoined.stderr, rejoined.stderr
    assert "reinitializ" not in rejoined.stderr
    assert serves(environ, old) == "standby" and on(environ).follows(old) == new
    assert on(environ).sql(old, "select system_identifier from pg_control_system()") == sysid
    assert wait_for(lambda: on(environ).sql(old, "select count(*) from after_failover", "experdb",
                                            check=False) == "1", timeout=30)


def test_an_asynchronous_failover_counts_its_loss_from_the_rows_and_rewinds_the_old_leader(environ):
    old, new = settle(environ, "debian13-pg17")
    report = drill(environ, "failover", "--auto", "-t", "debian13-pg17-*")
    assert not report["synchronous"] and report["new_primary"] == new
    present = rows_of_run(environ, new, report["run"])
    assert report["present"] + report["lost_count"] == report["committed"]
    assert not set(report["lost"]) & present
    assert report["killed_to_promoted"] is not None and serves(environ, new) == "primary"
    rejoined = inv(environ, "db.rejoin", "-t", old)
    assert "streams from " + new in rejoined.stdout
    assert serves(environ, old) == "standby"


def test_a_frozen_leader_demotes_itself_and_the_pool_never_reaches_it(environ):
    old, new = settle(environ, "debian13-pg17")
    report = drill(environ, "zombie", "-t", "debian13-pg17-*")
    assert (report["old_primary"], report["new_primary"]) == (old, new)
    assert report["zombie_writes_pooled"] == 0
    assert report["zombie_writes"] is not None
    # Patroni demoted the thawed leader: it follows the new one, which kept its role.
    assert wait_for(lambda: on(environ).follows(old) == new, timeout=90)
    assert serves(environ, new) == "primary"
    present = rows_of_run(environ, new, report["run"])
    assert report["present"] + report["lost_count"] == report["committed"] and not set(report["lost"]) & present


def test_losing_etcds_quorum_turns_the_leader_read_only_then_writes_resume_with_nothing_lost(environ):
    leader, _ = settle(environ, "debian13-pg17")
    report = drill(environ, "dcs-loss", "-t", "debian13-pg17-*")
    assert report["lost_count"] == 0 and report["committed"] > 50
    # The leader stopped taking writes before etcd came back (20 s later), and took them again after.
    assert report["writes_after_dcs_loss"] is not None and report["writes_after_dcs_loss"] < 20
    assert report["dcs_back_to_write"] is not None
    assert len(rows_of_run(environ, leader, report["run"])) >= report["committed"]
    assert serves(environ, leader) == "primary"


# ---- the environment's life ----------------------------------------------------------------------

def test_down_and_up_keep_the_data_and_each_clusters_leader(environ):
    # One cluster led by its standby container: started in the model's order
    # (active first) with equal WAL, the two would race for the leader lock.
    leader, replica = settle(environ, "debian13-pg17")
    if leader == "debian13-pg17-active":
        inv(environ, "db.switchover", "-t", replica)
    leaders = {pair: settle(environ, pair)[0] for pair in PAIRS}
    assert leaders["debian13-pg17"] == "debian13-pg17-standby"
    for pair, leader in leaders.items():
        on(environ).sql(leader, "create table if not exists kept (n int); insert into kept values (42)", "experdb")
    close_servers(environ)
    inv(environ, "down")
    up = inv(environ, "up", "--profile", PROFILE)
    assert re.search(r"starting [^\n]*debian13-pg17-standby[^\n]* first: each led its pair when it stopped",
                     up.stdout), up.stdout
    for pair, leader in leaders.items():
        assert serves(environ, leader) == "primary"
        assert settle(environ, pair)[0] == leader
        assert on(environ).sql(leader, "select sum(n) from kept", "experdb") == "42"


def test_etcd_unreachable_at_up_is_one_line_and_the_clusters_come_back_with_it(environ):
    settle(environ, "debian13-pg17")
    network = ENGINE.client.networks.get("ateliertest-ha")
    cut = {name: ENGINE.client.containers.get(f"ateliertest-ha-{name}") for name in ("etcd2", "etcd3")}
    addresses = {name: c.attrs["NetworkSettings"]["Networks"]["ateliertest-ha"]["IPAddress"] for name, c in cut.items()}
    for container in cut.values():
        network.disconnect(container)
    try:
        run = inv(environ, "up", "--profile", PROFILE, "--timeout", "15", check=False)
    finally:
        for name, container in cut.items():
            network.connect(container, ipv4_address=addresses[name], aliases=[name])
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and lines[-1].startswith("atelier: not ready after 15s: "), run.stderr
    assert "etcd1: etcd has no quorum" in lines[-1] and "Traceback" not in run.stderr
    # Back on the network, etcd has its quorum again and each cluster a leader.
    for pair in PAIRS:
        settle(environ, pair)


def test_bad_input_is_one_line(environ):
    cases = [
        (("db.switchover", "-t", "debian12-pg15-standalone"),
         {}, "debian12-pg15-standalone is not a member of a Patroni cluster"),
        (("db.drill", "zombie", "-t", "debian12-pg15-standalone"), {}, "a drill runs on one active/standby pair"),
        (("db.rejoin", "-t", "debian12-pg15-standby", "--fresh"), {}, "under Patroni a fresh copy is Patroni's reinit"),
        (("db.drill", "dcs-loss", "-t", "debian12-pg15-*"), {"ATELIER_HA": "plain"},
         "drills Patroni's etcd and this environment's pairs are plain"),
        (("status",), {"ATELIER_HA": "bogus"}, "ATELIER_HA=bogus is not a failover mode atelier knows; valid: plain, patroni"),
    ]
    for args, extra, words in cases:
        run = inv({**environ, **extra}, *args, check=False)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 1 and lines and words in lines[-1], (args, run.stderr)
        assert "Traceback" not in run.stderr
