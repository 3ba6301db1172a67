"""PostgreSQL 19 (19~rc1 from Debian's experimental, ATELIER_DEBIAN_EXPERIMENTAL=1)
on debian14, beside forky's own 18, on the real engine: the image carries both
servers, the pair streams, data checksums, what 19 offers of the extensions
and what it leaves out (said, not hidden), atelier's db tasks on 19, a
switchover drill there and back, and VS Code's configs. (No
debug build of 19 from the archive's source, as test_debian14 makes of 18:
this machine's mirror lists experimental's source package of 19 and does not
carry its files, 404.)"""

from __future__ import annotations

import json

import pytest

from helpers import inv, wait_for
from helpers import servers_of as on

pytestmark = pytest.mark.engine

ACTIVE, STANDBY, STANDALONE = (f"debian14-pg19-{r}" for r in ("active", "standby", "standalone"))


@pytest.fixture(scope="module")
def environ(upgrade_environ):
    return upgrade_environ


def sql(environ, target, query, db="experdb", check=True):
    return on(environ).sql(target, query, db, check=check)


def test_the_image_of_19_carries_forkys_18_for_pg_upgrade(environ):
    for name in (ACTIVE, STANDBY, STANDALONE):
        assert sql(environ, name, "show server_version_num").startswith("19")
    listed = on(environ).run(ACTIVE, "ls /usr/lib/postgresql; "
                                     "/usr/lib/postgresql/18/bin/postgres --version; "
                                     "/usr/lib/postgresql/19/bin/pg_upgrade --version").stdout
    assert listed.split()[:2] == ["18", "19"]
    assert "postgres (PostgreSQL) 18." in listed and "pg_upgrade (PostgreSQL) 19" in listed
    policy = on(environ).run(ACTIVE, "dpkg-query -W -f='${Package} ${Version}\\n' postgresql-19 postgresql-18 "
                                     "libpq5 perl-base").stdout
    versions = dict(line.split() for line in policy.splitlines())
    assert versions["postgresql-19"].startswith("19~") and versions["libpq5"].startswith("19~")
    assert versions["postgresql-18"].startswith("18.")
    assert "~" not in versions["perl-base"]  # the release's own perl, not experimental's
    assert sql(environ, "debian14-pg18-active", "show server_version_num").startswith("18")


def test_the_standby_of_19_streams(environ):
    sql(environ, ACTIVE, "create table if not exists d19 (n int); insert into d19 values (19)")
    assert wait_for(lambda: sql(environ, STANDBY, "select count(*) from d19 where n = 19", check=False) == "1",
                    timeout=30)
    rows = json.loads(inv(environ, "db.replication", "-t", ACTIVE, "--json").stdout)
    assert [(r["standby"], r["state"]) for r in rows] == [(STANDBY, "streaming")]
    assert sql(environ, STANDBY, "select pg_is_in_recovery()") == "t"
    assert sql(environ, ACTIVE, "show data_checksums") == sql(environ, STANDBY, "show data_checksums") == "on"


def test_19_gets_what_experimental_and_the_git_builds_offer_and_says_what_it_leaves_out(environ):
    preload = sql(environ, ACTIVE, "show shared_preload_libraries")
    assert [p.strip() for p in preload.split(",")] == ["pg_stat_statements", "pg_hint_plan"]
    created = set(sql(environ, ACTIVE, "select extname from pg_extension").split())
    assert {"pg_stat_statements", "plpython3u", "pg_hint_plan"} <= created
    assert sql(environ, ACTIVE, "select count(*) from pg_stat_statements") != "0"
    left_out = on(environ).run(ACTIVE, ". /etc/atelier/pg.env; echo \"$PG_EXTENSIONS_LEFT_OUT\"").stdout
    for name in ("pgsentinel", "pg_store_plans", "pg_ensure_queryid"):
        assert f"{name} " in left_out and "not 19" in left_out


def test_db_report_and_tune_read_postgresql_19(environ):
    lines = json.loads(inv(environ, "db.report", "-t", ACTIVE, "--json", check=False).stdout)
    assert any(x["check"] == "server" and x["value"] == "PostgreSQL 19" for x in lines)
    assert any(x["check"] == "replication" and x["subject"] == "debian14_pg19_standby" for x in lines)
    shown = json.loads(inv(environ, "db.tune", "-t", ACTIVE, "--memory", "8GB", "--json").stdout)
    proposed = {s["setting"]: s["proposed"] for s in shown["settings"]}
    assert proposed["shared_buffers"] == "2GB"
    inv(environ, "db.tune", "-t", STANDALONE, "--memory", "2GB", "--cpus", "2", "--apply", "--restart")
    try:
        assert sql(environ, STANDALONE, "show shared_buffers") == "512MB"
        assert sql(environ, STANDALONE, "show random_page_cost") == "1.1"
    finally:
        inv(environ, "db.tune", "-t", STANDALONE, "--reset", "--restart")
    assert sql(environ, STANDALONE, "show random_page_cost") == "4"



def test_a_switchover_drill_on_19_and_back_loses_nothing(environ):
    for old, new in ((ACTIVE, STANDBY), (STANDBY, ACTIVE)):
        shown = json.loads(inv(environ, "db.drill", "switchover", "-t", "debian14-pg19-*", "--json").stdout)
        assert (shown["old_primary"], shown["new_primary"]) == (old, new)
        assert shown["committed"] > 20 and shown["lost_count"] == 0 and shown["present"] == shown["committed"]
        assert sql(environ, new, "select pg_is_in_recovery()") == "f"
        assert wait_for(lambda: sql(environ, old, "select status from pg_stat_wal_receiver", check=False)
                        == "streaming", timeout=30)


def test_vscode_configs_name_19s_own_programs_and_paths(environ):
    folder = "/var/lib/postgresql/workspace/.vscode"
    files = {name: json.loads(on(environ).run(STANDALONE, f"cat {folder}/{name}").stdout)
             for name in ("launch.json", "c_cpp_properties.json", "settings.json")}
    assert files["settings.json"]["atelier.postgres"] == "/usr/lib/postgresql/19/bin/postgres"
    include = files["c_cpp_properties.json"]["configurations"][0]["includePath"]
    assert "/usr/include/postgresql/19/server" in include
    launch = {e["name"]: e for e in files["launch.json"]["configurations"]}["postgres (launch)"]["args"]
    paths = [files["settings.json"]["atelier.postgres"], launch[launch.index("-D") + 1],
             *[p for p in include if "/workspace/" not in p]]
    assert on(environ).run(STANDALONE, " && ".join(f"test -e {p}" for p in paths), check=False).returncode == 0, \
        paths
