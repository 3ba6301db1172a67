"""db.cutover: blue/green through the pool, on top of db.logical.

With a writer committing numbered rows through PgBouncer's entry of the
source, the cutover pauses that entry (clients wait, none fails), waits until
the subscriber has applied the publisher's last LSN, brings the sequences
forward on the new side (logical replication does not carry them), sets up
replication back (so that --back is a real rollback), points the entry at
the new server, and resumes. The report counts the writer's commits against
the rows on the side that serves now (lost, duplicated, ids that collide)
and the write gap. --back does the same the other way.

Where the entry points is kept in the state folder, so that `up` writes the
same pgbouncer.ini again."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field

from atelier.core.errors import AtelierError
from atelier.core.model import REPLICATED_ROLES
from atelier.core.state import forget_pool_move, pool_moves, remember_pool_move
from atelier.dba import pgbouncer
from atelier.dba.drill import Commit, Writers
from atelier.dba.logical import connection_to, names_for
from atelier.dba.server import Server, wait_for
from atelier.engine.containers import copy_in
from atelier.render.runtime import POOLED_DATABASES, pgbouncer_files

TABLE = "atelier_cutover"
CAUGHT_UP_SECONDS = 30


def entry_of(matrix, source: str, db: str) -> str:
    """The pool's database clients use for `source`: its pair's entry (which
    follows the primary) when it is in one, else its own."""
    server = matrix.container(source)
    if server.role in REPLICATED_ROLES:
        return f"{matrix.pair_name(server.os, server.major)}.{db}"
    return f"{source}.{db}"


def back_names(matrix, destination: str, db: str) -> tuple[str, str]:
    """(publication, subscription) of the replication back, from the new side."""
    publication, subscription = names_for(matrix, destination, db)
    return f"{publication}_back", f"{subscription}_back"[:63]


@dataclass
class CutoverReport:
    source: str  # the side clients wrote to before
    destination: str  # the side they write to now
    db: str
    entry: str
    back: bool
    run: str = ""
    committed: int = 0
    present: int = 0
    lost: list[int] = field(default_factory=list)
    duplicated: int = 0
    id_collisions: int = 0
    paused_ms: int = 0  # PAUSE to RESUME of the entry
    write_gap_ms: int = 0  # the writer's longest wait between two commits
    caught_up_ms: int = 0  # PAUSE to the subscriber holding the publisher's last LSN
    sequences: int = 0
    roles: int = 0  # login roles given the old side's SCRAM secret
    replication_back: str = ""

    def lines(self) -> list[str]:
        lost = f"lost: {len(self.lost)}" + (f" (rows {', '.join(map(str, self.lost[:20]))})" if self.lost else "")
        return [f"cutover{' back' if self.back else ''} of {self.entry}: {self.source} -> {self.destination}",
                f"writer through the pool: {self.committed} commits returned, {self.present} on "
                f"{self.destination} now; {lost}; duplicated: {self.duplicated}; ids that collide: "
                f"{self.id_collisions}",
                f"write gap {self.write_gap_ms} ms (the entry paused {self.paused_ms} ms; the subscriber had "
                f"the last LSN after {self.caught_up_ms} ms); {self.sequences} sequence(s) brought forward; "
                f"{self.roles} role(s) given the same SCRAM secret on both sides",
                self.replication_back]

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.duplicated or self.id_collisions)

    def as_dict(self) -> dict:
        return asdict(self)


def longest_gap(commits: list[Commit]) -> float:
    times = sorted(c.at for c in commits)
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def subscribed(dst: Server, subscription: str, db: str) -> dict | None:
    rows = dst.rows("SELECT s.subenabled AS enabled, (SELECT count(*) FROM pg_stat_subscription st "
                    "WHERE st.subid = s.oid AND st.pid IS NOT NULL) AS workers "
                    f"FROM pg_subscription s WHERE s.subname = {dst.literal(subscription)}", db=db)
    return rows[0] if rows else None


def wait_applied(publisher: Server, slot: str) -> int:
    """Until the subscriber confirmed the publisher's current LSN; ms."""
    started = time.monotonic()
    lsn = publisher.rows("SELECT pg_current_wal_lsn()::text AS lsn")[0]["lsn"]
    check = (f"SELECT confirmed_flush_lsn >= {publisher.literal(lsn)}::pg_lsn AS done FROM pg_replication_slots "
             f"WHERE slot_name = {publisher.literal(slot)}")
    if not wait_for(lambda: (publisher.rows(check) or [{"done": False}])[0]["done"], CAUGHT_UP_SECONDS, 0.02):
        raise AtelierError(f"the subscriber did not confirm {publisher.name}'s LSN {lsn} in {CAUGHT_UP_SECONDS} s "
                           f"(slot {slot}); the entry is resumed where it was")
    return round((time.monotonic() - started) * 1000)


