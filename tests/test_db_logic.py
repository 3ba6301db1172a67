"""The pure parts of db.*: lag levels, the drill's accounting, the manifest
comparison, and the model's pairs and upstream names."""

import dataclasses

import pytest

from atelier.core.model import Environment, select
from atelier.dba.backup import compare_tables, dump_script
from atelier.dba.drill import (Commit, account, first_after, last_before_gap, listed_conninfo, parse_commits,
                                pooled_conninfo, writer_script, zombie_writes)
from atelier.core.errors import AtelierError
from atelier.dba.logical import names_for
from atelier.dba.replication import human_bytes, lag_level, replication_table_row


@pytest.mark.parametrize("lag, level", [(None, "-"), (0, "ok"), ((1 << 20) - 1, "ok"), (1 << 20, "warn"),
                                        (100 << 20, "warn"), ((100 << 20) + 1, "crit")])
def test_lag_levels_follow_the_expert_note(lag, level):
    assert lag_level(lag) == level


def test_human_bytes():
    assert human_bytes(None) == "-" and human_bytes(0) == "0 B" and human_bytes(1536) == "1.5 kB"
    assert human_bytes(3 << 30) == "3.0 GB"


def test_a_table_row_shows_dashes_for_what_a_primary_without_standby_lacks():
    row = replication_table_row({"primary": "p", "standby": None, "state": "no standby", "level": "-"})
    assert row[0] == "p" and row[2] == "no standby" and set(row[3:]) == {"-"}


def test_the_drill_counts_commits_against_rows_and_measures_the_gap():
    commits = [Commit(1, 10.0, "10.0.0.1"), Commit(2, 10.5, "10.0.0.1"), Commit(4, 12.0, "10.0.0.2"),
               Commit(5, 12.2, "10.0.0.2")]
    addresses = {"10.0.0.1": "old", "10.0.0.2": "new"}
    report = account("failover", "old", "new", False, commits, {1, 4, 5, 3}, addresses, killed_at=11.0,
                     promoted_at=11.5)
    assert report.committed == 4 and report.present == 3 and report.lost == [2]
    assert report.write_gap == pytest.approx(1.5) and report.killed_to_write == pytest.approx(1.0)
    assert report.killed_to_promoted == pytest.approx(0.5)
    assert not report.failed  # an asynchronous failover reports its loss; it is no error
    assert "lost: 1 (rows 2)" in report.lines()
    assert account("failover", "old", "new", True, commits, {1, 4, 5}, addresses).failed
    assert account("switchover", "old", "new", False, commits, {1, 4, 5}, addresses).failed
    assert not account("switchover", "old", "new", False, commits, {1, 2, 4, 5}, addresses).failed


def test_the_writer_prints_only_commits_that_returned(settings):
    out = "commit 1 100.25 10.0.0.1\nnoise\ncommit 2 100.5 10.0.0.2 100.375\n"
    assert parse_commits(out) == [Commit(1, 100.25, "10.0.0.1"), Commit(2, 100.5, "10.0.0.2", 100.375)]
    script = writer_script(listed_conninfo(["standby", "active"]), "run1")
    assert "host=standby,active" in script and "target_session_attrs=read-write" in script
    assert "password" not in script.lower()
    pooled_env = Environment(dataclasses.replace(settings, pgbouncer=True), select("debian"))
    pooled = writer_script(pooled_conninfo(pooled_env, "debian12-pg15"), "run1", "z")
    assert "experdba@pgbouncer:6432/debian12-pg15.experdb?connect_timeout=2" in pooled
    assert "n=1000000;" in pooled, "a second writer numbers its rows apart"


def test_zombie_writes_are_the_old_primarys_commits_after_the_promotion():
    commits = [Commit(1, 10.0, "old"), Commit(2, 11.0, "new"), Commit(1000001, 12.0, "old"), Commit(3, 9.0, "old"),
               Commit(4, 12.5, "old", ran_at=10.1)]  # ran before the promotion, returned after the thaw
    assert zombie_writes(commits, "old", promoted_at=10.5) == 1
    assert zombie_writes(commits, "old", promoted_at=13.0) == 0
    assert last_before_gap([Commit(n, 100 + n * 0.5, "a") for n in range(1, 7)] + [Commit(9, 110.0, "a")], 100.0) \
        == pytest.approx(3.0)
    assert first_after(commits, 10.5) == pytest.approx(0.5)


def test_compare_tables_names_every_kind_of_difference():
    expected = {"public.a": {"rows": 2, "checksum": "5"}, "public.b": {"rows": 1, "checksum": "1"},
                "public.c": {"rows": 1, "checksum": "1"}}
    found = {"public.a": {"rows": 2, "checksum": "6"}, "public.b": {"rows": 3, "checksum": "1"},
             "public.d": {"rows": 0, "checksum": "0"}}
    assert compare_tables(expected, found) == [
        "public.a: same 2 rows, different contents", "public.b: 3 rows, 1 expected",
        "public.c: missing", "public.d: not in the backup"]
    assert compare_tables(expected, dict(expected)) == []


def test_the_dump_and_its_checksums_share_one_snapshot_held_until_pg_dump_ends():
    script = dump_script("experdb", "/tmp/x")
    begin, export = script.index("REPEATABLE READ"), script.index("pg_export_snapshot")
    dump, sums = script.index('--snapshot="$ATELIER_SNAPSHOT"'), script.index("\\gexec")
    wait, commit = script.index("while [ ! -e"), script.index("COMMIT")
    assert begin < export < dump < sums < wait < commit


def test_logical_names_come_from_the_model(make_env):
    env = make_env("debian")
    assert names_for(env, "debian12-pg15-active", "experdb") == (
        "atelier_experdb", "atelier_debian12_pg15_active_experdb")
    with pytest.raises(AtelierError, match="lowercase letters"):
        names_for(env, "debian12-pg15-active", "Bad;Name")


def test_pairs_and_upstream_names(make_env):
    env = make_env("debian")
    assert env.partner("debian12-pg15-active").name == "debian12-pg15-standby"
    assert env.partner("debian13-pg17-standby").name == "debian13-pg17-active"
    with pytest.raises(AtelierError, match="standalone server, in no replication pair"):
        env.partner("debian12-pg15-standalone")
    assert env.upstream_name("debian12-pg15-active", "standby") == "debian12-pg15-standby"
    assert env.upstream_name("debian12-pg15-standby", env.address("debian12", "active", 15)) == \
        "debian12-pg15-active"
    assert env.replication_slot(env.container("debian12-pg15-active")) == "debian12_pg15_active"
