"""The container-side helpers, for real on debian12/PostgreSQL 15, all from
the host over the SSH path: source from the archive, a debug build
installed over the packaged server and run by its service, the server under
valgrind, and a coverage report on the host and on apache2.

Builds are what this module costs: one build in coverage mode (which is
debug mode with counters) serves the debug, core, check, coverage and
changed-line tests; valgrind's build (-DUSE_VALGRIND changes the code) comes
last and builds the server alone. The compiler cache is a volume every
project shares, kept after the module, so on a machine that ran it before
both builds are warm."""

from __future__ import annotations

import re
import shlex
import urllib.request
from pathlib import Path

import pytest

from atelier.engine.up import down, up
from atelier.core.model import Environment, select
from atelier.core.settings import load_settings
from helpers import ENGINE, close_servers, inv, project_settings
from helpers import servers_of as on

pytestmark = pytest.mark.engine

PROJECT = "ateliertest-pg"
# The original's Korean settings: a cluster made in ko_KR.UTF-8, Asia/Seoul's clock.
TEST_ENV = {**project_settings(PROJECT, "172.25", 20000), "ATELIER_TIMEZONE": "Asia/Seoul",
            "ATELIER_INITDB_LOCALE": "ko_KR.UTF-8"}
BUILDER = "debian12-pg15-standalone"
FAST = ("--what", "world-bin")  # everything but the documentation


@pytest.fixture(scope="module")
def environ(tmp_path_factory):
    values = {**TEST_ENV, "ATELIER_STATE_DIR": str(tmp_path_factory.mktemp("pg-state"))}
    inv(values, "build", "--os", "debian12", "--pg", "15")
    up(ENGINE, Environment(load_settings(environ=values), select(os="debian12", pg="15")), say=print)
    yield values
    close_servers(values)
    down(ENGINE, Environment(load_settings(environ=values), select()), remove_volumes=True, say=lambda _: None)


# Each test makes the state it needs unless an earlier one left it, so that any
# test runs alone or in any order, and in file order nothing is built twice.

def ensure_source(environ):
    if on(environ).run(BUILDER, "test -x ~/workspace/postgres/configure", check=False).returncode:
        inv(environ, "workspace.get", "distro", "-t", BUILDER)


def configured_mode(environ) -> str:
    """The mode the tree was last configured in ("" if never)."""
    newest = on(environ).run(BUILDER, "cd ~/workspace/postgres && ls -t .atelier-configure.* 2>/dev/null | "
                             "grep -v packaged | head -n1", check=False).stdout.strip()
    return newest.removeprefix(".atelier-configure.")


def ensure_coverage_build(environ):
    """One build serves every test that needs a debug build: coverage mode is
    debug mode (-Og -ggdb, assertions) with coverage counters, so the debug,
    core, check, coverage and changed-line tests share one cold build
    (valgrind's -DUSE_VALGRIND changes the compiled code: it builds its own).
    Built and installed into the running service, unless it is already."""
    ensure_source(environ)
    built = on(environ).run(BUILDER, "test -x ~/workspace/postgres/src/backend/postgres", check=False).returncode == 0
    if configured_mode(environ) != "coverage" or not built \
            or on(environ).sql(BUILDER, "show debug_assertions", check=False) != "on":
        inv(environ, "pg.configure", "-t", BUILDER, "--mode", "coverage")
        inv(environ, "pg.make", "-t", BUILDER, *FAST)
        inv(environ, "pg.install", "-t", BUILDER)
        inv(environ, "pg.restart", "-t", BUILDER)


def ensure_debug_build(environ):
    """A tree configured in a debug mode (debug, valgrind or coverage: all
    -ggdb with assertions), built, and installed into the running service."""
    ensure_source(environ)
    built = on(environ).run(BUILDER, "test -x ~/workspace/postgres/src/backend/postgres", check=False).returncode == 0
    if configured_mode(environ) not in ("debug", "valgrind", "coverage") or not built \
            or on(environ).sql(BUILDER, "show debug_assertions", check=False) != "on":
        ensure_coverage_build(environ)