SEQUENCES_SQL = """SELECT format('%I.%I', schemaname, sequencename) AS name, last_value::text AS value
  FROM pg_sequences WHERE last_value IS NOT NULL AND schemaname NOT LIKE 'pg\\_%'"""


def bring_sequences_forward(old: Server, new: Server, db: str) -> int:
    found = old.rows(SEQUENCES_SQL, db=db)
    if found:
        new.run("".join(f"SELECT setval({new.literal(s['name'])}, {int(s['value'])}, true);\n" for s in found),
                db=db, what="bringing the sequences forward")
    return len(found)


SECRETS_SQL = """SELECT rolname AS role, rolpassword AS secret FROM pg_authid
 WHERE rolcanlogin AND rolname <> 'postgres' AND rolpassword LIKE 'SCRAM-SHA-256$%'"""


def same_secrets(old: Server, new: Server) -> int:
    """Every login role of both sides gets the old side's SCRAM secret on the
    new side, as pg_dumpall --globals carries it: the same password salted
    once. PgBouncer keeps the secret its auth_query fetched and logs into the
    server with keys made from it, so a server that salted the same password
    otherwise refuses the pool's logins after the move."""
    theirs = {r["role"] for r in new.rows("SELECT rolname AS role FROM pg_roles WHERE rolcanlogin")}
    secrets = [r for r in old.rows(SECRETS_SQL, what="reading the roles' secrets") if r["role"] in theirs]
    if secrets:
        new.run("".join(f'ALTER ROLE "{r["role"]}" PASSWORD {new.literal(r["secret"])};\n' for r in secrets),
                what="giving the roles the old side's secrets")
    return len(secrets)


def write_pool(session, engine, moves: dict[str, str]) -> None:
    """pgbouncer.ini as the model and the moves give it, into the running
    container, and RELOAD (with the entry paused, clients only wait)."""
    env = session.matrix
    container = engine.container(env.project, "pgbouncer")
    files = pgbouncer_files(env, moves)
    name = "etc/pgbouncer/pgbouncer.ini"
    copy_in(container, "/", {name: files[name]})
    pgbouncer.console(engine, env, ["RELOAD"])


