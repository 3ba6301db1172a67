"""Drills that count what a role change lost.

A writer in the standby's container commits numbered rows, one psql per row,
to whichever server of the pair takes writes (libpq's host list with
target_session_attrs=read-write), and prints each commit that returned with
the time and the server that took it. After the role change, the rows the
new primary holds are counted against those commits."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

from atelier.dba.replication import failover, switchover
from atelier.dba.server import Server, wait_for
from atelier.core.errors import AtelierError
from atelier.engine.containers import kill
from atelier.ssh.guard import guarded

DRILL_DB = "experdb"
DRILL_TABLE = "atelier_drill"
KINDS = ("switchover", "failover")


def writer_script(hosts: list[str], run: str) -> str:
    conninfo = (f"host={','.join(hosts)} port=5432 user=experdba dbname={DRILL_DB} "
                "target_session_attrs=read-write connect_timeout=2")
    insert = (f"INSERT INTO {DRILL_TABLE} (run, n) VALUES ('{run}', $n) "
              "RETURNING host(inet_server_addr())")
    return (f"stop=/tmp/atelier-drill-{run}.stop; n=0; "
            'while [ ! -e "$stop" ]; do n=$((n + 1)); '
            f'if at=$(psql {shlex.quote(conninfo)} -XAtq -c "{insert}" 2>/dev/null); then '
            'echo "commit $n $(date +%s.%N) $at"; else sleep 0.02; fi; done')


@dataclass
class Commit:
    n: int
    at: float
    address: str


def parse_commits(output: str) -> list[Commit]:
    commits = []
    for line in output.splitlines():
        words = line.split()
        if len(words) == 4 and words[0] == "commit":
            commits.append(Commit(int(words[1]), float(words[2]), words[3]))
    return commits


@dataclass
class DrillReport:
    kind: str
    old_primary: str
    new_primary: str
    synchronous: bool
    committed: int
    present: int
    lost: list[int] = field(default_factory=list)
    # Last commit the old primary took to first the new one took (seconds).
    write_gap: float | None = None
    # failover: primary killed to first commit on the new one (seconds), and
    # to the end of the promotion (the writer's own connect timeout is the rest).
    killed_to_write: float | None = None
    killed_to_promoted: float | None = None

    @property
    def lost_count(self) -> int:
        return len(self.lost)

    def lines(self) -> list[str]:
        mode = "synchronous" if self.synchronous else "asynchronous"
        out = [f"drill {self.kind}: {self.old_primary} -> {self.new_primary} ({mode} replication)",
               f"commits that returned: {self.committed}",
               f"of them on {self.new_primary} now: {self.present}",
               f"lost: {self.lost_count}" + (f" (rows {', '.join(map(str, self.lost[:20]))}"
                                             f"{' ...' if self.lost_count > 20 else ''})" if self.lost else "")]
        if self.write_gap is not None:
            out.append(f"writes stopped for {self.write_gap:.3f} s: last commit on {self.old_primary} "
                       f"to first on {self.new_primary}")
        if self.killed_to_write is not None:
            out.append(f"primary killed to first commit on {self.new_primary}: {self.killed_to_write:.3f} s")
        if self.killed_to_promoted is not None:
            out.append(f"primary killed to {self.new_primary} promoted: {self.killed_to_promoted:.3f} s")
        return out

    @property
    def failed(self) -> bool:
        """A switchover, or a failover with synchronous replication, must lose nothing."""
        return bool(self.lost) and (self.kind == "switchover" or self.synchronous)


def account(kind: str, old: str, new: str, synchronous: bool, commits: list[Commit], present: set[int],
            addresses: dict[str, str], killed_at: float | None = None,
            promoted_at: float | None = None) -> DrillReport:
    """Pure: what the writer saw against what the new primary holds."""
    committed = {c.n for c in commits}
    on_old = [c.at for c in commits if addresses.get(c.address) == old]
    on_new = [c.at for c in commits if addresses.get(c.address) == new]
    gap = (min(on_new) - max(on_old)) if on_old and on_new else None
    killed = (min(on_new) - killed_at) if killed_at is not None and on_new else None
    promoted = (promoted_at - killed_at) if killed_at is not None and promoted_at is not None else None
    return DrillReport(kind, old, new, synchronous, len(committed), len(committed & present),
                       sorted(committed - present), gap, killed, promoted)


def drill(session, kind: str, standby: str, primary: str, synchronous: bool, say) -> DrillReport:
    matrix = session.matrix
    old, new = Server(session, primary), Server(session, standby)
    run = time.strftime("%Y%m%d%H%M%S")
    old.run(f"CREATE TABLE IF NOT EXISTS {DRILL_TABLE} (run text, n int, "
            "at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run, n));",
            db=DRILL_DB, what="making the drill's table")
    slot = matrix.replication_slot(new.container)
    if synchronous:
        say(f"making {standby} a synchronous standby of {primary}")
        old.run(f"ALTER SYSTEM SET synchronous_standby_names = '\"{slot}\"';\nSELECT pg_reload_conf();",
                what="setting synchronous_standby_names")
        if not wait_for(lambda: any(r["sync_state"] == "sync" for r in old.rows(
                "SELECT sync_state FROM pg_stat_replication")), 30, 0.2):
            raise AtelierError(f"{standby} did not become a synchronous standby of {primary} in 30 s")
    states = old.rows("SELECT sync_state FROM pg_stat_replication")
    is_sync = any(r["sync_state"] in ("sync", "quorum") for r in states)
    hosts = [new.container.role, old.container.role]
    writer_ctx = session.context(standby, "postgres")
    say(f"writer: committing numbered rows from {standby}'s container")
    writer = writer_ctx.run(guarded(writer_script(hosts, run)), asynchronous=True, hide=True,
                            in_stream=False, warn=True)
    killed_at = promoted_at = None
    try:
        if not wait_for(lambda: count_rows(old, run) >= 50, 30, 0.2):
            raise AtelierError(f"the writer committed fewer than 50 rows on {primary} in 30 s; nothing was "
                               "changed (can experdba log in over the network? `inv db.replication`)")
        if kind == "switchover":
            switchover(session, standby, say)
        else:
            say(f"killing {primary}'s container (docker kill)")
            killed_at = kill(session.engine, matrix, primary)
            failover(session, standby, say)
            promoted_at = time.time()
        # Let the writer go on against the new primary for a while.
        after_change = count_rows(new, run)
        wait_for(lambda: count_rows(new, run) >= after_change + 50, 30, 0.2)
    finally:
        new.c.run(f"touch /tmp/atelier-drill-{run}.stop", warn=True, hide=True, in_stream=False)
        result = writer.join()
        new.c.run(f"rm -f /tmp/atelier-drill-{run}.stop", warn=True, hide=True, in_stream=False)
    commits = parse_commits(result.stdout)
    present = {r["n"] for r in new.rows(f"SELECT n FROM {DRILL_TABLE} WHERE run = '{run}'", db=DRILL_DB,
                                        what="counting the rows")}
    addresses = {matrix.container(n).address: n for n in (standby, primary)}
    if synchronous and kind == "switchover":
        # The old primary follows now; the name it waited for would mean nothing to it.
        old.run("ALTER SYSTEM RESET synchronous_standby_names;\nSELECT pg_reload_conf();",
                what="resetting synchronous_standby_names")
    return account(kind, primary, standby, is_sync, commits, present, addresses, killed_at, promoted_at)


def count_rows(server: Server, run: str) -> int:
    if not server.state().primary:
        return 0
    return server.rows(f"SELECT count(*) AS n FROM {DRILL_TABLE} WHERE run = '{run}'", db=DRILL_DB)[0]["n"]