def test_source_from_the_distribution_archive(environ):
    ensure_source(environ)
    listing = on(environ).run(BUILDER, "ls ~/workspace/postgres").stdout.split()
    assert {"configure", "src", "contrib", "GNUmakefile.in"} <= set(listing)
    again = inv(environ, "workspace.get", "distro", "-t", BUILDER, check=False)
    assert again.returncode == 1 and "is not empty: keep it, or add --force" in again.stderr
    assert again.stderr.strip().endswith("checking the workspace failed (exit 4)")


def test_workspace_sync_copies_another_role_and_keeps_the_cache(environ):
    ensure_source(environ)
    standby = "debian12-pg15-standby"
    on(environ).run(standby, "mkdir -p ~/workspace/.ccache ~/workspace/stale && "
        "touch ~/workspace/.ccache/mine")
    inv(environ, "workspace.sync", "-t", standby, "--from", "standalone")
    listing = on(environ).run(standby, "ls ~/workspace ~/workspace/.ccache").stdout.split()
    assert "postgres" in listing and "mine" in listing and "stale" not in listing
    # What was there is kept aside, not deleted.
    assert on(environ).run(standby, "ls -d ~/workspace/.replaced-*/stale").returncode == 0
    assert on(environ).run(standby, "test -x ~/workspace/postgres/configure").returncode == 0
    wrong = inv(environ, "workspace.sync", "-t", standby, "--from", "primary", check=False)
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "atelier: unknown role 'primary'; valid: active, standby, standalone"


def test_git_helpers_act_on_every_repository_in_the_workspace(environ):
    active = "debian12-pg15-active"  # no source tree here: test_bad_input_is_one_line counts on it
    git = "GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t git"
    on(environ).run(active, f"set -e; rm -rf /var/tmp/up.git /tmp/seed ~/workspace/ext; git init -q --bare -b main /var/tmp/up.git; "
        f"git clone -q /var/tmp/up.git /tmp/seed 2>/dev/null; cd /tmp/seed; echo one > f; git add f; "
        f"{git} commit -qm one; git push -q origin main; git clone -q /var/tmp/up.git ~/workspace/ext; "
        f"echo two > f; {git} commit -qam two; git push -q origin main; touch ~/workspace/ext/untracked")
    inv(environ, "git.pull", "-t", active)
    assert on(environ).run(active, "cat ~/workspace/ext/f").stdout.strip() == "two"
    shown = on(environ).run(active, "git config --global --get pull.rebase; "
                "git config --global --get merge.conflictStyle; readlink -f ~/.gitconfig; "
                "bash -lc 'echo $GIT_CONFIG_GLOBAL'").stdout.split()
    assert shown == ["true", "diff3"] + ["/var/lib/postgresql/workspace/.gitconfig"] * 2
    on(environ).run(active, "git config --global alias.st status")  # the user's own edit
    ENGINE.client.containers.get(f"{PROJECT}-{active}").restart()  # atelier-pg-setup runs again at boot
    inv(environ, "up", "--os", "debian12", "--pg", "15")
    assert on(environ).run(active, "git config --global --get alias.st").stdout.strip() == "status"
    log = inv(environ, "git.log", "-t", active).stdout
    assert "== /var/lib/postgresql/workspace/ext" in log and " two" in log and " one" in log
    one = inv(environ, "git.log", "-t", active, "--lines", "1").stdout
    assert " two" in one and " one" not in one
    inv(environ, "git.update", "-t", active)
    asked = inv(environ, "git.clean", "-t", active, check=False)
    assert asked.returncode == 1 and "Would remove untracked" in asked.stdout
    assert "untracked" in on(environ).run(active, "ls ~/workspace/ext").stdout
    inv(environ, "git.clean", "-t", active, "--yes")
    assert on(environ).run(active, "ls ~/workspace/ext").stdout.split() == ["f"]


