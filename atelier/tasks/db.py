"""db.*: the clusters themselves: replication and role changes, drills that
count what was lost, backups proven to restore, point in time recovery and
logical replication across majors."""

from __future__ import annotations

import json as json_module
import sys

from ..errors import AtelierError
from .common import atelier_task, confirm, finish, locked, session, targets, uninterrupted

SERVER_HELP = "container name (one server)"


def say(line: str) -> None:
    print(f"· {line}", file=sys.stderr, flush=True)


def one_target(current, target) -> str:
    names = targets(current, target)
    if len(names) != 1:
        raise AtelierError(f"--target names {len(names)} containers ({', '.join(names)}); this task takes one")
    current.model.container(names[0])  # a server of the model, or one line
    return names[0]


def asker(yes: bool):
    return lambda question, refusal: confirm(question, yes, refusal)


# ---- seeing replication ----------------------------------------------------------------------

@atelier_task(help={"target": "servers to ask (name, glob or comma list; default: every server that is up)",
                    "json": "print JSON, one object per standby, for scripts"})
def replication(c, target=None, json=False):
    """Each primary's standbys: state, sync state, LSNs, lag in bytes and seconds, slot and retained WAL."""
    from ..remote import fan_out, recorded_names
    from ..replication import REPLICATION_COLUMNS, replication_rows, replication_table_row
    from ..table import format_table

    with session(c) as current:
        servers = [n for n in recorded_names(current.settings)
                   if n in {s.name for s in current.model.servers}]
        names = targets(current, target) if target else servers
        rows: dict[str, list] = {}

        def work(ctx, **streams):
            rows[ctx.host] = replication_rows(ctx, current.model, ctx.host, **streams)

        outcomes = fan_out(current, names, work)
        failed = [o for o in outcomes if o.exit_code]
        ordered = [row for n in names for row in rows.get(n, [])]
        if json:
            print(json_module.dumps(ordered, indent=2))
        elif ordered:
            print(format_table(REPLICATION_COLUMNS, [replication_table_row(r) for r in ordered],
                               right=("lag", "lag s", "retained")))
        else:
            print("no primary among " + ", ".join(names))
        for o in failed:  # named: an error; found by default (a stopped container): a note
            print(f"atelier: {o.error}" if target else f"· skipped {o.name}: {o.error}", file=sys.stderr)
        if failed and target:
            finish(failed)


# ---- changing roles ------------------------------------------------------------------------------

@atelier_task(help={"target": "the standby to promote; its primary becomes its standby"})
def switchover(c, target=None):
    """A planned role swap that loses nothing: the primary stops cleanly, the standby replays all, swaps."""
    from ..replication import switchover as swap

    with session(c) as current:
        name = one_target(current, target)
        with locked(current.settings, "db.switchover"), uninterrupted("db.switchover"):
            pair = swap(current, name, say)
    print(f"{pair.primary} is the primary; {pair.standby} streams from it")


@atelier_task(help={"target": "the standby to promote", "yes": "do not ask before killing the primary (scripts)"})
def failover(c, target=None, yes=False):
    """Promote a standby whether or not its primary answers, and fence the primary (kept stopped)."""
    from ..replication import failover as promote_standby

    with session(c) as current:
        name = one_target(current, target)
        old = current.model.partner(name).name
        confirm(f"kill {old}'s server, keep it stopped, and promote {name}?", yes,
                f"db.failover kills {old}'s server and promotes {name}; add --yes to confirm")
        with locked(current.settings, "db.failover"), uninterrupted("db.failover"):
            pair = promote_standby(current, name, say)
    print(f"{pair.primary} is the primary; {pair.standby} is fenced: `inv db.rejoin -t {pair.standby}` "
          "makes it a standby")


@atelier_task(help={"target": "the old primary (fenced by db.failover, or stopped)",
                    "yes": "if pg_rewind cannot rewind it (or with --fresh), copy it afresh without asking",
                    "fresh": "copy it afresh with pg_basebackup instead of rewinding (asks first)"})
