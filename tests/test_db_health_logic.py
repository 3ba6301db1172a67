"""The pure parts of db.tune, db.report, db.bench and the pgbouncer service:
the note's rules, the levels, pgbench's output, the rendered configuration."""

import dataclasses

import pytest

from atelier.core.errors import AtelierError
from atelier.dba.health import json_objects, report_lines, worst
from atelier.dba.pgbench import Run, parse_clients, parse_run, parse_vias, sections, write_chart, write_csv
from atelier.render.runtime import pgbouncer_files, roles_sql, runtime_files
from atelier.dba.tuning import GB, MB, Machine, check_choices, differs, parse_memory, propose, setting_bytes

NOTE = {p.name: p.value for p in propose(Machine(32 * GB, 8, "ssd", "oltp", 200))}


# ---- db.tune: one test per rule ----------------------------------------------------------------

def test_memory_follows_the_note_for_32_gb():
    assert NOTE["shared_buffers"] == "8GB"
    assert NOTE["effective_cache_size"] == "24GB"


def test_ssd_storage_follows_the_note():
    assert NOTE["random_page_cost"] == "1.1" and NOTE["effective_io_concurrency"] == "200"


def test_hdd_storage_follows_the_note():
    hdd = {p.name: p.value for p in propose(Machine(32 * GB, 8, "hdd", "oltp", 200))}
    assert hdd["random_page_cost"] == "4.0" and hdd["effective_io_concurrency"] == "2"


def test_wal_follows_the_note():
    assert NOTE["wal_buffers"] == "256MB" and NOTE["checkpoint_completion_target"] == "0.9"
    assert NOTE["max_wal_size"] == "4GB" and NOTE["min_wal_size"] == "1GB"
    olap = {p.name: p.value for p in propose(Machine(32 * GB, 8, "ssd", "olap", 200))}
    assert olap["max_wal_size"] == "16GB" and olap["min_wal_size"] == "4GB"


def test_maintenance_work_mem_is_a_sixteenth_capped_at_2gb():
    assert NOTE["maintenance_work_mem"] == "2GB"
    small = {p.name: p.value for p in propose(Machine(4 * GB, 2))}
    assert small["maintenance_work_mem"] == "256MB"


def test_work_mem_shrinks_with_connections_and_grows_for_olap():
    olap = {p.name: p.value for p in propose(Machine(32 * GB, 8, "ssd", "olap", 200))}
    assert olap["work_mem"] == "256MB"  # the note's value is for few, large queries
    assert NOTE["work_mem"] == "32MB"  # 24 GB over 600 sorts, to the nearest power of two
    many = {p.name: p.value for p in propose(Machine(32 * GB, 8, "ssd", "oltp", 2000))}
    assert setting_bytes(many["work_mem"]) < setting_bytes(NOTE["work_mem"])
    tiny = {p.name: p.value for p in propose(Machine(1 * GB, 1, connections=5000))}
    assert setting_bytes(tiny["work_mem"]) == 4 * MB  # never below the default


def test_parallel_workers_follow_cpus():
    assert NOTE["max_parallel_workers_per_gather"] == "4" and NOTE["max_parallel_workers"] == "8"
    two = {p.name: p.value for p in propose(Machine(8 * GB, 2))}
    assert two["max_parallel_workers"] == "2" and two["max_parallel_workers_per_gather"] == "1"
    assert two["max_worker_processes"] == "8"  # never below the default


def test_max_connections_is_proposed_only_when_asked():
    assert "max_connections" not in NOTE
    asked = {p.name: p.value for p in propose(Machine(32 * GB, 8, connections=40), set_connections=True)}
    assert asked["max_connections"] == "40"


def test_differs_compares_sizes_by_value():
    shared = next(p for p in propose(Machine(32 * GB, 8)) if p.name == "shared_buffers")
    assert not differs(shared, "8GB") and not differs(shared, "8192MB") and differs(shared, "128MB")
    cost = next(p for p in propose(Machine(32 * GB, 8)) if p.name == "random_page_cost")
    assert not differs(cost, "1.1") and differs(cost, "4")


@pytest.mark.parametrize("text, size", [("32GB", 32 * GB), ("512MB", 512 * MB), ("32G", 32 * GB), ("1.5GB", 1536 * MB)])
def test_memory_sizes(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["12XB", "GB", "", "32 GiBs", "1MB"])
def test_bad_memory_is_one_line(text):
    with pytest.raises(AtelierError) as caught:
        parse_memory(text)
    assert "\n" not in str(caught.value)