def test_configure_dry_run_prints_the_rewritten_line(environ):
    ensure_source(environ)
    shown = inv(environ, "pg.configure", "-t", BUILDER, "--mode", "debug", "--dry-run").stdout.strip()
    # What would be removed (a tarball, not a git clone: make distclean once configured), then the line.
    assert re.fullmatch(r"would remove [01] build output path\(s\)", shown.splitlines()[0])
    line = shown.splitlines()[-1]
    assert line.startswith("./configure ")
    assert "--enable-cassert" in line and "--enable-debug" in line and "-Og" in line
    assert "-O2" not in line and "--runstatedir" not in line and "_FORTIFY_SOURCE" not in line
    assert "--prefix=/usr" in line  # the packaged server's own layout


def test_debug_build_runs_in_the_packaged_service(environ):
    ensure_source(environ)
    # Coverage mode is debug mode plus counters: this build serves the
    # coverage tests below too (see ensure_coverage_build).
    inv(environ, "pg.configure", "-t", BUILDER, "--mode", "coverage")
    kept = on(environ).run(BUILDER, "cat ~/workspace/postgres/.atelier-configure.coverage").stdout
    assert "--enable-cassert" in kept
    inv(environ, "pg.make", "-t", BUILDER, *FAST)
    installed = inv(environ, "pg.install", "-t", BUILDER)
    assert "[sudo] password" not in installed.stdout + installed.stderr  # answered, so not shown
    inv(environ, "pg.restart", "-t", BUILDER)
    assert on(environ).sql(BUILDER, "show debug_assertions") == "on"
    # A login shell runs the built psql and libpq themselves, not Debian's wrapper.
    login = on(environ).run(BUILDER, "bash -lc 'psql -XAtc \"show debug_assertions\"'").stdout
    assert login.strip() == "on"
    status = inv(environ, "pg.status", "-t", BUILDER).stdout
    assert "postgresql@15-main" in status and "active (running)" in status


def test_a_login_shell_rebuilds_from_the_cache_pg_make_filled(environ):
    ensure_debug_build(environ)
    # Both the object (gcc through ccache's PATH wrappers) and the JIT bitcode
    # (the packaged $(CLANG), an absolute path) must come from the cache, and
    # the shell's locale must match the helpers' since ccache hashes it.
    adt = "~/workspace/postgres/src/backend/utils/adt"
    rebuild = (f"cd {adt} && rm int.o int.bc && ccache -z >/dev/null && make -s int.o int.bc && "
               "ccache --print-stats")
    stats = on(environ).run(BUILDER, f"bash -lc '{rebuild}'").stdout
    counters = dict(line.split("\t") for line in stats.splitlines() if "\t" in line)
    assert (counters["direct_cache_hit"], counters["cache_miss"]) == ("2", "0")


def test_kill_then_start(environ):
    inv(environ, "pg.kill", "-t", BUILDER)
    down = on(environ).run(BUILDER, shlex.join(["psql", "-XAtc", "select 1"]), check=False)
    assert down.returncode != 0 and "psql: error: connection to server" in down.stderr
    inv(environ, "pg.start", "-t", BUILDER)
    assert on(environ).sql(BUILDER, "select 1") == "1"


def test_core_dump_of_the_running_build(environ):
    ensure_debug_build(environ)
    # gcore makes a real core of the postmaster without killing it.
    pid = on(environ).run(BUILDER, "bash -lc 'head -n1 $PGDATA/postmaster.pid'").stdout.strip()
    on(environ).run(BUILDER, f"gcore -o /tmp/core {pid} >/dev/null 2>&1")
    try:
        dump = inv(environ, "pg.core", "-t", BUILDER, f"/tmp/core.{pid}").stdout
    finally:
        on(environ).run(BUILDER, f"rm -f /tmp/core.{pid}")
    # ServerLoop is static: only the debug build's symbols name it.
    assert "PostmasterMain" in dump and "ServerLoop" in dump and "rip" in dump
    missing = inv(environ, "pg.core", "-t", BUILDER, "/tmp/no-core", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "no readable core file /tmp/no-core", f"atelier: {BUILDER}: finding the core file failed (exit 3)"]


