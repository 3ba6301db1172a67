"""debian14 (forky, Debian testing pinned by name) with PostgreSQL 18 from its
own archive, on the real engine: the image, streaming, data checksums, the
archive's extensions, atelier's db tasks on 18, and a debug build of the
archive's PostgreSQL 18 source installed over the packaged server.

The environment is the debian profile that test_db_service.py and
test_replication.py share (conftest.py); this module is its own so that
what PostgreSQL 18 costs in CI (mostly one cold build) stays visible.
Run alone with `python3 -m pytest tests/engine/debian/test_debian14.py`."""

from __future__ import annotations

import json

import pytest

from helpers import inv, wait_for
from helpers import servers_of as on

pytestmark = pytest.mark.engine

ACTIVE, STANDBY, STANDALONE = (f"debian14-pg18-{r}" for r in ("active", "standby", "standalone"))


@pytest.fixture(scope="module")
def environ(debian_environ):
    return debian_environ


def sql(environ, target, query, db="experdb", check=True):
    return on(environ).sql(target, query, db, check=check)


def test_forky_is_pinned_by_name_and_serves_postgresql_18(environ):
    sources = on(environ).run(ACTIVE, "cat /etc/apt/sources.list").stdout
    assert "forky main" in sources and "forky-security main" in sources and "testing" not in sources
    assert "VERSION_CODENAME=forky" in on(environ).run(ACTIVE, "cat /etc/os-release").stdout
    for name in (ACTIVE, STANDBY, STANDALONE):
        assert sql(environ, name, "show server_version_num").startswith("18")
    assert sql(environ, ACTIVE, "show io_method") in ("worker", "io_uring", "sync")


def test_the_standby_streams(environ):
    sql(environ, ACTIVE, "create table if not exists d14 (n int); insert into d14 values (18)")
    assert wait_for(lambda: sql(environ, STANDBY, "select count(*) from d14 where n = 18", check=False) == "1",
                    timeout=30)
    rows = json.loads(inv(environ, "db.replication", "-t", ACTIVE, "--json").stdout)
    assert [(r["standby"], r["state"]) for r in rows] == [(STANDBY, "streaming")]


def test_data_checksums_are_on_for_every_cluster_atelier_makes(environ):
    for name in (ACTIVE, STANDBY, STANDALONE, "debian12-pg15-active", "debian13-pg17-standalone"):
        assert sql(environ, name, "show data_checksums") == "on", name


def test_the_archives_extensions_are_there(environ):
    preload = sql(environ, ACTIVE, "show shared_preload_libraries")
    for library in ("pg_stat_statements", "pg_qualstats", "pg_stat_kcache", "pg_wait_sampling", "plugin_debugger"):
        assert library in preload
    available = set(sql(environ, ACTIVE, "select name from pg_available_extensions").split())
    assert {"pg_qualstats", "pg_stat_kcache", "pg_wait_sampling", "pldbgapi", "plpgsql_check", "hypopg",
            "pg_stat_statements"} <= available
    sql(environ, ACTIVE, "create extension if not exists hypopg; create extension if not exists plpgsql_check")


def test_db_report_and_tune_read_postgresql_18(environ):
    lines = json.loads(inv(environ, "db.report", "-t", ACTIVE, "--json", check=False).stdout)
    assert any(x["check"] == "server" and x["value"] == "PostgreSQL 18" for x in lines)
    assert any(x["check"] == "replication" and x["subject"] == "debian14_pg18_standby" for x in lines)
    shown = json.loads(inv(environ, "db.tune", "-t", ACTIVE, "--memory", "8GB", "--json").stdout)
    assert {s["setting"]: s["proposed"] for s in shown["settings"]}["shared_buffers"] == "2GB"


def test_a_debug_build_of_the_archives_postgresql_18_runs_in_the_packaged_service(environ):
    inv(environ, "workspace.get", "distro", "-t", STANDALONE)
    assert "18." in on(environ).run(STANDALONE, "grep -m1 PACKAGE_VERSION= ~/workspace/postgres/configure").stdout
    inv(environ, "pg.configure", "-t", STANDALONE, "--mode", "debug")
    # The server and its programs (make all, make install): what the test
    # asks of the build; the extensions stay the archive's.
    inv(environ, "pg.make", "-t", STANDALONE, "--what", "all", timeout=1800)
    inv(environ, "pg.install", "-t", STANDALONE, "--core")
    inv(environ, "pg.restart", "-t", STANDALONE)
    assert wait_for(lambda: sql(environ, STANDALONE, "show debug_assertions", check=False) == "on", timeout=60)
    assert sql(environ, STANDALONE, "show server_version_num").startswith("18")
    assert sql(environ, STANDALONE, "show data_checksums") == "on"
