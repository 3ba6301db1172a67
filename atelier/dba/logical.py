"""Logical replication between two servers, usually two majors: the
rehearsal of a major upgrade with little downtime. The schema is copied,
the source publishes every table, the destination subscribes; addresses
come from the model and passwords from each server's ~/.pgpass."""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field

from atelier.core.errors import AtelierError
from atelier.dba.checksums import USER_OBJECTS_SQL, compare_tables, table_checksums
from atelier.dba.server import Server, psql_local, wait_for

NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


def names_for(matrix, source: str, db: str) -> tuple[str, str]:
    """(publication, subscription): one publication per database, one
    subscription per source server and database."""
    if not NAME.match(db):
        raise AtelierError(f"--db {db}: db.logical takes a database name of lowercase letters, digits and _")
    return f"atelier_{db}", f"atelier_{matrix.replication_slot(matrix.container(source))}_{db}"[:63]


@dataclass
class LogicalReport:
    source: str
    destination: str
    db: str
    publication: str
    subscription: str
    tables: int = 0
    synced_seconds: float | None = None
    lag_bytes: int | None = None
    problems: list[str] = field(default_factory=list)
    verified: bool = False
    dropped: bool = False


def connection_to(matrix, name: str, db: str) -> str:
    return f"host={matrix.container(name).address} port=5432 user=experdba dbname={db}"


def drop(session, source: str, destination: str, db: str, say) -> LogicalReport:
    publication, subscription = names_for(session.matrix, source, db)
    src, dst = Server(session, source), Server(session, destination)
    if db in dst.databases():
        say(f"dropping subscription {subscription} on {destination}")
        dst.run(f"DROP SUBSCRIPTION IF EXISTS {subscription};", db=db, what="dropping the subscription")
    say(f"dropping publication {publication} on {source}")
    src.run(f"DROP PUBLICATION IF EXISTS {publication};", db=db, what="dropping the publication")
    src.run("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            f"WHERE slot_name = {src.literal(subscription)} AND NOT active;", what="dropping the slot")
    return LogicalReport(source, destination, db, publication, subscription, dropped=True)


def logical(session, source: str, destination: str, db: str, verify: bool, say) -> LogicalReport:
    matrix = session.matrix
    if source == destination:
        raise AtelierError("--from and --to name the same server")
    publication, subscription = names_for(matrix, source, db)
    src, dst = Server(session, source), Server(session, destination)
    for server in (src, dst):
        if not server.state().primary:
            raise AtelierError(f"{server.name} is not a running primary; logical replication needs one at each end")
    if db not in src.databases():
        raise AtelierError(f"no database {db} on {source}; its databases: {', '.join(src.databases())}")
    level = src.setting("wal_level")
    if level != "logical":
        raise AtelierError(f"{source} runs with wal_level={level}; atelier sets logical at boot: "
                           f"`inv pg.restart -t {source}`")
    report = LogicalReport(source, destination, db, publication, subscription)
    if db not in dst.databases():
        dst.run(f'CREATE DATABASE "{db}" OWNER experdba;', what=f"creating {db}")
    existing = dst.rows(f"SELECT subname FROM pg_subscription WHERE subname = {dst.literal(subscription)}", db=db)
    if not existing:
        copy_schema(src, dst, db, say)
        say(f"publishing every table of {db} on {source} ({publication})")
        src.run(f"SELECT 'CREATE PUBLICATION {publication} FOR ALL TABLES' WHERE NOT EXISTS "
                f"(SELECT FROM pg_publication WHERE pubname = {src.literal(publication)}) \\gexec",
                db=db, what="creating the publication")
        say(f"subscribing {destination} to it ({subscription})")
        dst.run(f"CREATE SUBSCRIPTION {subscription} CONNECTION "
                f"{dst.literal(connection_to(matrix, source, db))} PUBLICATION {publication};",
                db=db, what="creating the subscription")
    started = time.monotonic()
    say("waiting for the initial copy of every table")
    pending_sql = ("SELECT count(*) FILTER (WHERE r.srsubstate NOT IN ('r', 's')) AS pending, count(*) AS tables "
                   "FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid "
                   f"WHERE s.subname = {dst.literal(subscription)}")
    done = wait_for(lambda: (lambda r: r if r["pending"] == 0 else None)(dst.rows(pending_sql, db=db)[0]),
                    900, 0.5)
    if not done:
        raise AtelierError(f"the initial copy into {destination} did not finish in 900 s; "
                           f"its log: inv pg.log -t {destination}")
    report.tables = done["tables"]
    report.synced_seconds = time.monotonic() - started
    report.lag_bytes = lag(src, subscription)
    if verify:
        say("verifying every table on both sides")
        expected = table_checksums(src, db)
        # What was committed on the source arrives in a moment: compare until equal.
        problems = compare_tables(expected, table_checksums(dst, db))
        deadline = time.monotonic() + 60
        while problems and time.monotonic() < deadline:
            time.sleep(1)
            expected = table_checksums(src, db)
            problems = compare_tables(expected, table_checksums(dst, db))
        report.verified, report.problems = True, problems
        report.lag_bytes = lag(src, subscription)
    return report


def lag(src: Server, subscription: str) -> int | None:
    rows = src.rows("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag "
                    f"FROM pg_replication_slots WHERE slot_name = {src.literal(subscription)}")
    return rows[0]["lag"] if rows else None


# Schemas atelier makes in every server's pooled databases (PgBouncer's
# auth_query function): they are on both sides already, and restoring them
# stopped the copy with `schema "pgbouncer" already exists`. Extensions need no
# such care: pg_dump writes CREATE EXTENSION IF NOT EXISTS.
OWN_SCHEMAS = "--exclude-schema=pgbouncer"


def copy_schema(src: Server, dst: Server, db: str, say) -> None:
    """pg_dump --schema-only of the source, restored on the destination, by
    the newer of the two pg_dumps (an older one refuses a newer server)."""
    matrix = src.session.matrix
    if dst.rows(USER_OBJECTS_SQL, db=db)[0]["objects"]:
        say(f"{db} on {dst.name} has tables already; the schema is not copied again")
        return
    say(f"copying the schema of {db} from {src.name} to {dst.name}")
    if dst.major >= src.major:
        dst.step("copying the schema",
                 f"set -o pipefail; pg_dump --schema-only {OWN_SCHEMAS} "
                 f"{shlex.quote(connection_to(matrix, src.name, db))} | "
                 f'{psql_local(db)} >/dev/null')
    else:
        src.step("copying the schema",
                 f'set -o pipefail; pg_dump --schema-only {OWN_SCHEMAS} -h "$PG_SOCKET_DIR" -d {shlex.quote(db)} | '
                 f"psql -XAtq -v ON_ERROR_STOP=1 {shlex.quote(connection_to(matrix, dst.name, db))} >/dev/null")