def test_bad_choices_name_the_valid_ones():
    with pytest.raises(AtelierError, match="valid: oltp, olap, mixed"):
        check_choices("ssd", "web", None)
    with pytest.raises(AtelierError, match="valid: ssd, hdd"):
        check_choices("nvme", "oltp", None)
    with pytest.raises(AtelierError, match="1 or more"):
        check_choices("ssd", "oltp", 0)


# ---- db.report ---------------------------------------------------------------------------------

def cluster(**over):
    facts = {"version": 150020, "in_recovery": False, "max_connections": 100, "connections": 5,
             "databases": [{"db": "experdb", "hit": 990_000, "read": 10_000}], "xid_age": [{"db": "experdb", "age": 100}],
             "long": None, "blocked": None, "replication": None}
    return {**facts, **over}


def levels(lines, check):
    return [line.level for line in lines if line.check == check]


def test_cache_hit_levels_follow_the_note():
    assert levels(report_lines("s", cluster(), []), "cache hit") == ["warn"]  # 99.0%: not above 99
    good = cluster(databases=[{"db": "d", "hit": 999_000, "read": 1_000}])
    bad = cluster(databases=[{"db": "d", "hit": 900_000, "read": 100_000}])
    idle = cluster(databases=[{"db": "d", "hit": 10, "read": 90}])
    assert levels(report_lines("s", good, []), "cache hit") == ["ok"]
    assert levels(report_lines("s", bad, []), "cache hit") == ["crit"]
    assert levels(report_lines("s", idle, []), "cache hit") == ["-"]  # too few reads to judge


@pytest.mark.parametrize("used, level", [(69, "ok"), (70, "warn"), (85, "warn"), (86, "crit")])
def test_connection_levels_follow_the_note(used, level):
    assert levels(report_lines("s", cluster(connections=used), []), "connections") == [level]


def test_blocker_and_blocked_are_both_named():
    blocked = [{"pid": 20, "db": "experdb", "user": "u", "seconds": 4, "query": "select count(*) from t",
                "blockers": [{"pid": 10, "user": "v", "state": "idle in transaction", "query": "lock table t"}]}]
    lines = report_lines("s", cluster(blocked=blocked), [])
    waiting = next(x for x in lines if x.check == "blocked")
    holding = next(x for x in lines if x.check == "blocking")
    assert "pid 20" in waiting.subject and "pid 10" in waiting.detail
    assert "pid 10" in holding.subject and "blocks pid 20" in holding.detail


def test_replication_lag_and_an_unused_slot():
    rows = [{"standby": "b", "lag_bytes": 200 << 20, "retained_bytes": 0, "state": "streaming", "sync_state": "async",
             "slot": "b"},
            {"standby": None, "lag_bytes": None, "retained_bytes": 10, "state": "slot unused", "sync_state": None,
             "slot": "old"}]
    lines = report_lines("s", cluster(replication=rows), [])
    assert levels(lines, "replication") == ["crit", "ok"]
    assert worst(lines) == "crit"


def test_database_lines_and_xid_age():
    db = {"db": "experdb", "statements": None, "unused_indexes": [{"index": "public.i", "table": "public.t", "size": 8192}],
          "tables": [{"table": "public.t", "size": 1, "live": 1000, "dead": 1900, "vacuumed": None, "analyzed": None}]}
    lines = report_lines("s", cluster(xid_age=[{"db": "experdb", "age": 1_700_000_000}]), [db])
    assert levels(lines, "unused index") == ["warn"] and levels(lines, "table") == ["crit"]
    assert levels(lines, "xid age") == ["crit"]
    assert any("CREATE EXTENSION pg_stat_statements" in x.detail for x in lines)


def test_json_objects_reads_psql_output_broken_across_lines():
    text = '{"kind" : "cluster", "a" : [{"x":1}, \n {"x":2}]}\n{"kind" : "database"}\n'
    assert [o["kind"] for o in json_objects(text)] == ["cluster", "database"]


# ---- db.bench ----------------------------------------------------------------------------------