def rejoin(c, target=None, yes=False, fresh=False):
    """Bring an old primary back as a standby of the new one: pg_rewind, or a fresh copy after asking."""
    from ..replication import rejoin as rejoin_server

    with session(c) as current:
        name = one_target(current, target)
        with locked(current.settings, "db.rejoin"), uninterrupted("db.rejoin"):
            pair = rejoin_server(current, name, say, asker(yes), fresh)
    print(f"{pair.standby} streams from {pair.primary}")


@atelier_task(help={"target": "server(s) of a pair: name, glob or comma list",
                    "yes": "do not ask before throwing the data away (scripts)"})
def reseed(c, target=None, yes=False):
    """Throw away a server's data and copy it again from its partner, the primary (asks first)."""
    from ..remote import fan_out
    from ..replication import reseed as copy_again

    with session(c) as current:
        names = targets(current, target)
        for name in names:
            current.model.partner(name)  # a server of a pair, or one line
        shown = ", ".join(names)
        confirm(f"delete the data of {shown} and copy it again from the primary?", yes,
                f"db.reseed deletes the data of {shown} and copies it again from the primary; "
                "add --yes to confirm")
        with locked(current.settings, "db.reseed"), uninterrupted("db.reseed"):
            finish(fan_out(current, names, lambda ctx, **streams: copy_again(current, ctx.host, **streams)))


@atelier_task(help={"kind": "switchover or failover",
                    "target": "one active/standby pair, e.g. 'debian12-pg15-*'",
                    "sync": "make the standby synchronous first (a failover must then lose nothing)",
                    "json": "print the report as JSON"})
def drill(c, kind, target=None, sync=False, json=False):
    """A role change with a writer running; counts committed rows against rows on the new primary."""
    from dataclasses import asdict

    from ..drill import KINDS, drill as run_drill
    from ..errors import choice_error
    from ..replication import replicated_pair

    if kind not in KINDS:
        raise choice_error("drill", kind, list(KINDS))
    with session(c) as current:
        standby, primary = replicated_pair(current, targets(current, target))
        with locked(current.settings, f"db.drill {kind}"), uninterrupted(f"db.drill {kind}"):
            report = run_drill(current, kind, standby, primary, sync, say)
    if json:
        print(json_module.dumps({**asdict(report), "lost_count": report.lost_count}, indent=2))
    else:
        print("\n".join(report.lines()))
    if report.failed:
        raise AtelierError(f"the {kind} lost {report.lost_count} committed rows")


# ---- backups ------------------------------------------------------------------------------------

@atelier_task(help={"target": SERVER_HELP, "db": "database(s), comma-separated (default experdb)",
                    "all": "every database of the server"})
def backup(c, target=None, db=None, all=False):
    """pg_dump (custom format) and globals to backups/<container>/<time>/, with a manifest of table checksums."""
    from ..backup import backup as take

    if db and all:
        raise AtelierError("--db and --all exclude each other")
    dbs = None if all else [d.strip() for d in (db or "experdb").split(",") if d.strip()]
    with session(c) as current:
        name = one_target(current, target)
        folder = take(current, name, dbs, say)
    print(folder)


@atelier_task(help={"path": "a backup folder (backups/<container>/<time>)", "target": SERVER_HELP,
                    "db": "restore into this database (default: the dumped database's own name)",
                    "clean": "replace a non-empty database (with --yes)",
                    "yes": "confirm --clean without asking", "verify": "compare every table with the manifest"})
