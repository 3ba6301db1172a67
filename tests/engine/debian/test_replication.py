"""Replication and recovery drills on the real engine and real PostgreSQL:
the debian profile (PostgreSQL 15 on Debian 12, 17 on Debian 13) under a
project, subnet and ports of its own. Each test brings the PG 15 pair to the
state it starts from, so that any one runs alone or in any order.
Run alone with `python3 -m pytest tests/engine/debian/test_replication.py`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ENGINE, ROOT, default_sigint, inv, pgbouncer_psql, prometheus, secret, wait_for
from helpers import servers_of as on

pytestmark = pytest.mark.engine

ACTIVE, STANDBY, STANDALONE = (f"debian12-pg15-{r}" for r in ("active", "standby", "standalone"))
PAIR = "debian12-pg15-active,debian12-pg15-standby"
PG17_STANDALONE = "debian13-pg17-standalone"


@pytest.fixture(scope="module")
def environ(debian_environ):
    """The debian profile, shared with test_db_service.py (conftest.py)."""
    return debian_environ


def sql(environ, target, query, db="experdb", check=True):
    return on(environ).sql(target, query, db, check=check)


def status_rows(environ) -> dict[str, list[str]]:
    lines = inv(environ, "status").stdout.splitlines()
    return {line.split()[0]: line.split() for line in lines[1:]}


def serves(environ, name) -> str:
    """primary or standby, as the server says (pg_is_in_recovery); - when down."""
    return on(environ).serves(name)


def follows(environ, name) -> str:
    """Whom a standby streams from, as the server says (pg_stat_wal_receiver)."""
    return on(environ).follows(name)


def pair_with_primary(environ, primary: str) -> str:
    """Bring the PG 15 pair to: `primary` serving, its partner streaming
    from it. Returns the partner's name."""
    other = STANDBY if primary == ACTIVE else ACTIVE
    inv(environ, "up")  # starts a container a failover drill killed (it boots fenced)
    rows = status_rows(environ)
    for name in (primary, other):
        if "fenced" in " ".join(rows[name]):
            partner = other if name == primary else primary
            if rows[partner][6] != "primary":
                raise AssertionError(f"both servers of the pair are down: {rows}")
            inv(environ, "db.rejoin", "-t", name, "--yes")
    if serves(environ, primary) != "primary":
        inv(environ, "db.switchover", "-t", primary)
    assert wait_for(lambda: follows(environ, other) == primary, timeout=60)
    return other


def scraped_serves(environ):
    """(server, serves label) of each exporter Prometheus scraped last."""
    found = prometheus(environ, "query", query='up{job="postgres"} == 1')["result"]
    return {(r["metric"]["container"], r["metric"]["serves"]) for r in found}


def drill(environ, *args) -> dict:
    run = inv(environ, "db.drill", *args, "--json", check=False)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


# ---- seeing it --------------------------------------------------------------------------------

def test_replication_view_shows_each_standby_with_its_lag_and_slot(environ):
    pair_with_primary(environ, ACTIVE)
    rows = json.loads(inv(environ, "db.replication", "--json").stdout)
    by_primary = {r["primary"]: r for r in rows}
    for primary, standby in ((ACTIVE, STANDBY), ("debian13-pg17-active", "debian13-pg17-standby")):
        row = by_primary[primary]
        assert row["standby"] == standby and row["state"] == "streaming"
        assert row["slot"] == standby.replace("-", "_")
        assert row["level"] == "ok" and row["lag_bytes"] < 1 << 20
        assert row["sent"] and row["replay"] and row["sync_state"] == "async"
    assert by_primary[STANDALONE]["state"] == "no standby"
    table = inv(environ, "db.replication", "-t", ACTIVE).stdout
    assert table.splitlines()[0].split()[:4] == ["primary", "standby", "state", "sync_state"]
    assert follows(environ, STANDBY) == ACTIVE and serves(environ, STANDBY) == "standby"


# ---- role changes with a writer running -------------------------------------------------------

