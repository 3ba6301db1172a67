"""db.upgrade on the real engine: PostgreSQL 18 (forky's own) to 19
(experimental's), on the upgrade profile's environment. In order, as a DBA
rehearses it: a --check refused for a real reason (extensions 19 lacks); the
pair upgraded by --copy with proof (checksums, amcheck, statistics) and its
standby rebuilt on 19, streaming; a rollback that starts 18 again on its
cluster; the pair again by --link; the standalone by --swap; --clone refused
because this file system has no reflinks. Judged by what PostgreSQL says:
server_version_num, the rows and their sums, pg_stat_replication,
pg_controldata."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from helpers import ROOT, default_sigint, inv, wait_for
from helpers import servers_of as on

pytestmark = pytest.mark.engine

OLD, NEW = "debian14-pg18-active", "debian14-pg19-active"
OLD_SOLO, NEW_SOLO = "debian14-pg18-standalone", "debian14-pg19-standalone"
NEW_STANDBY = "debian14-pg19-standby"
# What forky's archive gives 18 and experimental does not give 19 (atelier
# creates them in experdb): pg_upgrade --check names their libraries.
ONLY_ON_18 = ("hypopg", "pg_qualstats", "pg_stat_kcache", "pg_wait_sampling", "plpgsql_check", "pldbgapi")


@pytest.fixture(scope="module")
def environ(upgrade_environ):
    return upgrade_environ


def sql(environ, target, query, db="experdb", check=True):
    return on(environ).sql(target, query, db, check=check)


def sums(environ, target) -> str:
    """What the user's tables hold, by PostgreSQL's own hashes."""
    return sql(environ, target, "select string_agg(format('%s:%s:%s', t, n, s), ' ' order by t) from ("
                                "select 'accounts' t, count(*) n, sum(hashtextextended(a::text, 0)) s "
                                "from pgbench_accounts a union all "
                                "select 'items', count(*), sum(hashtextextended(i::text, 0)) from items i) q")


def fill(environ, target):
    """A pgbench database and a table with a sequence and indexes, analyzed."""
    on(environ).run(target, "pgbench -i -s 2 -q experdb >/dev/null 2>&1")
    sql(environ, target, "create table items (id bigserial primary key, v text, at timestamptz default now()); "
                         "insert into items (v) select md5(g::text) from generate_series(1, 5000) g; "
                         "create index on items (v); analyze")


def report(run) -> dict:
    return json.loads(run.stdout)


def test_a_bad_upgrade_is_one_line_each(environ):
    for args, said in (
            (("--to", "18"), "already runs PostgreSQL 18"),
            (("--to", "17"), "is a downgrade"),
            (("--to", "19", "--method", "hardlink"), "unknown upgrade method 'hardlink'"),
            (("--to", "20"), "unknown PostgreSQL major '20'"),
    ):
        run = inv(environ, "db.upgrade", "-t", OLD, *args, check=False)
        assert run.returncode == 1 and said in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    run = inv(environ, "db.upgrade", "-t", "debian14-pg18-standby", "--to", "19", check=False)
    assert "is a standby: upgrade its primary (debian14-pg18-active)" in run.stderr
    run = inv(environ, "db.upgrade", "-t", OLD, "--to", "19", "--method", "link", check=False)
    assert run.returncode == 1 and "leaves debian14-pg18-active's cluster unusable" in run.stderr
    assert sql(environ, OLD, "select pg_is_in_recovery()") == "f"


def test_check_refuses_for_extensions_19_lacks_and_18_runs_on(environ):
    fill(environ, OLD)
    before = sums(environ, OLD)
    run = inv(environ, "db.upgrade", "-t", OLD, "--to", "19", "--check", check=False)
    assert run.returncode == 1
    assert "pg_upgrade --check refused the upgrade of debian14-pg18-active to PostgreSQL 19" in run.stderr
    for extension in ONLY_ON_18:
        assert f"DROP EXTENSION {extension} in experdb" in run.stderr, run.stderr
    assert "library plugin_debugger" in run.stderr  # pldbgapi's library, by its own name
    assert sql(environ, OLD, "show server_version_num").startswith("18") and sums(environ, OLD) == before
    assert sql(environ, NEW, "show server_version_num").startswith("19")  # 19's own cluster is back


def test_ctrl_c_before_the_new_server_starts_leaves_both_as_they_were(environ):
    sql(environ, OLD, "drop extension " + ", ".join(ONLY_ON_18))
    inv(environ, "pg.restart", "-t", OLD)  # a dropped extension stays dropped
    assert wait_for(lambda: sql(environ, OLD, "select count(*) from pg_extension where extname = 'hypopg'",
                                check=False) == "0", timeout=30)
    before = sums(environ, OLD)
    run = subprocess.Popen([sys.executable, "-m", "invoke", "db.upgrade", "-t", OLD, "--to", "19", "--yes"],
                           cwd=ROOT, env={**os.environ, **environ}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    said = []
    for line in run.stderr:
        said.append(line)
        if "pg_upgrade --check" in line:
            run.send_signal(signal.SIGINT)
            break
    rest = run.communicate(timeout=120)[1]
    assert run.returncode == 130 and "atelier: interrupted" in rest, "".join(said) + rest
    assert "putting debian14-pg18-active and debian14-pg19-active back" in rest and "refused" not in rest
    assert sql(environ, OLD, "select pg_is_in_recovery()") == "f" and sums(environ, OLD) == before
    # 19's own cluster is back in its place (test_pg19 wrote d19 there), and
    # nothing pg_upgrade started runs on the 18 cluster in 19's container.
    assert sql(environ, NEW, "select count(*) from d19") == "1"
    assert on(environ).run(NEW, "pgrep -f '[p]ostgres -D /var/lib/postgresql/18/main' || true").stdout.strip() == ""
    assert on(environ).run(NEW, "ls /var/lib/postgresql/19 | grep -c before-upgrade || true").stdout.strip() == "0"


def test_copy_upgrades_the_pair_with_proof_and_the_standby_streams_on_19(environ):
    before = sums(environ, OLD)
    checked = inv(environ, "db.upgrade", "-t", OLD, "--to", "19", "--check")
    assert "pg_upgrade --check passed" in checked.stderr + checked.stdout
    assert sql(environ, OLD, "select pg_is_in_recovery()") == "f" and sums(environ, OLD) == before
    shown = report(inv(environ, "db.upgrade", "-t", OLD, "--to", "19", "--yes", "--json"))
    assert shown["method"] == "copy" and not shown["differences"] and not shown["index_errors"]
    assert shown["tables"] >= 5 and shown["rows"] >= 200000 + 5000
    assert shown["indexes_checked"] > 100 and "kept by pg_upgrade" in shown["statistics"]
    assert sql(environ, NEW, "show server_version_num").startswith("19") and sums(environ, NEW) == before
    # The sequence goes on where 18 left it.
    assert sql(environ, NEW, "insert into items (v) values ('19') returning id") == "5001"
    assert sql(environ, NEW, "select count(*) from pg_stats where tablename = 'items'") != "0"
    assert shown["standby"] == f"{NEW_STANDBY} streams from {NEW} on PostgreSQL 19"
    assert wait_for(lambda: sql(environ, NEW_STANDBY, "select count(*) from items where v = '19'", check=False)
                    == "1", timeout=30)
    assert sql(environ, NEW, "select state from pg_stat_replication") == "streaming"
    assert "inv db.upgrade --rollback" in shown["rollback"]


def test_rollback_after_copy_starts_18_again_on_its_cluster_as_it_was(environ):
    run = inv(environ, "db.upgrade", "--rollback", "-t", OLD)
    assert "debian14-pg18-active runs PostgreSQL 18 again" in run.stdout
    assert sql(environ, OLD, "show server_version_num").startswith("18")
    assert sql(environ, OLD, "select count(*) from items") == "5000"  # 19's write is not in 18
    assert sql(environ, OLD, "select count(*) from pg_extension where extname = 'hypopg'") == "0"
    assert on(environ).run(NEW, 'pg_isready -q -h /var/run/postgresql', check=False).returncode != 0
    again = inv(environ, "db.upgrade", "--rollback", "-t", OLD, check=False)
    assert again.returncode == 1 and "nothing to roll back" in again.stderr


def test_link_upgrades_the_pair_and_the_old_cluster_cannot_come_back(environ):
    before = sums(environ, OLD)
    shown = report(inv(environ, "db.upgrade", "-t", OLD, "--to", "19", "--method", "link", "--yes", "--json"))
    assert shown["method"] == "link" and not shown["differences"] and not shown["index_errors"]
    assert sums(environ, NEW) == before
    assert "unusable" in shown["rollback"]
    # pg_upgrade --link renamed the old pg_control: 18 cannot start on it.
    listed = on(environ).run(NEW, "ls /var/lib/postgresql/18/main/global/ | grep pg_control").stdout.split()
    assert listed == ["pg_control.old"]
    assert wait_for(lambda: sql(environ, NEW_STANDBY, "select count(*) from items", check=False) == "5000",
                    timeout=30)
    run = inv(environ, "db.upgrade", "--rollback", "-t", OLD, check=False)
    assert run.returncode == 1 and "upgraded with --link to debian14-pg19-active" in run.stderr


def test_clone_is_refused_where_the_file_system_has_no_reflinks(environ):
    fill(environ, OLD_SOLO)
    sql(environ, OLD_SOLO, "drop extension " + ", ".join(ONLY_ON_18))
    run = inv(environ, "db.upgrade", "-t", OLD_SOLO, "--to", "19", "--method", "clone", check=False)
    assert run.returncode == 1 and "clon" in run.stderr and "runs again as it was" in run.stderr, run.stderr
    assert sql(environ, OLD_SOLO, "select count(*) from items") == "5000"


def test_swap_upgrades_the_standalone(environ):
    before = sums(environ, OLD_SOLO)
    shown = report(inv(environ, "db.upgrade", "-t", OLD_SOLO, "--to", "19", "--method", "swap", "--yes",
                       "--json"))
    assert shown["method"] == "swap" and not shown["differences"] and not shown["index_errors"]
    assert shown["standby"] == ""  # a standalone has none
    assert sql(environ, NEW_SOLO, "show server_version_num").startswith("19") and sums(environ, NEW_SOLO) == before


def test_a_cluster_in_a_volume_of_its_own_is_copied_into_the_shared_one_once(settings_for_legacy):
    """Clusters made before every major of an OS and role shared one volume
    lived in a volume per container: `up` copies one into its major's folder
    (once), and keeps the old volume."""
    from atelier.core.model import Environment, select
    from atelier.engine.up import bring_over_legacy_data
    from helpers import ENGINE

    env = Environment(settings_for_legacy, select("upgrade"))
    server = env.container("debian14-pg18-standalone")
    legacy, shared = env.legacy_data_volume(server), env.volume_name(server, "pgdata")
    client = ENGINE.client
    image = server.image.name
    said = []
    try:
        client.volumes.create(legacy)
        client.volumes.create(shared)
        client.containers.run(image, ["bash", "-c", "mkdir -p /v/main && echo 18 > /v/main/PG_VERSION && "
                                                    "chown -R postgres /v"],
                              entrypoint=[], remove=True, volumes={legacy: {"bind": "/v", "mode": "rw"}})
        assert bring_over_legacy_data(client, env, server, said.append)
        assert not bring_over_legacy_data(client, env, server, said.append)  # once: the folder is there
        listed = client.containers.run(image, ["bash", "-c", "stat -c '%U %n' /v/18/main/PG_VERSION; "
                                                             "cat /v/18/main/PG_VERSION; ls -A /v"],
                                       entrypoint=[], remove=True, volumes={shared: {"bind": "/v", "mode": "ro"}})
        assert listed.decode().split() == ["postgres", "/v/18/main/PG_VERSION", "18", "18"]
        assert len(said) == 1 and f"{legacy} is kept" in said[0]
        client.volumes.get(legacy)  # kept
    finally:
        for name in (legacy, shared):
            try:
                client.volumes.get(name).remove()
            except Exception:
                pass


@pytest.fixture
def settings_for_legacy(tmp_path):
    from atelier.core.settings import load_settings
    from helpers import project_settings
    return load_settings(environ={**project_settings("ateliertest-legacy", "172.18", 27000),
                                  "ATELIER_STATE_DIR": str(tmp_path), "ATELIER_DEBIAN_EXPERIMENTAL": "1"})