def cutover(session, engine, source: str, destination: str, db: str, back: bool, say,
            seconds_before: float = 2.0, seconds_after: float = 2.0) -> CutoverReport:
    matrix = session.matrix
    pgbouncer.require(matrix)
    if db not in POOLED_DATABASES:
        raise AtelierError(f"--db {db}: the pool has entries for {', '.join(POOLED_DATABASES)} only")
    entry = entry_of(matrix, source, db)
    moves = pool_moves(matrix.settings.state_dir)
    publication, subscription = names_for(matrix, source, db)
    back_pub, back_sub = back_names(matrix, destination, db)
    src, dst = Server(session, source), Server(session, destination)
    if not back:
        if entry in moves:
            raise AtelierError(f"{entry} already points at {moves[entry]}; `inv db.cutover --back --from {source} "
                               f"--to {moves[entry]}` first")
        found = subscribed(dst, subscription, db) if db in dst.databases() else None
        if not found or not found["enabled"] or not found["workers"]:
            raise AtelierError(f"{destination} is not subscribed to {source}'s {db} (or its subscription does not "
                               f"run): `inv db.logical --from {source} --to {destination} --db {db}` first")
        old, new, slot_owner, slot = src, dst, src, subscription
    else:
        if moves.get(entry) != destination:
            raise AtelierError(f"{entry} was not cut over to {destination}; nothing to go back from")
        found = subscribed(src, back_sub, db)
        if not found or not found["workers"]:
            raise AtelierError(f"{source} no longer replicates back from {destination} ({back_sub}); "
                               "--back cannot bring the new side's writes home")
        old, new, slot_owner, slot = dst, src, dst, back_sub
    for server in (old, new):
        if not server.state().primary:
            raise AtelierError(f"{server.name} is not a running primary")

    run = uuid.uuid4().hex[:8]
    report = CutoverReport(old.name, new.name, db, entry, back, run)
    prepare_table(old, new, db, None if back else subscription)
    host, port = pgbouncer.address(matrix)
    conninfo = f"host={host} port={port} user=experdba dbname={entry} connect_timeout=2"
    writers = Writers(session, destination, run)
    say(f"writer: committing numbered rows through the pool's {entry}, from {destination}'s container")
    writers.start("w", conninfo, table=TABLE)
    try:
        time.sleep(seconds_before)
        say(f"pausing {entry}: its clients wait")
        paused = time.monotonic()
        pgbouncer.console(engine, matrix, [f'PAUSE "{entry}"'])
        try:
            report.caught_up_ms = wait_applied(slot_owner, slot)
            report.sequences = bring_sequences_forward(old, new, db)
            report.roles = same_secrets(old, new)
            if not back:
                say(f"replication back: {destination} publishes, {source} subscribes (from now on)")
                dst.run(f"SELECT 'CREATE PUBLICATION {back_pub} FOR ALL TABLES' WHERE NOT EXISTS "
                        f"(SELECT FROM pg_publication WHERE pubname = {dst.literal(back_pub)}) \\gexec",
                        db=db, what="publishing back")
                dst.run(f"ALTER SUBSCRIPTION {subscription} DISABLE;", db=db, what="stopping the forward copy")
                src.run(f"CREATE SUBSCRIPTION {back_sub} CONNECTION "
                        f"{src.literal(connection_to(matrix, destination, db))} PUBLICATION {back_pub} "
                        "WITH (copy_data = false);", db=db, what="subscribing back")
                remember_pool_move(matrix.settings.state_dir, entry, destination)
                moves = {**moves, entry: destination}
                report.replication_back = (f"replication back: {source} subscribes to {destination} ({back_sub}); "
                                           f"`inv db.cutover --back --from {source} --to {destination}` returns")
            else:
                say(f"replication forward again: {destination} resumes its subscription from this point")
                # What the way back applied on the source must not travel forward again.
                src.run(f"DROP SUBSCRIPTION {back_sub};", db=db, what="dropping the way back")
                dst.run(f"DROP PUBLICATION IF EXISTS {back_pub};", db=db, what="dropping the way back")
                src.run(f"SELECT pg_replication_slot_advance({src.literal(subscription)}, pg_current_wal_lsn());",
                        db=db, what="moving the forward slot past the way back's rows")
                dst.run(f"ALTER SUBSCRIPTION {subscription} ENABLE;", db=db, what="resuming the forward copy")
                forget_pool_move(matrix.settings.state_dir, entry)
                moves = {k: v for k, v in moves.items() if k != entry}
                report.replication_back = (f"replication forward: {destination} subscribes to {source} again "
                                           f"({subscription})")
            say(f"pointing {entry} at {new.name}")
            write_pool(session, engine, moves)
        finally:
            pgbouncer.console(engine, matrix, [f'RESUME "{entry}"'])
            report.paused_ms = round((time.monotonic() - paused) * 1000)
        say(f"resumed {entry}")
        time.sleep(seconds_after)
    finally:
        commits = writers.stop()["w"]
    count(new, db, run, commits, report)
    return report


def prepare_table(old: Server, new: Server, db: str, forward_subscription: str | None) -> None:
    """The drill's table on both sides; going forward, in the subscription
    too (empty on the subscriber: no copy)."""
    ddl = (f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial, run text NOT NULL, n bigint NOT NULL, "
           "at timestamptz NOT NULL DEFAULT clock_timestamp());")
    for server in (old, new):
        server.run(ddl, db=db, what="making the drill's table")
    if forward_subscription:
        new.run(f"ALTER SUBSCRIPTION {forward_subscription} REFRESH PUBLICATION WITH (copy_data = false);",
                db=db, what="subscribing the drill's table")


def count(new: Server, db: str, run: str, commits: list[Commit], report: CutoverReport) -> None:
    report.committed = len(commits)
    rows = new.rows(f"SELECT n, count(*) AS copies FROM {TABLE} WHERE run = {new.literal(run)} GROUP BY n", db=db)
    present = {r["n"]: r["copies"] for r in rows}
    report.present = len(present)
    report.duplicated = sum(c - 1 for c in present.values())
    report.lost = sorted(c.n for c in commits if c.n not in present)
    report.id_collisions = new.rows(f"SELECT count(*) - count(DISTINCT id) AS n FROM {TABLE}", db=db)[0]["n"]
    report.write_gap_ms = round(longest_gap(commits) * 1000)