def test_check_runs_one_suite(environ):
    ensure_debug_build(environ)
    run = inv(environ, "pg.check", "-t", BUILDER, "--suite", "contrib/cube")
    assert "All 2 tests passed." in run.stdout  # cube and cube_sci, PostgreSQL 15's pg_regress
    wrong = inv(environ, "pg.check", "-t", BUILDER, "--suite", "regres", check=False)
    assert wrong.returncode == 1
    assert "no test suite regres; valid: " in wrong.stderr and " regress " in wrong.stderr
    assert wrong.stderr.strip().endswith("finding the suite failed (exit 3)")


def test_make_failure_names_the_step_and_exit_code(environ):
    ensure_debug_build(environ)
    broken = "~/workspace/postgres/src/backend/utils/adt/int.c"
    on(environ).run(BUILDER, f"cp {broken} /tmp/int.c && echo '#error atelier test' >> {broken}")
    try:
        run = inv(environ, "pg.make", "-t", BUILDER, *FAST, check=False)
    finally:
        on(environ).run(BUILDER, f"cp /tmp/int.c {broken}")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == f"atelier: {BUILDER}: make world-bin failed (exit 2)"
    assert "atelier test" in run.stderr  # the compiler's own error is shown too


def test_coverage_report_arrives_on_the_host_and_on_apache(environ, tmp_path):
    ensure_coverage_build(environ)
    inv(environ, "pg.coverage", "clear", "-t", BUILDER)
    on(environ).sql(BUILDER, "select count(*) from generate_series(1, 1000)")
    inv(environ, "pg.coverage", "report", "-t", BUILDER, "--out", str(tmp_path / "{name}"))
    index = Path(tmp_path / BUILDER / "index.html")
    assert index.exists() and "LCOV" in index.read_text()
    url = f"http://127.0.0.1:{TEST_ENV['ATELIER_HTTP_PORT']}/coverage/{BUILDER}/index.html"
    with urllib.request.urlopen(url, timeout=10) as page:
        assert page.status == 200 and b"LCOV" in page.read()


def test_changed_line_coverage_finds_a_function_no_test_calls(environ, tmp_path):
    """A patch that adds a function nothing calls: the function is reported
    as never called and its lines as changed and not run."""
    ensure_source(environ)
    if configured_mode(environ) != "coverage":
        inv(environ, "pg.configure", "-t", BUILDER, "--mode", "coverage")
    git = "git -c user.name=t -c user.email=t@t"
    adt = "src/backend/utils/adt/int.c"
    on(environ).run(BUILDER, f"set -e; cd ~/workspace/postgres; rm -rf .git; git init -q; git add {adt}; {git} commit -qm base; "
        f"printf '%s\\n' '' 'int atelier_untested(int x);' 'int' 'atelier_untested(int x)' '{{' "
        f"'    if (x > 0)' '        return x + 1;' '    return 0;' '}}' >> {adt}; {git} commit -qam patch")
    try:
        inv(environ, "pg.make", "-t", BUILDER, *FAST)
        inv(environ, "pg.install", "-t", BUILDER)
        inv(environ, "pg.restart", "-t", BUILDER)
        inv(environ, "pg.coverage", "clear", "-t", BUILDER)
        on(environ).sql(BUILDER, "select 1 + 1")  # int4pl runs; atelier_untested never does
        run = inv(environ, "pg.coverage", "report", "-t", BUILDER, "--changed", "HEAD",
                  "--out", str(tmp_path / "{name}"))
        found = re.search(r"atelier_untested \(line \d+\): 0 ran, (\d+) did not; NEVER CALLED", run.stdout)
        assert found and int(found.group(1)) >= 3, run.stdout  # if, return, return (and what gcc adds)
        page = (tmp_path / f"{BUILDER}-changed" / "index.html").read_text()
        assert "atelier_untested" in page and 'id="missed-1"' in page
        url = f"http://127.0.0.1:{TEST_ENV['ATELIER_HTTP_PORT']}/coverage-changed/{BUILDER}/index.html"
        with urllib.request.urlopen(url, timeout=10) as served:
            assert b"atelier_untested" in served.read()
    finally:
        on(environ).run(BUILDER, f"cd ~/workspace/postgres && git checkout -q HEAD~1 -- {adt} "
            "&& rm -rf .git")


