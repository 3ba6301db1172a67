"""db.cutover's pure parts: which pool entry moves, the names of the way
back, pgbouncer.ini with a moved entry, the state that keeps it, and the
write gap from the writer's commits."""

import dataclasses

from atelier.core.model import Environment, select
from atelier.core.state import forget_pool_move, pool_moves, remember_pool_move
from atelier.dba.cutover import CutoverReport, back_names, entry_of, longest_gap
from atelier.dba.drill import Commit
from atelier.render.runtime import pgbouncer_files


def test_a_pair_member_moves_its_pairs_entry_and_a_standalone_its_own(settings):
    env = Environment(settings, select("debian"))
    assert entry_of(env, "debian12-pg15-active", "experdb") == "debian12-pg15.experdb"
    assert entry_of(env, "debian12-pg15-standby", "experdb") == "debian12-pg15.experdb"
    assert entry_of(env, "debian13-pg17-standalone", "postgres") == "debian13-pg17-standalone.postgres"
    publication, subscription = back_names(env, "debian13-pg17-standalone", "experdb")
    assert publication == "atelier_experdb_back"
    assert subscription == "atelier_debian13_pg17_standalone_experdb_back"


def test_a_moved_entry_points_at_its_new_server_in_pgbouncer_ini(settings, tmp_path):
    settings = dataclasses.replace(settings, pgbouncer=True, state_dir=tmp_path)
    env = Environment(settings, select("debian"))
    plain = pgbouncer_files(env)["etc/pgbouncer/pgbouncer.ini"][0].decode()
    assert f"debian12-pg15.experdb = host={env.service_address('haproxy')} port=" in plain
    remember_pool_move(tmp_path, "debian12-pg15.experdb", "debian13-pg17-standalone")
    assert pool_moves(tmp_path) == {"debian12-pg15.experdb": "debian13-pg17-standalone"}
    moved = pgbouncer_files(env)["etc/pgbouncer/pgbouncer.ini"][0].decode()
    target = env.container("debian13-pg17-standalone").address
    assert f"debian12-pg15.experdb = host={target} port=5432 dbname=experdb" in moved
    assert "; debian12-pg15.experdb points at debian13-pg17-standalone: `inv db.cutover` moved it" in moved
    # Only that entry: the read-only one and the other database stay the pair's.
    assert [line for line in moved.splitlines() if line not in plain.splitlines() and not line.startswith(";")] \
        == [f"debian12-pg15.experdb = host={target} port=5432 dbname=experdb"]
    forget_pool_move(tmp_path, "debian12-pg15.experdb")
    assert pool_moves(tmp_path) == {} and pgbouncer_files(env)["etc/pgbouncer/pgbouncer.ini"][0].decode() == plain


def test_the_write_gap_is_the_writers_longest_wait_and_the_report_counts():
    commits = [Commit(1, 10.0, "a"), Commit(2, 10.1, "a"), Commit(3, 11.35, "b"), Commit(4, 11.4, "b")]
    assert round(longest_gap(commits), 2) == 1.25 and longest_gap([]) == 0.0
    report = CutoverReport("a", "b", "experdb", "p.experdb", False, committed=4, present=4)
    assert not report.failed and "lost: 0; duplicated: 0" in report.lines()[1]
    assert CutoverReport("a", "b", "experdb", "p.experdb", False, lost=[3]).failed
