"""Monitoring as the expert note writes it, on the real engine: Prometheus and
Alertmanager from Debian's archive, a postgres_exporter in every server of the
debian profile (0.11 on Debian 12, 0.17 on 13, 0.19 on 14), and the note's
three alerts made to fire by real causes and then clear, judged from
Prometheus's own API on its port on 127.0.0.1. The profile's
ATELIER_ALERT_FOR=0s (conftest.py) shortens every `for:`.
Run alone with `python3 -m pytest tests/engine/debian/test_monitoring.py`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import inv, prometheus, secret, wait_for
from helpers import servers_of as on

pytestmark = pytest.mark.engine

GROUPS = (("debian12", 15), ("debian13", 17), ("debian14", 18))
SERVERS = [f"{os_name}-pg{major}-{role}" for os_name, major in GROUPS for role in ("active", "standby", "standalone")]
THE_NOTES = ("pg_stat_activity_count / pg_settings_max_connections",
             "pg_stat_database_blks_hit / (pg_stat_database_blks_hit + pg_stat_database_blks_read)",
             "rate(pg_stat_database_xact_commit[5m]) + rate(pg_stat_database_xact_rollback[5m])")


@pytest.fixture(scope="module")
def environ(debian_environ):
    return debian_environ


def series(environ, expr: str) -> list[tuple[dict, float]]:
    return [(r["metric"], float(r["value"][1])) for r in prometheus(environ, "query", query=expr)["result"]]


def active_alerts(environ, name: str, state: str = "", **labels) -> list[dict]:
    """The alerts named `name` that Prometheus holds now (pending or firing)."""
    return [a for a in prometheus(environ, "alerts")["alerts"]
            if a["labels"]["alertname"] == name and (not state or a["state"] == state)
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def scraped(environ) -> dict[str, dict]:
    """Each server whose exporter Prometheus reached: its labels."""
    return {m["container"]: m for m, value in series(environ, 'up{job="postgres"}') if value == 1}


def test_every_server_is_scraped_with_what_it_is_and_what_it_serves(environ):
    serving = {name: on(environ).serves(name) for name in SERVERS}
    labels = wait_for(lambda: (lambda found: found if set(found) == set(SERVERS) and all(
        found[n]["serves"] == serving[n] for n in SERVERS) else None)(scraped(environ)), timeout=90)
    assert labels, (serving, scraped(environ))
    for name, found in labels.items():
        os_name, major, _ = name.split("-")
        assert (found["os"], found["major"]) == (os_name, major.removeprefix("pg")), found
    # The note's expressions work as written, on every server, whatever the
    # exporter's version (rate() needs two scrapes).
    for expr in THE_NOTES:
        answered = wait_for(lambda: {m["container"] for m, _ in series(environ, expr)} >= set(SERVERS), timeout=60)
        assert answered, (expr, series(environ, expr))
    usage = dict((m["container"], v) for m, v in series(environ, THE_NOTES[0]))
    assert all(0 < usage[name] < 0.8 for name in SERVERS), usage
    # Replication lag in bytes: each primary's view of its standby and the standby's own.
    lag = {(m["container"], m["seen_from"]) for m, _ in series(environ, "pg_replication_lag_bytes")}
    for os_name, major in GROUPS:
        pair = [f"{os_name}-pg{major}-{role}" for role in ("active", "standby")]
        primary = next(n for n in pair if serving[n] == "primary")
        standby = next(n for n in pair if n != primary)
        assert {(primary, "primary"), (standby, "standby")} <= lag, lag


def test_the_exporter_may_only_read_statistics_and_its_password_is_in_no_argv(environ):
    active = "debian12-pg15-active"
    assert on(environ).sql(active, "select rolsuper::text || ' ' || pg_has_role('atelier_monitor', 'pg_monitor', "
                           "'member')::text from pg_roles where rolname = 'atelier_monitor'") == "false true"
    processes = on(environ).run(active, "ps -eo user,args").stdout
    assert "postgres-exporter" in processes or "postgres_exporter" in processes, processes
    assert secret(environ, "ATELIER_MONITOR_PASSWORD") not in processes
    env_file = on(environ).run(active, "stat -c '%a %U' /etc/atelier/postgres-exporter.env").stdout.split()
    assert env_file == ["600", "root"]


def test_high_connection_usage_fires_with_idle_connections_held_and_clears(environ):
    target = "debian14-pg18-standalone"
    limit = int(on(environ).sql(target, "show max_connections"))
    held = int(limit * 0.8) + 3
    # Idle sessions: each psql waits on a pipe that sends nothing for a while.
    on(environ).run(target, f"setsid sh -c 'for i in $(seq {held}); do sleep 307 | psql -Xq -d postgres & done; wait' "
                    ">/dev/null 2>&1 </dev/null &")
    try:
        assert wait_for(lambda: int(on(environ).sql(target, "select count(*) from pg_stat_activity where "
                                                    "backend_type = 'client backend'") or 0) >= held, timeout=60)
        fired = wait_for(lambda: active_alerts(environ, "HighConnectionUsage", "firing", container=target), timeout=60)
        assert fired and float(fired[0]["value"]) > 0.8 and fired[0]["labels"]["severity"] == "warning"
        shown = inv(environ, "db.alerts", check=False)
        line = next(line for line in shown.stdout.splitlines() if "HighConnectionUsage" in line and target in line)
        assert line.startswith("FIRING") and "warning" in line and "since" in line
        assert "every `for:` shortened to 0s (ATELIER_ALERT_FOR)" in shown.stderr
    finally:
        on(environ).run(target, "pkill -f 'sleep 307'", check=False)
    assert wait_for(lambda: not active_alerts(environ, "HighConnectionUsage", container=target), timeout=60)


def test_replication_lag_fires_while_replay_is_paused_and_resolves(environ):
    pair = ("debian12-pg15-active", "debian12-pg15-standby")
    primary = next(n for n in pair if on(environ).serves(n) == "primary")
    standby = next(n for n in pair if n != primary)
    on(environ).sql(standby, "select pg_wal_replay_pause()")
    try:
        # About 130 MB of WAL that the standby receives and does not replay.
        on(environ).sql(primary, "drop table if exists lag_fill; create table lag_fill as "
                        "select g, repeat('x', 400) as pad from generate_series(1, 300000) g", db="experdb")
        fired = wait_for(lambda: active_alerts(environ, "ReplicationLag", "firing", container=primary), timeout=60)
        assert fired and float(fired[0]["value"]) > 1e8 and fired[0]["labels"]["severity"] == "critical"
        assert fired[0]["labels"]["seen_from"] == "primary"
        assert wait_for(lambda: active_alerts(environ, "ReplicationLag", "firing", container=standby), timeout=30)
        shown = inv(environ, "db.alerts", check=False)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert any(line.startswith("FIRING") and "ReplicationLag" in line and primary in line
                   for line in shown.stdout.splitlines()), shown.stdout
        assert "critical alert(s) firing: ReplicationLag on " in shown.stderr.strip().splitlines()[-1]
        status = inv(environ, "status").stderr
        assert re.search(r"^alerts: \d+ firing \([1-9]\d* critical\), \d+ pending \(every `for:` shortened to 0s\)",
                         status, re.MULTILINE), status
    finally:
        on(environ).sql(standby, "select pg_wal_replay_resume()")
        on(environ).sql(primary, "drop table if exists lag_fill", db="experdb")
    assert wait_for(lambda: not active_alerts(environ, "ReplicationLag"), timeout=90)
    assert inv(environ, "db.alerts", check=False).returncode == 0


def test_low_cache_hit_ratio_fires_on_a_database_read_past_shared_buffers_and_clears(environ):
    target = "debian13-pg17-standalone"
    on(environ).sql(target, "drop database if exists coldcache")
    on(environ).sql(target, "create database coldcache")
    try:
        # A table larger than shared_buffers, scanned: sequential scans of it
        # read through a small ring of buffers, so nearly every block misses.
        size = on(environ).sql(target, "select pg_size_bytes(current_setting('shared_buffers'))")
        rows = int(size) // 450 + 50000
        on(environ).sql(target, f"create table big as select g, repeat('x', 400) as pad from generate_series(1, {rows}) g",
                        db="coldcache")
        on(environ).sql(target, "select count(*) from big", db="coldcache")
        fired = wait_for(lambda: active_alerts(environ, "LowCacheHitRatio", "firing", container=target,
                                               datname="coldcache"), timeout=60)
        assert fired and float(fired[0]["value"]) < 0.95
    finally:
        on(environ).sql(target, "drop database if exists coldcache with (force)")
    assert wait_for(lambda: not active_alerts(environ, "LowCacheHitRatio", datname="coldcache"), timeout=60)


def test_metrics_show_the_notes_expressions_now_and_draw_them_over_time(environ):
    shown = inv(environ, "db.metrics", "-t", "debian12-pg15-*")
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines()[1:]}
    assert set(rows) == {"debian12-pg15-active", "debian12-pg15-standby", "debian12-pg15-standalone"}
    usage, hit_ratio = (float(v) for v in rows["debian12-pg15-active"][:2])
    assert 0 < usage < 1 and 0 < hit_ratio <= 1
    assert "Prometheus: http://127.0.0.1:25090/" in shown.stderr
    every = inv(environ, "db.metrics").stdout.splitlines()[1:]  # every server that is up
    assert sorted(line.split()[0] for line in every) == sorted(SERVERS)
    drawn = inv(environ, "db.metrics", "--since", "10m", "--chart")
    chart = Path(drawn.stdout.strip().splitlines()[-1])
    assert chart.read_bytes()[:4] == b"\x89PNG" and chart.parent.parent == Path(environ["ATELIER_BENCH_DIR"])
    wrong = inv(environ, "db.metrics", "--since", "nonsense", check=False)
    assert wrong.returncode == 1 and wrong.stderr.strip() == (
        "atelier: --since nonsense is not a duration; valid: a number and s, m, h or d, like 30m or 1h")


def test_alerts_without_monitoring_is_one_line(environ):
    off = inv({**environ, "ATELIER_MONITORING": "0"}, "db.alerts", check=False)
    assert off.returncode == 1
    assert off.stderr.strip() == "atelier: monitoring is not enabled: set ATELIER_MONITORING=1 in .env, then `inv up`"

