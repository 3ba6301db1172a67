"""db.tune, db.report, db.bench and the pgbouncer service on the real engine,
real PostgreSQL 15 and a real PgBouncer, in the debian profile that
test_replication.py shares (conftest.py). Each test leaves the server's
settings as it found them.
Run alone with `python3 -m pytest tests/engine/debian/test_db_service.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, inv, pgbouncer_psql, secret, wait_for
from helpers import servers_of as on

pytestmark = pytest.mark.engine

ACTIVE = "debian12-pg15-active"


@pytest.fixture(scope="module")
def environ(debian_environ):
    return debian_environ


def sql(environ, query, db="experdb", check=True):
    return on(environ).sql(ACTIVE, query, db, check=check)


def show(environ, name):
    return sql(environ, f"show {name}")


def restart(environ):
    inv(environ, "pg.restart", "-t", ACTIVE)
    assert wait_for(lambda: sql(environ, "select 1", check=False) == "1", timeout=60)


def test_pgbouncer_starts_with_up_and_is_ready(environ):
    rows = {line.split()[0]: line for line in inv(environ, "status").stdout.splitlines()[1:]}
    assert "pgbouncer" in rows and "running" in rows["pgbouncer"]


def test_tune_apply_changes_the_running_server_and_reset_brings_it_back(environ):
    names = ("random_page_cost", "effective_io_concurrency", "work_mem", "max_wal_size", "shared_buffers")
    before = {n: show(environ, n) for n in names}
    try:
        shown = json.loads(inv(environ, "db.tune", "-t", ACTIVE, "--memory", "4GB", "--cpus", "4", "--storage", "ssd",
                               "--json").stdout)
        proposed = {s["setting"]: s["proposed"] for s in shown["settings"]}
        assert proposed["shared_buffers"] == "1GB" and proposed["random_page_cost"] == "1.1"
        assert show(environ, "random_page_cost") == before["random_page_cost"]  # shown, not applied
        run = inv(environ, "db.tune", "-t", ACTIVE, "--memory", "4GB", "--cpus", "4", "--apply")
        assert show(environ, "random_page_cost") == "1.1"
        assert show(environ, "effective_io_concurrency") == "200"
        assert show(environ, "work_mem") == proposed["work_mem"]
        assert show(environ, "max_wal_size") == "4GB"
        assert "shared_buffers" in run.stdout and "wait for a restart" in run.stdout
        assert show(environ, "shared_buffers") == before["shared_buffers"]  # no restart without --restart
    finally:
        run = inv(environ, "db.tune", "-t", ACTIVE, "--reset")
    assert "put back" in run.stdout
    assert {n: show(environ, n) for n in names} == before
    # wal_buffers may stay flagged: PostgreSQL flags a postmaster setting taken
    # back to its default -1 even when it runs with what -1 gives (4MB here).
    assert sql(environ, "select string_agg(name, ',') from pg_settings "
                        "where pending_restart and name <> 'wal_buffers'") == ""
    assert "wait for a restart" not in run.stdout
    assert "applied nothing" in inv(environ, "db.tune", "-t", ACTIVE, "--reset").stdout


def test_tune_keeps_a_users_own_alter_system_through_reset(environ):
    sql(environ, "alter system set random_page_cost = 2.5")
    sql(environ, "select pg_reload_conf()")
    try:
        inv(environ, "db.tune", "-t", ACTIVE, "--memory", "4GB", "--storage", "hdd", "--apply")
        assert show(environ, "random_page_cost") == "4"
        inv(environ, "db.tune", "-t", ACTIVE, "--reset")
        assert show(environ, "random_page_cost") == "2.5"
    finally:
        sql(environ, "alter system reset random_page_cost")
        sql(environ, "select pg_reload_conf()")


def test_report_names_blocker_blocked_long_queries_and_unused_indexes(environ):
    sql(environ, "drop table if exists report_t; create table report_t (id int primary key, v int); "
                 "insert into report_t select g, g from generate_series(1, 1000) g; "
                 "create index report_t_v on report_t (v); analyze report_t")
    holder = subprocess.Popen([sys.executable, "-m", "invoke", "run", "-t", ACTIVE, "--", "psql", "-d", "experdb",
                               "-Xqc", "begin; lock table report_t; select pg_sleep(8); commit"],
                              cwd=ROOT, env={**os.environ, **environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: sql(environ, "select count(*) from pg_locks l join pg_class c on c.oid = l.relation "
                                             "where c.relname = 'report_t' and l.mode = 'AccessExclusiveLock'") == "1",
                        timeout=20)
        waiter = subprocess.Popen([sys.executable, "-m", "invoke", "run", "-t", ACTIVE, "--", "psql", "-d", "experdb",
                                   "-Xqc", "select count(*) from report_t"],
                                  cwd=ROOT, env={**os.environ, **environ}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        assert wait_for(lambda: sql(environ, "select count(*) from pg_stat_activity "
                                             "where cardinality(pg_blocking_pids(pid)) > 0") == "1", timeout=20)
        time.sleep(1.2)
        run = inv(environ, "db.report", "-t", ACTIVE, "--json", "--long", "1", check=False)
        lines = json.loads(run.stdout)
        holder_pid = sql(environ, "select pid from pg_stat_activity where query like 'begin; lock table report_t%'")
        waiter_pid = sql(environ, "select pid from pg_stat_activity where query = 'select count(*) from report_t'")
    finally:
        holder.wait(timeout=30)
    waiter.wait(timeout=30)
    by_check = {}
    for line in lines:
        by_check.setdefault(line["check"], []).append(line)
    blocked = by_check["blocked"][0]
    assert f"pid {waiter_pid}" in blocked["subject"] and f"pid {holder_pid}" in blocked["detail"]
    assert any(f"pid {holder_pid}" in b["subject"] for b in by_check["blocking"])
    assert any("pg_sleep" in q["detail"] for q in by_check["long query"])
    assert any(u["subject"] == "experdb.public.report_t_v" for u in by_check["unused index"])
    assert {"cache hit", "connections", "replication", "xid age", "table"} <= set(by_check)
    assert run.returncode == (1 if any(line["level"] == "crit" for line in lines) else 0)
    quiet = inv(environ, "db.report", "-t", ACTIVE, check=False)
    assert "long query" in quiet.stdout and "over 300 s" in quiet.stdout


def test_the_auth_role_can_do_nothing_but_its_lookup(environ):
    sql(environ, "create table if not exists auth_probe (n int)")
    password = secret(environ, "ATELIER_PGBOUNCER_AUTH_PASSWORD")
    lookup = pgbouncer_psql(environ, "pgbouncer_auth", password, "select usename from pgbouncer.get_auth('experdba')")
    assert lookup.returncode == 0 and lookup.stdout.strip() == "experdba", lookup.stderr
    assert pgbouncer_psql(environ, "pgbouncer_auth", password,
                          "select count(*) from pgbouncer.get_auth('postgres')").stdout.strip() == "0"
    for forbidden in ("select * from pg_authid", "create table mine (n int)", "set role experdba",
                      "select * from auth_probe", "create schema mine",
                      "select pg_read_file('postgresql.auto.conf')"):
        run = pgbouncer_psql(environ, "pgbouncer_auth", password, forbidden)
        assert run.returncode != 0 and "permission denied" in run.stderr, (forbidden, run.stderr)
    superuser = pgbouncer_psql(environ, "experdba", secret(environ, "ATELIER_SUPERUSER_PASSWORD"), "select current_user")
    assert superuser.stdout.strip() == "experdba", superuser.stderr
    assert "login rejected" in pgbouncer_psql(environ, "postgres", "", "select 1").stderr


def test_pgbouncer_serves_200_clients_where_the_server_takes_40(environ):
    sql(environ, "alter system set max_connections = 40")
    restart(environ)
    try:
        assert show(environ, "max_connections") == "40"
        # Long enough that 200 clients connect and commit through the pool
        # even on a busy machine (3 s once completed none).
        run = inv(environ, "db.bench", "-t", ACTIVE, "--clients", "200", "--via", "direct,pgbouncer",
                  "--seconds", "10", "--scale", "2", "--json")
        report = json.loads(run.stdout)
    finally:
        sql(environ, "alter system reset max_connections")
        restart(environ)
        # The replication tests back up experdb later: leave it as small as it was.
        sql(environ, "drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers, "
                     "report_t, auth_probe")
    runs = {r["via"]: r for r in report["runs"]}
    assert "too many clients" in runs["direct"]["error"], runs["direct"]
    assert runs["pgbouncer"]["error"] == "" and runs["pgbouncer"]["failed"] == 0
    assert runs["pgbouncer"]["transactions"] > 0 and runs["pgbouncer"]["tps"] > 0
    assert runs["pgbouncer"]["p99_ms"] > 0 and 0 < runs["pgbouncer"]["max_server_connections"] <= 40
    assert "making them at scale 2" in run.stderr
    csv_path, chart = Path(report["csv"]), Path(report["chart"])
    assert csv_path.parent == Path(environ["ATELIER_BENCH_DIR"]) / ACTIVE
    assert csv_path.read_text().splitlines()[0].startswith("server,via,script,clients")
    from PIL import Image

    with Image.open(chart) as image:
        image.load()
        assert image.size[0] > 400 and image.size[1] > 200
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(2)) > 1  # not blank
    pools = inv(environ, "db.pool").stdout
    assert f"{ACTIVE}.experdb" in pools and "transaction" in pools and "total_xact_count" in pools


def test_bad_input_is_one_line(environ):
    off = {**environ, "ATELIER_PGBOUNCER": "0"}
    for args, words in ((("db.pool",), "ATELIER_PGBOUNCER=1"),
                        (("db.bench", "-t", ACTIVE, "--via", "pgbouncer"), "ATELIER_PGBOUNCER=1"),
                        (("db.bench", "-t", ACTIVE, "--clients", "0"), "--clients 0"),
                        (("db.tune", "-t", ACTIVE, "--memory", "12XB"), "12XB"),
                        (("db.tune", "-t", ACTIVE, "--workload", "web"), "valid: oltp, olap, mixed"),
                        (("db.report", "-t", "nosuch"), "nosuch")):
        run = inv(off, *args, check=False)
        assert run.returncode != 0 and words in run.stderr and "Traceback" not in run.stderr, (args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_korean_euc_kr_database_can_be_made(environ):
    sql(environ, "drop database if exists euckr", db="postgres")
    sql(environ, "create database euckr encoding 'EUC_KR' lc_collate 'ko_KR.EUC-KR' lc_ctype 'ko_KR.EUC-KR' "
                 "template template0", db="postgres")
    try:
        assert sql(environ, "select pg_encoding_to_char(encoding) || ' ' || datcollate from pg_database "
                            "where datname = current_database()", db="euckr") == "EUC_KR ko_KR.EUC-KR"
        # The client speaks UTF-8; the server stores EUC-KR ('가' is B0A1 there) and sorts by ko_KR.
        query = "select '가나다' < '나다라', convert_to('가', 'EUC_KR'), length('가나다')"
        run = on(environ).run(ACTIVE, f"PGCLIENTENCODING=UTF8 psql -d euckr -XAtqc \"{query}\"")
        assert run.stdout.strip() == "t|\\xb0a1|3"
    finally:
        sql(environ, "drop database if exists euckr", db="postgres")