def test_switchover_and_switchback_lose_nothing_and_stream_again(environ):
    pair_with_primary(environ, ACTIVE)
    there = drill(environ, "switchover", "-t", "debian12-pg15-*")
    assert there["old_primary"] == ACTIVE and there["new_primary"] == STANDBY
    assert there["committed"] > 50 and there["lost_count"] == 0 and there["present"] == there["committed"]
    assert there["write_gap"] is not None
    assert serves(environ, STANDBY) == "primary" and wait_for(lambda: follows(environ, ACTIVE) == STANDBY)
    # Prometheus labels each server with what it serves now (monitoring is on
    # in this profile): both labels change, within two 5 s scrapes plus the
    # targets' 2 s round (bench/monitoring.py measures it).
    assert wait_for(lambda: {(ACTIVE, "standby"), (STANDBY, "primary")} <= scraped_serves(environ), timeout=30), \
        scraped_serves(environ)

    back = drill(environ, "switchover", "-t", "debian12-pg15-*")
    assert back["old_primary"] == STANDBY and back["new_primary"] == ACTIVE
    assert back["committed"] > 50 and back["lost_count"] == 0
    assert serves(environ, ACTIVE) == "primary" and wait_for(lambda: follows(environ, STANDBY) == ACTIVE)
    # The new primary takes writes that reach the standby again.
    sql(environ, ACTIVE, "create table if not exists after_switchback (n int); insert into after_switchback values (7)")
    assert wait_for(lambda: sql(environ, STANDBY, "select count(*) from after_switchback", check=False) == "1")


def test_failover_with_the_primary_killed_then_rejoin_with_pg_rewind(environ):
    pair_with_primary(environ, ACTIVE)
    report = drill(environ, "failover", "-t", "debian12-pg15-*")
    assert report["old_primary"] == ACTIVE and report["new_primary"] == STANDBY
    # Asynchronous: what was lost is reported, and it is what the rows say.
    assert report["present"] + report["lost_count"] == report["committed"]
    assert report["killed_to_promoted"] is not None and report["killed_to_write"] is not None
    assert serves(environ, STANDBY) == "primary"

    inv(environ, "up")  # starts the killed container: it stays fenced, and up does not wait for it
    rows = status_rows(environ)
    assert rows[ACTIVE][5] == "running" and "fenced" in " ".join(rows[ACTIVE])
    assert serves(environ, ACTIVE) == "-"  # its server is not running

    rejoined = inv(environ, "db.rejoin", "-t", ACTIVE)
    assert "pg_rewind: Done!" in rejoined.stderr
    assert wait_for(lambda: follows(environ, ACTIVE) == STANDBY)
    sql(environ, STANDBY, "create table if not exists after_rejoin (n int); insert into after_rejoin values (1)")
    assert wait_for(lambda: sql(environ, ACTIVE, "select count(*) from after_rejoin", check=False) == "1")


def write_through_the_pool(environ, table: str, n: int) -> str:
    """One row into `table` through PgBouncer's entry for the pair, the path
    an application takes; returns whether the server that took it is in
    recovery, as that server says. Retried while HAProxy's role checks catch
    up with a role change (a few seconds)."""
    password = secret(environ, "ATELIER_SUPERUSER_PASSWORD")
    query = (f"create table if not exists {table} (n int); insert into {table} values ({n}); "
             "select pg_is_in_recovery()")
    ran = None

    def wrote() -> bool:
        nonlocal ran
        ran = pgbouncer_psql(environ, "experdba", password, query, db="debian12-pg15.experdb")
        return ran.returncode == 0

    assert wait_for(wrote, timeout=30), ran.stderr
    return ran.stdout.strip().splitlines()[-1]


def test_the_pool_follows_the_primary_through_switchover_failover_and_rejoin(environ):
    pair_with_primary(environ, ACTIVE)
    urls = dict(line.split("\t")[::-1] for line in inv(environ, "db.url", "-t", "debian12-pg15").stdout.splitlines())
    assert urls["from this host"] == f"postgresql://experdba@127.0.0.1:{environ['ATELIER_PGBOUNCER_PORT']}/debian12-pg15.experdb"
    sql(environ, ACTIVE, "drop table if exists through_pool")
    assert write_through_the_pool(environ, "through_pool", 1) == "f"
    assert sql(environ, ACTIVE, "select count(*) from through_pool where n = 1") == "1"

    inv(environ, "db.switchover", "-t", STANDBY)
    assert write_through_the_pool(environ, "through_pool", 2) == "f"
    assert serves(environ, STANDBY) == "primary"
    assert sql(environ, STANDBY, "select count(*) from through_pool where n = 2") == "1"

    assert wait_for(lambda: sql(environ, ACTIVE, "select count(*) from through_pool where n = 2", check=False) == "1")
    inv(environ, "db.failover", "-t", ACTIVE, "--yes")  # the container named active is promoted again
    assert write_through_the_pool(environ, "through_pool", 3) == "f"
    assert serves(environ, ACTIVE) == "primary" and serves(environ, STANDBY) == "-"
    assert sql(environ, ACTIVE, "select count(*) from through_pool where n = 3") == "1"

    inv(environ, "db.rejoin", "-t", STANDBY)
    assert write_through_the_pool(environ, "through_pool", 4) == "f"
    assert wait_for(lambda: sql(environ, STANDBY, "select count(*) from through_pool", check=False) == "4")