def restore(c, path, target=None, db=None, clean=False, yes=False, verify=False):
    """Restore a db.backup into a new database; --verify proves it equals what was dumped."""
    from pathlib import Path

    from ..backup import restore as put_back

    folder = Path(path)
    with session(c) as current:
        name = one_target(current, target)
        if clean:
            confirm(f"drop and replace the restored database(s) on {name}?", yes,
                    f"--clean drops the database on {name} before restoring; add --yes to confirm")
        results = put_back(current, folder, name, db, clean, verify, say)
    failed = False
    for r in results:
        if not r.verified:
            print(f"{r.source_db} -> {r.db} on {name}: restored (not verified; --verify compares it)")
        elif r.problems:
            failed = True
            print(f"{r.source_db} -> {r.db} on {name}: DIFFERS from the backup:")
            for problem in r.problems:
                print(f"  {problem}")
        else:
            print(f"{r.source_db} -> {r.db} on {name}: restored and verified, every table equal")
    if failed:
        raise AtelierError("the restored data differs from the manifest")


@atelier_task(help={"path": "a backup folder (backups/<container>/<time>)", "target": SERVER_HELP,
                    "db": "the database to compare (default: the dumped database's own name)"})
def verify(c, path, target=None, db=None):
    """Compare a database with a backup's manifest (per-table rows and checksums); exit 1 if it differs."""
    from pathlib import Path

    from ..backup import verify as compare

    with session(c) as current:
        name = one_target(current, target)
        found = compare(current, Path(path), name, db)
    for pair, problems in found.items():
        print(f"{pair} on {name}: " + ("every table equal" if not problems else "DIFFERS from the backup:"))
        for problem in problems:
            print(f"  {problem}")
    if any(found.values()):
        raise AtelierError("the database differs from the backup's manifest")


@atelier_task(help={"target": SERVER_HELP})
def basebackup(c, target=None):
    """pg_basebackup with a manifest, checked by pg_verifybackup, to backups/; switches on WAL archiving."""
    from ..backup import basebackup as take

    with session(c) as current:
        name = one_target(current, target)
        folder = take(current, name, say)
    print(folder)


@atelier_task(help={"backup": "a db.basebackup folder", "to": "recover up to this time, e.g. '2026-11-24 10:15:00+00'",
                    "target": "a standalone server of the same major (its data is replaced)",
                    "yes": "do not ask before replacing its data"})
def pitr(c, backup=None, to=None, target=None, yes=False):
    """Point in time recovery: a base backup plus archived WAL, up to a time, into a standalone server."""
    from pathlib import Path

    from ..backup import pitr as recover

    if not backup or not to:
        raise AtelierError("db.pitr needs --backup FOLDER and --to 'TIME'")
    with session(c) as current:
        name = one_target(current, target)
        with locked(current.settings, "db.pitr"), uninterrupted("db.pitr"):
            recover(current, Path(backup), to, name, say, asker(yes))
    print(f"{name} holds the backup's data recovered to {to}")


# ---- logical replication ------------------------------------------------------------------------

@atelier_task(help={"from_": "the publishing server", "to": "the subscribing server",
                    "db": "the database (default experdb)", "verify": "compare every table on both sides",
                    "drop": "remove the subscription, the publication and the slot", "json": "print JSON"})
def logical(c, from_=None, to=None, db="experdb", verify=False, drop=False, json=False):
    """Logical replication from one server to another (e.g. PG 15 -> 17): schema, publication, subscription."""
    from dataclasses import asdict

    from ..logical import drop as remove
    from ..logical import logical as replicate

    if not from_ or not to:
        raise AtelierError("db.logical needs --from SERVER and --to SERVER")
    with session(c) as current:
        for name in (from_, to):
            one_target(current, name)
        report = remove(current, from_, to, db, say) if drop else replicate(current, from_, to, db, verify, say)
    if json:
        print(json_module.dumps(asdict(report), indent=2))
    elif report.dropped:
        print(f"dropped {report.subscription} on {to} and {report.publication} on {from_}")
    else:
        print(f"{from_} -> {to} ({db}): {report.tables} tables copied in {report.synced_seconds:.1f} s, "
              f"lag {report.lag_bytes if report.lag_bytes is not None else '-'} bytes")
        if report.verified:
            print("every table equal on both sides" if not report.problems else
                  "DIFFERENT:\n" + "\n".join(f"  {p}" for p in report.problems))
    if report.problems:
        raise AtelierError("the subscriber's tables differ from the publisher's")
