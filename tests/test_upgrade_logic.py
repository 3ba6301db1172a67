"""db.upgrade's pure parts: what it refuses before any engine (one line
each), pg_upgrade's and initdb's command lines, and how a failed --check's
output and report files become one line per problem."""

import pytest

from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.dba.upgrade import Plan, findings, initdb_line, pg_upgrade_line, plan


@pytest.fixture
def full(settings):
    return Environment(settings, select("full"))


def refusal(matrix, *args) -> str:
    with pytest.raises(AtelierError) as stopped:
        plan(matrix, *args)
    return str(stopped.value)


def test_plan_names_the_new_majors_server_of_the_same_os_and_role(full):
    assert plan(full, "debian14-pg18-active", "19", "link") == \
        Plan("debian14-pg18-active", "debian14-pg19-active", 18, 19, "link")
    assert plan(full, "rocky9-pg17-standalone", 18, "swap").new == "rocky9-pg18-standalone"
    assert plan(full, "ubuntu24-pg16-active", 17, "copy").one_way is False


def test_plan_refuses_in_one_line_with_the_reason_and_the_choices(full, settings):
    assert "is a downgrade" in refusal(full, "debian14-pg18-active", 17, "copy")
    assert "already runs PostgreSQL 18" in refusal(full, "debian14-pg18-active", 18, "copy")
    said = refusal(full, "debian14-pg18-active", 19, "hardlink")
    assert said.startswith("unknown upgrade method 'hardlink'") and "copy, link, clone, swap" in said
    assert "needs pg_upgrade 18 or later" in refusal(full, "rocky9-pg16-active", 17, "swap")
    assert "unknown PostgreSQL major 'twenty'" in refusal(full, "debian14-pg18-active", "twenty", "copy")
    assert "is a standby: upgrade its primary (debian14-pg18-active)" in \
        refusal(full, "debian14-pg18-standby", 19, "copy")
    # The image of 19 carries 18's server only: 17 goes to 18 first.
    assert "carries the server of 18, not 17" in refusal(full, "debian13-pg17-active", 19, "copy")
    small = Environment(settings, select("default"))
    assert "debian12-pg16-active is not in the selection" in refusal(small, "debian12-pg15-active", 16, "copy")
    assert "not a PostgreSQL server" in refusal(full, "haproxy", 19, "copy")


def test_pg_upgrade_starts_the_old_server_from_its_config_without_its_preloads():
    line = pg_upgrade_line(Plan("a", "b", 18, 19, "link"), "/usr/lib/postgresql/18/bin",
                           "/usr/lib/postgresql/19/bin", "/var/lib/postgresql/18/main",
                           "/var/lib/postgresql/19/main", "/etc/postgresql/18/main/postgresql.conf", "/tmp/w",
                           check=True)
    assert line.startswith("/usr/lib/postgresql/19/bin/pg_upgrade -b /usr/lib/postgresql/18/bin ")
    assert ("-o '-c config_file=/etc/postgresql/18/main/postgresql.conf -c shared_preload_libraries='" in line)
    assert line.endswith("--link --check") and "-s /tmp/w" in line


def test_initdb_matches_the_old_clusters_encoding_locale_and_checksums():
    facts = {"encoding": "UTF8", "collate": "C.UTF-8", "ctype": "C.UTF-8", "provider": "b", "locale": "C.UTF-8",
             "checksums": "on"}
    line = initdb_line("/usr/lib/postgresql/19/bin", "/d", facts)
    assert "--locale-provider=builtin --builtin-locale=C.UTF-8 --data-checksums" in line
    assert "-E UTF8 --lc-collate=C.UTF-8 --lc-ctype=C.UTF-8" in line
    libc = initdb_line("/b", "/d", {**facts, "provider": "c", "checksums": "off"})
    assert "--locale-provider=libc --no-data-checksums" in libc and "builtin-locale" not in libc


CHECK_OUTPUT = """Performing Consistency Checks
-----------------------------
Checking cluster versions                                     ok
Checking for presence of required libraries                   fatal

Your installation references loadable libraries that are missing from the
new installation.  You can add these libraries to the new installation,
or remove the functions using them from the old installation.  A list of
problem libraries is in the file:
    /var/lib/postgresql/19/main/pg_upgrade_output.d/20261202T211500.123/loadable_libraries.txt
Failure, exiting
"""
LIBRARIES = """could not load library "$libdir/pg_qualstats": ERROR:  could not access file "$libdir/pg_qualstats": No such file or directory
In database: experdb
could not load library "$libdir/plugin_debugger": ERROR:  could not access file "$libdir/plugin_debugger": No such file or directory
In database: experdb
In database: postgres
"""


def test_a_failed_check_is_one_line_per_problem():
    lines = findings(CHECK_OUTPUT, {"loadable_libraries.txt": LIBRARIES})
    assert lines == [
        "Checking for presence of required libraries: failed",
        "library pg_qualstats is missing from the new major (used in experdb): drop the extension there, "
        "or build it for the new major",
        "library plugin_debugger is missing from the new major (used in experdb, postgres): drop the extension "
        "there, or build it for the new major"]
    assert findings("could not clone file between old and new data directories: Operation not supported\n", {}) \
        == ["could not clone file between old and new data directories: Operation not supported"]
    assert findings("a\nb\nc\nd\n", {}) == ["pg_upgrade --check failed without naming a check; it said: b / c / d"]