PGBENCH_OUT = """transaction type: <builtin: TPC-B (sort of)>
number of clients: 50
number of transactions actually processed: 2350
number of failed transactions: 0 (0.000%)
latency average = 61.311 ms
tps = 816.2 (without initial connection time)
"""


def test_a_run_is_read_from_pgbench_and_the_log():
    raw = sections(f"@@code 0\n@@p99 11707\n@@peak 50\n@@out\n{PGBENCH_OUT}@@err\n")
    run = parse_run("s", "direct", "tpcb-like", 50, 3, raw)
    assert (run.tps, run.latency_avg_ms, run.p99_ms, run.transactions, run.failed, run.max_server_connections) == \
        (816.2, 61.311, 11.707, 2350, 0, 50)
    assert run.error == ""


def test_too_many_clients_is_the_servers_own_words():
    err = ("pgbench: error: connection to server at \"127.0.0.1\", port 5432 failed: "
           "FATAL:  sorry, too many clients already\npgbench: error: could not create connection for client 40\n")
    run = parse_run("s", "direct", "tpcb-like", 200, 3, sections(f"@@code 1\n@@p99 \n@@peak 37\n@@out\n@@err\n{err}"))
    assert run.error == "FATAL:  sorry, too many clients already" and run.tps is None


@pytest.mark.parametrize("text", ["0", "10,0", "x", "", "10,,-5", "6000"])
def test_bad_client_counts_are_one_line(text):
    with pytest.raises(AtelierError, match="--clients"):
        parse_clients(text)


def test_client_counts_and_vias():
    assert parse_clients("500,10, 50,10") == [10, 50, 500]
    assert parse_vias("direct,pgbouncer") == ["direct", "pgbouncer"]
    with pytest.raises(AtelierError, match="valid: direct, pgbouncer"):
        parse_vias("odyssey")


def test_csv_and_chart_are_written(tmp_path):
    runs = [Run("s", via, "tpcb-like", n, 3, 1000.0 / n, 1.0, 2.0, 100, 0, n, "") for via in ("direct", "pgbouncer")
            for n in (10, 50)]
    runs.append(Run("s", "direct", "tpcb-like", 500, 3, None, None, None, 0, 0, 37, "FATAL: too many"))
    write_csv(tmp_path / "r.csv", runs)
    write_chart(tmp_path / "r.png", runs, "title")
    assert (tmp_path / "r.csv").read_text().count("\n") == 6
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- the pgbouncer service ---------------------------------------------------------------------

def test_pgbouncer_runs_only_when_asked(make_env, settings):
    assert "pgbouncer" not in [c.name for c in make_env("debian").containers]
    on = dataclasses.replace(settings, pgbouncer=True)
    from atelier.core.model import Environment, select
    env = Environment(on, select("debian"), nofile_ceiling=20000)
    pgbouncer = env.container("pgbouncer")
    assert pgbouncer.ports == () and pgbouncer.address.endswith(".200.4")
    assert "atelier-pgbouncer" in [i.name for i in env.images]


def test_pgbouncer_pools_every_primary_by_the_models_names(settings):
    from atelier.core.model import Environment, select
    on = dataclasses.replace(settings, pgbouncer=True, pgbouncer_auth_password='pa"ss')
    env = Environment(on, select("debian"), nofile_ceiling=20000)
    files = pgbouncer_files(env)
    ini = files["etc/pgbouncer/pgbouncer.ini"][0].decode()
    active = env.container("debian12-pg15-active")
    assert f"debian12-pg15-active.experdb = host={active.address} port=5432 dbname=experdb" in ini
    assert "debian12-pg15-standby." not in ini and "pool_mode = transaction" in ini
    userlist, mode = files["etc/pgbouncer/userlist.txt"]
    assert mode == 0o600 and b'"pgbouncer_auth" "pa""ss"' in userlist
    assert files["etc/pgbouncer/userlist.txt"] == runtime_files(env, env.container("pgbouncer"))["etc/pgbouncer/userlist.txt"]
    assert "host    all         postgres    0.0.0.0/0       reject" in files["etc/pgbouncer/pg_hba.conf"][0].decode()


def test_the_auth_role_may_only_look_up_one_secret(settings):
    sql = roles_sql(settings)
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION" in sql
    assert "REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC" in sql
    assert "usename <> 'postgres'" in sql and sql.count("\\connect") == 2
