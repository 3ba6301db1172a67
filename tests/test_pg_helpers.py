"""The container-side helpers, for real on debian12/PostgreSQL 15, all from
the host over the SSH path: source from the archive, a debug build
installed over the packaged server and run by its service, the server under
valgrind, and a coverage report on the host and on apache2."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from atelier import engine
from atelier.model import Environment, select
from atelier.settings import load_settings
from helpers import inv, project_settings

pytestmark = pytest.mark.engine

PROJECT = "ateliertest-pg"
TEST_ENV = project_settings(PROJECT, "172.25", 20000)
BUILDER = "debian12-pg15-standalone"
FAST = ("--what", "world-bin")  # everything but the documentation


@pytest.fixture(scope="module")
def environ(tmp_path_factory):
    values = {**TEST_ENV, "ATELIER_STATE_DIR": str(tmp_path_factory.mktemp("pg-state"))}
    inv(values, "build", "--os", "debian12", "--pg", "15")
    engine.up(Environment(load_settings(environ=values), select(os="debian12", pg="15")), say=print)
    yield values
    engine.down(Environment(load_settings(environ=values), select()), remove_volumes=True, say=lambda _: None)


def sql(environ, query: str, target: str = BUILDER) -> str:
    return inv(environ, "run", "-t", target, "--", "psql", "-XAtc", query).stdout.strip()


def test_source_from_the_distribution_archive(environ):
    inv(environ, "workspace.get", "distro", "-t", BUILDER)
    listing = inv(environ, "run", "-t", BUILDER, "--", "ls ~/workspace/postgres").stdout.split()
    assert {"configure", "src", "contrib", "GNUmakefile.in"} <= set(listing)
    again = inv(environ, "workspace.get", "distro", "-t", BUILDER, check=False)
    assert again.returncode == 1 and "is not empty: keep it, or add --force" in again.stderr
    assert again.stderr.strip().endswith("checking the workspace failed (exit 4)")


def test_configure_dry_run_prints_the_rewritten_line(environ):
    line = inv(environ, "pg.configure", "-t", BUILDER, "--mode", "debug", "--dry-run").stdout.strip()
    assert line.startswith("./configure ")
    assert "--enable-cassert" in line and "--enable-debug" in line and "-Og" in line
    assert "-O2" not in line and "--runstatedir" not in line and "_FORTIFY_SOURCE" not in line
    assert "--prefix=/usr" in line  # the packaged server's own layout


def test_debug_build_runs_in_the_packaged_service(environ):
    assert sql(environ, "show debug_assertions") == "off"
    inv(environ, "pg.configure", "-t", BUILDER, "--mode", "debug")
    kept = inv(environ, "run", "-t", BUILDER, "--", "cat ~/workspace/postgres/.atelier-configure.debug").stdout
    assert "--enable-cassert" in kept
    inv(environ, "pg.make", "-t", BUILDER, *FAST)
    inv(environ, "pg.install", "-t", BUILDER)
    inv(environ, "pg.restart", "-t", BUILDER)
    assert sql(environ, "show debug_assertions") == "on"
    status = inv(environ, "pg.status", "-t", BUILDER).stdout
    assert "postgresql@15-main" in status and "active (running)" in status


def test_a_login_shell_rebuilds_from_the_cache_pg_make_filled(environ):
    # Both the object (gcc through ccache's PATH wrappers) and the JIT bitcode
    # (the packaged $(CLANG), an absolute path) must come from the cache, and
    # the shell's locale must match the helpers' since ccache hashes it.
    adt = "~/workspace/postgres/src/backend/utils/adt"
    rebuild = (f"cd {adt} && rm int.o int.bc && ccache -z >/dev/null && make -s int.o int.bc && "
               "ccache --print-stats")
    stats = inv(environ, "run", "-t", BUILDER, "--", f"bash -lc '{rebuild}'").stdout
    counters = dict(line.split("\t") for line in stats.splitlines() if "\t" in line)
    assert (counters["direct_cache_hit"], counters["cache_miss"]) == ("2", "0")


def test_make_failure_names_the_step_and_exit_code(environ):
    broken = "~/workspace/postgres/src/backend/utils/adt/int.c"
    inv(environ, "run", "-t", BUILDER, "--", f"cp {broken} /tmp/int.c && echo '#error atelier test' >> {broken}")
    try:
        run = inv(environ, "pg.make", "-t", BUILDER, *FAST, check=False)
    finally:
        inv(environ, "run", "-t", BUILDER, "--", f"cp /tmp/int.c {broken}")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == f"atelier: {BUILDER}: make world-bin failed (exit 2)"
    assert "atelier test" in run.stderr  # the compiler's own error is shown too


def test_valgrind_mode_serves_queries_and_leaves_per_pid_logs(environ, tmp_path):
    inv(environ, "pg.configure", "-t", BUILDER, "--mode", "valgrind")
    inv(environ, "pg.make", "-t", BUILDER, *FAST)
    inv(environ, "pg.install", "-t", BUILDER)
    inv(environ, "pg.valgrind", "-t", BUILDER)
    try:
        assert sql(environ, "select 6 * 7") == "42"
        logs = inv(environ, "run", "-t", BUILDER, "--", "ls ~/workspace/valgrind").stdout.split()
        assert len([f for f in logs if re.fullmatch(r"\d+\.log", f)]) >= 2  # postmaster and children
        inv(environ, "pg.valgrind", "-t", BUILDER, "--fetch", str(tmp_path / "{name}"))
        fetched = list((tmp_path / BUILDER).glob("*.log"))
        assert fetched and "Memcheck" in fetched[0].read_text()
    finally:
        inv(environ, "pg.valgrind", "-t", BUILDER, "--stop")
    assert sql(environ, "select 1") == "1"


def test_coverage_report_arrives_on_the_host_and_on_apache(environ, tmp_path):
    inv(environ, "pg.configure", "-t", BUILDER, "--mode", "coverage")
    inv(environ, "pg.make", "-t", BUILDER, *FAST)
    inv(environ, "pg.install", "-t", BUILDER)
    inv(environ, "pg.restart", "-t", BUILDER)
    inv(environ, "pg.coverage", "clear", "-t", BUILDER)
    sql(environ, "select count(*) from generate_series(1, 1000)")
    inv(environ, "pg.coverage", "report", "-t", BUILDER, "--out", str(tmp_path / "{name}"))
    index = Path(tmp_path / BUILDER / "index.html")
    assert index.exists() and "LCOV" in index.read_text()
    url = f"http://127.0.0.1:{TEST_ENV['ATELIER_HTTP_PORT']}/coverage/{BUILDER}/index.html"
    with urllib.request.urlopen(url, timeout=10) as page:
        assert page.status == 200 and b"LCOV" in page.read()


def test_pg_user_switches_the_login_identity(environ):
    inv(environ, "pg.user", "experdba", "-t", BUILDER)
    assert inv(environ, "run", "-t", BUILDER, "--", "bash -lc 'psql -XAtc \"select current_user\"'").stdout.strip() \
        == "experdba"
    shown = inv(environ, "pg.user", "show", "-t", BUILDER).stdout
    assert "PGUSER=experdba" in shown
    inv(environ, "pg.user", "postgres", "-t", BUILDER)


def test_bad_input_is_one_line(environ):
    run = inv(environ, "pg.configure", "-t", BUILDER, "--mode", "fast", check=False)
    assert run.returncode == 1
    assert run.stderr.strip() == ("atelier: unknown mode 'fast'; valid: release, debug, valgrind, coverage")
    missing = inv(environ, "pg.make", "-t", "debian12-pg15-active", check=False)
    assert missing.returncode == 1
    assert "no PostgreSQL source tree" in missing.stderr
    assert missing.stderr.strip().endswith("finding the source tree failed (exit 3)")


def test_target_not_running(environ):
    client = engine.connect()
    standby = client.containers.get(f"{PROJECT}-debian12-pg15-standby")
    standby.stop(timeout=10)
    try:
        run = inv(environ, "pg.status", "-t", "debian12-pg15-standby", check=False)
    finally:
        standby.start()
    assert run.returncode == 1
    assert "could not reach debian12-pg15-standby port 22" in run.stderr