def test_synchronous_failover_loses_nothing(environ):
    pair_with_primary(environ, ACTIVE)
    report = drill(environ, "failover", "--sync", "-t", "debian12-pg15-*")
    assert report["synchronous"] is True
    assert report["committed"] > 50 and report["lost_count"] == 0
    inv(environ, "up")
    inv(environ, "db.rejoin", "-t", ACTIVE)
    assert wait_for(lambda: follows(environ, ACTIVE) == STANDBY)


def test_a_promoted_server_stays_primary_across_restart_and_down_up(environ, tmp_path):
    pair_with_primary(environ, STANDBY)  # the container named standby is the primary
    sql(environ, STANDBY, "create table if not exists kept (n int); insert into kept values (42)")
    ENGINE.client.containers.get(f"{environ['ATELIER_PROJECT']}-{STANDBY}").restart()
    inv(environ, "up")
    assert serves(environ, STANDBY) == "primary"
    inv(environ, "down")
    inv(environ, "up")
    assert serves(environ, STANDBY) == "primary" and "42" in sql(environ, STANDBY, "select n from kept")
    assert wait_for(lambda: follows(environ, ACTIVE) == STANDBY)


def test_ctrl_c_in_a_switchover_lets_it_finish_and_leaves_one_primary(environ):
    pair_with_primary(environ, ACTIVE)
    process = subprocess.Popen([sys.executable, "-m", "invoke", "db.switchover", "-t", STANDBY], cwd=ROOT,
                               text=True, env={**os.environ, **environ}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=default_sigint)
    # Interrupt once the old primary is being stopped: the half-way point.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and serves(environ, ACTIVE) == "primary":
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "finishes first" in err
    assert serves(environ, STANDBY) == "primary"
    assert wait_for(lambda: follows(environ, ACTIVE) == STANDBY, timeout=60)


def test_role_changes_refuse_bad_targets_in_one_line(environ):
    pair_with_primary(environ, ACTIVE)
    wrong = inv(environ, "db.switchover", "-t", ACTIVE, check=False)
    assert wrong.returncode == 1 and wrong.stderr.strip().splitlines() == [
        f"atelier: {ACTIVE} is a primary, not a standby: db.switchover takes the standby to promote "
        f"(here {STANDBY}, if it streams from {ACTIVE})"]
    alone = inv(environ, "db.failover", "-t", STANDALONE, "--yes", check=False)
    assert alone.returncode == 1 and "in no replication pair" in alone.stderr
    assert len(alone.stderr.strip().splitlines()) == 1
    kind = inv(environ, "db.drill", "sideways", "-t", "debian12-pg15-*", check=False)
    assert kind.returncode == 1 and kind.stderr.strip() == "atelier: unknown drill 'sideways'; valid: switchover, failover, zombie, dcs-loss, partition"
    unasked = inv(environ, "db.failover", "-t", STANDBY, check=False)
    assert unasked.returncode == 1 and "add --yes" in unasked.stderr
    assert serves(environ, ACTIVE) == "primary"  # nothing changed


# ---- backups proven to restore ----------------------------------------------------------------

# accounts and notes are hashed by value; shapes (point, an array) by its rows' text.
SEED = ("drop table if exists accounts, notes, shapes; "
        "create table accounts (id int primary key, owner text, balance numeric); "
        "insert into accounts select g, md5(g::text), g * 1.5 from generate_series(1, 5000) g; "
        "create table notes (body jsonb, at timestamptz); "
        "insert into notes values ('{\"a\": 1}', '2026-01-01'), (null, null); "
        "create table shapes (p point, tags text[]); "
        "insert into shapes select point(g, g * 2), array['t' || g] from generate_series(1, 50) g")