def test_valgrind_mode_serves_queries_and_leaves_per_pid_logs(environ, tmp_path):
    ensure_source(environ)
    inv(environ, "pg.configure", "-t", BUILDER, "--mode", "valgrind")
    # The server and its programs only, as a core developer iterates: the
    # extensions installed before stay (make all, make install).
    inv(environ, "pg.make", "-t", BUILDER, "--what", "all")
    inv(environ, "pg.install", "-t", BUILDER, "--core")
    inv(environ, "pg.valgrind", "-t", BUILDER)
    try:
        assert on(environ).sql(BUILDER, "select 6 * 7") == "42"
        logs = on(environ).run(BUILDER, "ls ~/workspace/valgrind").stdout.split()
        assert len([f for f in logs if re.fullmatch(r"\d+\.log", f)]) >= 2  # postmaster and children
        inv(environ, "pg.valgrind", "-t", BUILDER, "--fetch", str(tmp_path / "{name}"))
        fetched = list((tmp_path / BUILDER).glob("*.log"))
        assert fetched and "Memcheck" in fetched[0].read_text()
    finally:
        inv(environ, "pg.valgrind", "-t", BUILDER, "--stop")
    assert on(environ).sql(BUILDER, "select 1") == "1"


def test_a_server_has_what_the_original_gave_on_day_one(environ):
    active = "debian12-pg15-active"
    wanted = on(environ).run(active, ". /etc/atelier/pg.env; echo $PG_EXTENSIONS").stdout.split()
    wanted = wanted[0].split(",")
    made = on(environ).run(active, shlex.join(["psql", "-d", "experdb", "-XAtc", "select string_agg(extname, ',' order by extname) from pg_extension"])).stdout.strip()
    journal = ENGINE.client.containers.get(f"{PROJECT}-{active}").exec_run(
        ["journalctl", "-b", "--no-pager", "-q", "-u", "atelier-pg-roles"]).output.decode()
    assert "pg_stat_statements" in made.split(",")
    for extension in wanted:  # created in experdb, or its skip logged at set-up
        assert extension in made.split(",") or f"extension {extension} is not available" in journal, extension
    shell = on(environ).run(active, "bash -lc \"psql -c '\\\\pset' | grep '^pager '; date +%Z; "
                "command -v htop btop ncdu plocate cmake pandoc | wc -l; "
                "test -r /usr/share/bash-completion/completions/git && echo git-completion\"").stdout.split("\n")
    assert [" ".join(line.split()) for line in shell[:4]] == ["pager 0", "KST", "6", "git-completion"], shell
    assert on(environ).sql(active, "select current_setting('timezone') || ' ' || datcollate from pg_database "
                        "where datname = 'experdb'") == "Asia/Seoul ko_KR.UTF-8"


def test_pg_user_switches_the_login_identity(environ):
    login = "bash -lc 'psql -XAtc \"select current_user, current_database()\"'"
    fresh = "debian12-pg15-active"  # pg.user never ran there: the original's default
    assert on(environ).run(fresh, login).stdout.strip() == "experdba|experdb"
    inline = on(environ).run(fresh, "bash -lc 'pg-user postgres && psql -XAtc \"select current_user\"; pg-user experdba'").stdout
    assert inline.strip() == "postgres"  # in the same shell, not only at the next login
    assert "unknown user" in on(environ).run(fresh, "bash -lc 'pg-user nobody'", check=False).stderr
    inv(environ, "pg.user", "experdba", "-t", BUILDER)
    assert on(environ).run(BUILDER, "bash -lc 'psql -XAtc \"select current_user\"'").stdout.strip() \
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
    client = ENGINE.client
    standby = client.containers.get(f"{PROJECT}-debian12-pg15-standby")
    standby.stop(timeout=10)
    try:
        run = inv(environ, "pg.status", "-t", "debian12-pg15-standby", check=False)
    finally:
        standby.start()
    assert run.returncode == 1
    assert "could not reach debian12-pg15-standby port 22" in run.stderr