def test_backup_restores_into_a_new_database_and_verify_catches_a_changed_row(environ):
    sql(environ, STANDALONE, SEED)
    folder = Path(inv(environ, "db.backup", "-t", STANDALONE).stdout.strip())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["databases"]["experdb"]["tables"]["public.accounts"]["rows"] == 5000
    assert (folder / "experdb.dump").stat().st_mode & 0o077 == 0 and (folder / "globals.sql").is_file()

    restored = inv(environ, "db.restore", str(folder), "-t", PG17_STANDALONE, "--db", "copy15", "--verify")
    assert "restored and verified, every table equal" in restored.stdout
    assert sql(environ, PG17_STANDALONE, "select sum(balance) from accounts", db="copy15") == "18753750.0"

    again = inv(environ, "db.restore", str(folder), "-t", PG17_STANDALONE, "--db", "copy15", check=False)
    assert again.returncode == 1 and again.stderr.strip() == (
        f"atelier: database copy15 on {PG17_STANDALONE} is not empty (4 relations); restore into a new "
        "one (--db NAME), or replace it with --clean --yes")

    sql(environ, PG17_STANDALONE, "update accounts set owner = 'mallory' where id = 77", db="copy15")
    changed = inv(environ, "db.verify", str(folder), "-t", PG17_STANDALONE, "--db", "copy15", check=False)
    assert changed.returncode == 1 and "public.accounts: same 5000 rows, different contents" in changed.stdout
    assert "public.notes" not in changed.stdout and "public.shapes" not in changed.stdout
    sql(environ, PG17_STANDALONE, "update shapes set p = point(0, 0) where tags = array['t7']", db="copy15")
    changed = inv(environ, "db.verify", str(folder), "-t", PG17_STANDALONE, "--db", "copy15", check=False)
    assert "public.shapes: same 50 rows, different contents" in changed.stdout

    replaced = inv(environ, "db.restore", str(folder), "-t", PG17_STANDALONE, "--db", "copy15",
                   "--clean", "--yes", "--verify")
    assert "every table equal" in replaced.stdout

    missing = inv(environ, "db.restore", "/nonexistent/backup", "-t", PG17_STANDALONE, check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "atelier: no backup at /nonexistent/backup: not a folder (backups are in backups/<container>/<time>/)")


def test_pitr_to_a_time_before_a_drop_table_gets_the_table_back(environ):
    pair_with_primary(environ, ACTIVE)
    folder = Path(inv(environ, "db.basebackup", "-t", ACTIVE).stdout.strip())
    info = json.loads((folder / "basebackup.json").read_text())
    assert info["source"] == ACTIVE and (folder / "backup_manifest").is_file()

    sql(environ, ACTIVE, "drop table if exists precious; create table precious as select generate_series(1, 300) n")
    time.sleep(1.2)
    before_drop = sql(environ, ACTIVE, "select now()")
    time.sleep(1.2)
    sql(environ, ACTIVE, "drop table precious")

    early = inv(environ, "db.pitr", "--backup", str(folder), "--to", "2001-01-01 00:00+00", "-t", STANDALONE,
                "--yes", check=False)
    assert early.returncode == 1 and "is before the backup started" in early.stderr
    late = inv(environ, "db.pitr", "--backup", str(folder), "--to", "2999-01-01 00:00+00", "-t", STANDALONE,
               "--yes", check=False)
    assert late.returncode == 1 and "is after the newest archived WAL" in late.stderr
    unasked = inv(environ, "db.pitr", "--backup", str(folder), "--to", before_drop, "-t", STANDALONE, check=False)
    assert unasked.returncode == 1 and "add --yes" in unasked.stderr

    inv(environ, "db.pitr", "--backup", str(folder), "--to", before_drop, "-t", STANDALONE, "--yes")
    assert sql(environ, STANDALONE, "select count(*) from precious") == "300"
    assert sql(environ, STANDALONE, "select pg_is_in_recovery()") == "f"
    assert sql(environ, ACTIVE, "select to_regclass('precious') is null") == "t"


# ---- logical replication across majors --------------------------------------------------------

def test_logical_replication_from_15_to_17_carries_new_rows_and_verifies(environ):
    """In experdb, as the README's example and users do: atelier's own
    objects (the pgbouncer schema, the extensions it creates) are on both
    sides already, and copying the user's schema must not trip over them."""
    pair_with_primary(environ, ACTIVE)
    sql(environ, ACTIVE, "drop table if exists items; create table items (id int primary key, name text); "
                         "insert into items select g, 'item ' || g from generate_series(1, 2000) g")
    user_tables = ("select count(*), string_agg(c.oid::regclass::text, ',') from pg_class c "
                   "join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' "
                   "and n.nspname not in ('pg_catalog', 'information_schema', 'pgbouncer') "
                   "and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass "
                   "and d.objid = c.oid and d.deptype = 'e')")
    count, names = sql(environ, ACTIVE, user_tables).split("|")
    sql(environ, PG17_STANDALONE, f"drop table if exists {names} cascade")  # a run before this one copied them
    assert sql(environ, PG17_STANDALONE, "select count(*) from pg_namespace where nspname = 'pgbouncer'") == "1"

    first = inv(environ, "db.logical", "--from", ACTIVE, "--to", PG17_STANDALONE, "--db", "experdb",
                "--verify", "--json")
    report = json.loads(first.stdout)
    assert report["tables"] == int(count) and report["verified"] and report["problems"] == []
    assert sql(environ, PG17_STANDALONE, "select count(*) from items") == "2000"

    sql(environ, ACTIVE, "insert into items select g, 'late' from generate_series(2001, 2100) g")
    late = "select count(*) from items where name = 'late'"
    assert wait_for(lambda: sql(environ, PG17_STANDALONE, late) == "100", timeout=30)
    again = json.loads(inv(environ, "db.logical", "--from", ACTIVE, "--to", PG17_STANDALONE, "--db", "experdb",
                           "--verify", "--json").stdout)
    assert again["problems"] == [] and again["verified"]


def test_cutover_through_the_pool_from_15_to_17_and_back_loses_nothing(environ):
    """On the subscription the test above made: a writer commits numbered
    rows through PgBouncer's entry of the pair while the entry moves to the
    17 server, and back. Counted by PostgreSQL: every commit that returned
    is there once, and the ids (a sequence) never collide."""
    entry = "debian12-pg15.experdb"
    sql(environ, PG17_STANDALONE, "create sequence if not exists cut_seq")
    sql(environ, ACTIVE, "create sequence if not exists cut_seq; select setval('cut_seq', 500)")
    unsubscribed = inv(environ, "db.cutover", "--from", ACTIVE, "--to", "debian14-pg18-standalone", check=False)
    assert unsubscribed.returncode == 1 and "is not subscribed to debian12-pg15-active's experdb" in \
        unsubscribed.stderr and len(unsubscribed.stderr.strip().splitlines()) == 1

    forward = json.loads(inv(environ, "db.cutover", "--from", ACTIVE, "--to", PG17_STANDALONE, "--json").stdout)
    assert forward["entry"] == entry and forward["committed"] > 20
    assert forward["lost"] == [] and forward["duplicated"] == 0 and forward["id_collisions"] == 0
    assert forward["present"] == forward["committed"] and forward["sequences"] >= 2
    # The pool's entry now reaches 17, and the sequences go on from 15's.
    pooled = f"psql -XAt postgresql://experdba@pgbouncer:6432/{entry} -c 'show server_version_num'"
    assert on(environ).run(ACTIVE, pooled).stdout.strip().startswith("17")
    assert sql(environ, PG17_STANDALONE, "select nextval('cut_seq')") == "501"
    again = inv(environ, "db.cutover", "--from", ACTIVE, "--to", PG17_STANDALONE, check=False)
    assert again.returncode == 1 and "already points at debian13-pg17-standalone" in again.stderr

    back = json.loads(inv(environ, "db.cutover", "--back", "--from", ACTIVE, "--to", PG17_STANDALONE,
                          "--json").stdout)
    assert back["destination"] == ACTIVE and back["lost"] == [] and back["duplicated"] == 0
    assert back["id_collisions"] == 0 and back["present"] == back["committed"] > 20
    # 15 holds both runs' rows, as 17 does: the way back was real replication.
    both = (f"select count(*) from atelier_cutover where run in ('{forward['run']}', '{back['run']}')")
    assert wait_for(lambda: sql(environ, PG17_STANDALONE, both) == sql(environ, ACTIVE, both), timeout=30)
    assert sql(environ, ACTIVE, both) == str(forward["committed"] + back["committed"])
    assert on(environ).run(ACTIVE, pooled).stdout.strip().startswith("15")
    nothing = inv(environ, "db.cutover", "--back", "--from", ACTIVE, "--to", PG17_STANDALONE, check=False)
    assert nothing.returncode == 1 and "nothing to go back from" in nothing.stderr


def test_logical_replication_drop_removes_the_slot_and_the_publication(environ):
    inv(environ, "db.logical", "--from", ACTIVE, "--to", PG17_STANDALONE, "--db", "experdb", "--drop")
    assert sql(environ, ACTIVE, "select count(*) from pg_replication_slots where slot_type = 'logical'",
               db="postgres") == "0"
    assert sql(environ, ACTIVE, "select count(*) from pg_publication") == "0"
