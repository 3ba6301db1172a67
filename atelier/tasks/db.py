"""db.*: the clusters themselves: replication and role changes, drills that
count what was lost, backups proven to restore, point in time recovery,
logical replication across majors, tuning, health, PgBouncer and pgbench."""

from __future__ import annotations

import json as json_module
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from atelier.core.errors import AtelierError, choice_error
from atelier.core.table import format_table
from atelier.dba import backup as dba_backup
from atelier.dba import drill as dba_drill
from atelier.dba import health, logical as dba_logical, patroni as dba_patroni, pgbench, pgbouncer, pitr as dba_pitr
from atelier.dba import prometheus
from atelier.dba import replication as dba
from atelier.dba import routes as dba_routes, tuning
from atelier.dba import cutover as dba_cutover
from atelier.dba import upgrade as dba_upgrade
from atelier.dba.server import Server
from atelier.ssh.fanout import fan_out

from .common import (atelier_task, confirm, finish, locked, report_failures, selected_environment, servers_named_or_up,
                     session, targets, uninterrupted)

SERVER_HELP = "container name (one server)"


def say(line: str) -> None:
    print(f"· {line}", file=sys.stderr, flush=True)


def one_target(current, target) -> str:
    names = targets(current, target)
    if len(names) != 1:
        raise AtelierError(f"--target names {len(names)} containers ({', '.join(names)}); this task takes one")
    current.matrix.container(names[0])  # a server of the model, or one line
    return names[0]


def whole(option: str, value, low: int = 1) -> int:
    """An option's whole number, or one line."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or number < low:
        raise AtelierError(f"{option} {value} is not a whole number of {low} or more")
    return number


def asker(yes: bool):
    return lambda question, refusal: confirm(question, yes, refusal)


def under_patroni(current, name: str) -> bool:
    """Role changes of `name` go through Patroni (ATELIER_HA=patroni), which
    names the members of its clusters when `name` is none of them."""
    return current.matrix.settings.patroni and current.matrix.container(name).is_server


# ---- seeing replication ----------------------------------------------------------------------

@atelier_task(help={"target": "servers to ask (name, glob or comma list; default: every server that is up)",
                    "json": "print JSON, one object per standby, for scripts"})
def replication(c, target=None, json=False):
    """Each primary's standbys: state, sync state, LSNs, lag in bytes and seconds, slot and retained WAL."""
    with session(c) as current:
        names = servers_named_or_up(current, target)
        rows: dict[str, list] = {}

        def work(ctx, **streams):
            rows[ctx.host] = dba.replication_rows(Server(current, ctx.host, ctx), **streams)

        outcomes = fan_out(current, names, work)
        ordered = [row for n in names for row in rows.get(n, [])]
        if json:
            print(json_module.dumps(ordered, indent=2))
            report_failures(outcomes, named=bool(target))
            return
        views = patroni_views(current, names)
        if views:
            print(format_table(dba_patroni.VIEW_COLUMNS, [r for v in views for r in dba_patroni.view_rows(v)],
                               right=("TL", "lag MB")))
            print()
        if ordered:
            print(format_table(dba.REPLICATION_COLUMNS, [dba.replication_table_row(r) for r in ordered],
                               right=("lag", "lag s", "retained")))
        else:
            print("no primary among " + ", ".join(names))
        report_failures(outcomes, named=bool(target))


def patroni_views(current, names: list[str]) -> list:
    """Patroni's view of each cluster one of `names` is a member of (ATELIER_HA=patroni)."""
    matrix = current.matrix
    if not matrix.settings.patroni:
        return []
    pairs = [p for p in matrix.pairs if any(m.name in names for m in p.members)]
    views = []
    for pair in pairs:
        try:
            views.append(dba_patroni.cluster_view(current, pair))
        except AtelierError as error:
            say(str(error))
    return views


# ---- changing roles ------------------------------------------------------------------------------

@atelier_task(help={"target": "the standby to promote; its primary becomes its standby"})
def switchover(c, target=None):
    """A planned role swap that loses nothing: the primary stops cleanly, the standby replays all, swaps."""
    with session(c) as current:
        name = one_target(current, target)
        with locked(current.settings, "db.switchover"), uninterrupted("db.switchover"):
            change = dba_patroni.switchover if under_patroni(current, name) else dba.switchover
            pair = change(current, name, say)
    print(f"{pair.primary} is the primary; {pair.standby} streams from it")


@atelier_task(help={"target": "the standby to promote", "yes": "do not ask before killing the primary (scripts)"})
def failover(c, target=None, yes=False):
    """Promote a standby whether or not its primary answers, and fence the primary (kept stopped)."""
    with session(c) as current:
        name = one_target(current, target)
        if under_patroni(current, name):
            old = dba_patroni.partner(current, name)
            confirm(f"ask Patroni to fail over to {name} (PostgreSQL on {old} stops being the primary at once)?",
                    yes, f"db.failover asks Patroni to promote {name} at once; add --yes to confirm")
            with locked(current.settings, "db.failover"), uninterrupted("db.failover"):
                pair = dba_patroni.failover(current, name, say)
            print(f"{pair.primary} leads; Patroni makes {pair.standby} follow it when it answers")
            return
        old = current.matrix.partner(name).name
        confirm(f"kill {old}'s server, keep it stopped, and promote {name}?", yes,
                f"db.failover kills {old}'s server and promotes {name}; add --yes to confirm")
        with locked(current.settings, "db.failover"), uninterrupted("db.failover"):
            pair = dba.failover(current, name, say)
    print(f"{pair.primary} is the primary; {pair.standby} is fenced: `inv db.rejoin -t {pair.standby}` "
          "makes it a standby")


@atelier_task(help={"target": "the old primary (fenced by db.failover, or stopped)",
                    "yes": "if pg_rewind cannot rewind it (or with --fresh), copy it afresh without asking",
                    "fresh": "copy it afresh with pg_basebackup instead of rewinding (asks first)"})
def rejoin(c, target=None, yes=False, fresh=False):
    """Bring an old primary back as a standby of the new one: pg_rewind, or a fresh copy after asking."""
    with session(c) as current:
        name = one_target(current, target)
        patroni = under_patroni(current, name)
        if patroni and fresh:
            raise AtelierError(f"under Patroni a fresh copy is Patroni's reinit: `inv db.reseed -t {name}`")
        with locked(current.settings, "db.rejoin"), uninterrupted("db.rejoin"):
            pair = dba_patroni.rejoin(current, name, say) if patroni else dba.rejoin(current, name, say, asker(yes),
                                                                                     fresh)
    print(f"{pair.standby} streams from {pair.primary}")


@atelier_task(help={"target": "server(s) of a pair: name, glob or comma list",
                    "yes": "do not ask before throwing the data away (scripts)"})
def reseed(c, target=None, yes=False):
    """Throw away a server's data and copy it again from its partner, the primary (asks first)."""
    with session(c) as current:
        names = targets(current, target)
        for name in names:
            current.matrix.partner(name)  # a server of a pair, or one line
        shown = ", ".join(names)
        confirm(f"delete the data of {shown} and copy it again from the primary?", yes,
                f"db.reseed deletes the data of {shown} and copies it again from the primary; "
                "add --yes to confirm")
        with locked(current.settings, "db.reseed"), uninterrupted("db.reseed"):
            if all(under_patroni(current, n) for n in names):
                for name in names:
                    dba_patroni.reinit(current, name, say)
                return
            finish(fan_out(current, names,
                           lambda ctx, **streams: dba.reseed(current, ctx.host, ctx, **streams)))


@atelier_task(help={"kind": "switchover, failover, zombie, dcs-loss (Patroni) or partition",
                    "target": "one active/standby pair, e.g. 'debian12-pg15-*'",
                    "cut": "partition: a command (run here) that cuts the primary off, instead of taking its "
                           "container off the network; with --heal",
                    "heal": "partition: the command that undoes --cut",
                    "sync": "make the standby synchronous first (a failover must then lose nothing)",
                    "auto": "failover under Patroni: kill the leader and let Patroni promote on its own",
                    "pause": "zombie: seconds the primary stays frozen (default: the leader lock's TTL + 5)",
                    "failsafe": "dcs-loss: with Patroni's failsafe_mode on for the drill",
                    "json": "print the report as JSON"})
def drill(c, kind, target=None, sync=False, auto=False, pause=None, failsafe=False, json=False, cut=None, heal=None):
    """A role change with a writer running through the pool; counts committed rows against rows present."""
    if kind not in dba_drill.KINDS:
        raise choice_error("drill", kind, list(dba_drill.KINDS))
    if (cut or heal) and kind != "partition":
        raise AtelierError(f"--cut and --heal are the partition drill's, not {kind}'s")
    if bool(cut) != bool(heal):
        raise AtelierError("--cut needs --heal (and --heal --cut): what cuts the primary off must be undone")
    custom = dba_drill.Cut(f"`{cut}`, healed by `{heal}`", lambda: run_here(cut), lambda: run_here(heal)) \
        if cut else None
    with session(c) as current:
        patroni = current.matrix.settings.patroni
        if kind in dba_drill.PATRONI_ONLY and not patroni:
            raise AtelierError(f"db.drill {kind} drills Patroni's etcd and this environment's pairs are plain "
                               "(ATELIER_HA=plain); set ATELIER_HA=patroni in .env and `inv up`")
        if auto and not (patroni and kind == "failover"):
            raise AtelierError("--auto is a Patroni failover (the leader killed, Patroni promotes); "
                               f"{'plain pairs fail over with db.drill failover' if not patroni else 'not ' + kind}")
        if failsafe and kind != "dcs-loss":
            raise AtelierError("--failsafe is Patroni's failsafe_mode for db.drill dcs-loss, not " + kind)
        standby, primary = dba.replicated_pair(current, targets(current, target))
        with locked(current.settings, f"db.drill {kind}"), uninterrupted(f"db.drill {kind}"):
            report = dba_drill.drill(current, kind, standby, primary, sync, say, auto=auto,
                                     pause_seconds=whole("--pause", pause) if pause is not None else None,
                                     failsafe=failsafe, cut=custom)
    if json:
        print(json_module.dumps({**asdict(report), "lost_count": report.lost_count}, indent=2))
    else:
        print("\n".join(report.lines()))
    if report.failed:
        what = (f"took {report.zombie_writes_pooled} writes through the pool after the promotion"
                if report.zombie_writes_pooled else f"lost {report.lost_count} committed rows")
        raise AtelierError(f"the {kind} {what}")


def run_here(command: str) -> None:
    """A --cut or --heal command, on this host, without a shell; one line if it fails."""
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        raise AtelierError(f"`{command}` could not run: {exc}") from None
    if done.returncode != 0:
        raise AtelierError(f"`{command}` failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}")


# ---- backups ------------------------------------------------------------------------------------

@atelier_task(help={"target": SERVER_HELP, "db": "database(s), comma-separated (default experdb)",
                    "all": "every database of the server"})
def backup(c, target=None, db=None, all=False):
    """pg_dump (custom format) and globals to backups/<container>/<time>/, with a manifest of table checksums."""
    if db and all:
        raise AtelierError("--db and --all exclude each other")
    dbs = None if all else [d.strip() for d in (db or "experdb").split(",") if d.strip()]
    with session(c) as current:
        name = one_target(current, target)
        folder = dba_backup.backup(current, name, dbs, say)
    print(folder)


@atelier_task(help={"path": "a backup folder (backups/<container>/<time>)", "target": SERVER_HELP,
                    "db": "restore into this database (default: the dumped database's own name)",
                    "clean": "replace a non-empty database (with --yes)",
                    "yes": "confirm --clean without asking", "verify": "compare every table with the manifest"})
def restore(c, path, target=None, db=None, clean=False, yes=False, verify=False):
    """Restore a db.backup into a new database; --verify proves it equals what was dumped."""
    folder = Path(path)
    with session(c) as current:
        name = one_target(current, target)
        if clean:
            confirm(f"drop and replace the restored database(s) on {name}?", yes,
                    f"--clean drops the database on {name} before restoring; add --yes to confirm")
        results = dba_backup.restore(current, folder, name, db, clean, verify, say)
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
    with session(c) as current:
        name = one_target(current, target)
        found = dba_backup.verify(current, Path(path), name, db)
    for pair, problems in found.items():
        print(f"{pair} on {name}: " + ("every table equal" if not problems else "DIFFERS from the backup:"))
        for problem in problems:
            print(f"  {problem}")
    if any(found.values()):
        raise AtelierError("the database differs from the backup's manifest")


@atelier_task(help={"target": SERVER_HELP})
def basebackup(c, target=None):
    """pg_basebackup with a manifest, checked by pg_verifybackup, to backups/; switches on WAL archiving."""
    with session(c) as current:
        name = one_target(current, target)
        folder = dba_pitr.basebackup(current, name, say)
    print(folder)


@atelier_task(help={"backup": "a db.basebackup folder", "to": "recover up to this time, e.g. '2026-11-24 10:15:00+00'",
                    "target": "a standalone server of the same major (its data is replaced)",
                    "yes": "do not ask before replacing its data"})
def pitr(c, backup=None, to=None, target=None, yes=False):
    """Point in time recovery: a base backup plus archived WAL, up to a time, into a standalone server."""
    if not backup or not to:
        raise AtelierError("db.pitr needs --backup FOLDER and --to 'TIME'")
    with session(c) as current:
        name = one_target(current, target)
        with locked(current.settings, "db.pitr"), uninterrupted("db.pitr"):
            dba_pitr.pitr(current, Path(backup), to, name, say, asker(yes))
    print(f"{name} holds the backup's data recovered to {to}")


# ---- major upgrades ---------------------------------------------------------------------------

@atelier_task(help={"target": "the server to upgrade: <os>-pg<M>-active or -standalone",
                    "to": "the new major: its server of the same OS and role takes the upgraded cluster",
                    "method": "pg_upgrade's: copy (default; the old cluster stays usable), link, clone, "
                              "swap (18+); link and swap leave the old cluster unusable (asks first)",
                    "check": "pg_upgrade --check only: the old server stops for it and starts again",
                    "rollback": "after --method copy or clone: start the old major's cluster again",
                    "yes": "do not ask (a one-way method; rebuilding the standby)",
                    "json": "print the report as JSON"})
def upgrade(c, target=None, to=None, method="copy", check=False, rollback=False, yes=False, json=False):
    """pg_upgrade as a drill: --check first, then the upgrade, with proof (checksums, amcheck, statistics)."""
    with session(c) as current:
        name = one_target(current, target)
        if rollback:
            with locked(current.settings, "db.upgrade"), uninterrupted("db.upgrade --rollback"):
                print(dba_upgrade.rollback(current, name, say))
            return
        if to is None:
            raise AtelierError("db.upgrade needs --to <major>, e.g. `inv db.upgrade -t debian14-pg18-active --to 19`")
        p = dba_upgrade.plan(current.matrix, name, to, method)
        if under_patroni(current, name):
            raise AtelierError("db.upgrade runs on plain pairs; under Patroni (ATELIER_HA=patroni) the upgrade "
                               "of a member is Patroni's to order, which atelier does not drill yet")
        standby = None
        if not check and current.matrix.container(name).role == "active":
            standby = current.matrix.sibling(p.new, "standby").name
        if not check and p.one_way:
            confirm(f"--method {p.method}: once {p.new} runs, {p.old}'s PostgreSQL {p.old_major} cluster cannot "
                    "start again (a backup is the way back). Go on?", yes,
                    f"--method {p.method} leaves {p.old}'s cluster unusable once {p.new} runs; "
                    "add --yes to confirm, or use --method copy to keep it")
        if standby:
            confirm(f"after the upgrade, delete the data of {standby} and copy it again from {p.new}?", yes,
                    f"db.upgrade rebuilds {standby} from {p.new} after the upgrade (its data is deleted); "
                    "add --yes to confirm")
        with locked(current.settings, "db.upgrade"):
            report = dba_upgrade.upgrade(current, p, say, check_only=check)
            if report is None:
                return
            if standby:
                with uninterrupted("rebuilding the standby"):
                    report.standby = dba_upgrade.rebuild_standby(current, p, say)
    if json:
        print(json_module.dumps(report.as_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    if report.differences or report.index_errors:
        raise AtelierError(f"the upgrade of {p.old} is not proven: {len(report.differences)} table(s) differ, "
                           f"{len(report.index_errors)} index error(s)")


# ---- blue/green through the pool ------------------------------------------------------------

@atelier_task(help={"from_": "the server clients write to now (through the pool)",
                    "to": "the server db.logical subscribed to it",
                    "db": "the database (default experdb)",
                    "back": "return: the same --from and --to as the cutover",
                    "json": "print the report as JSON"})
def cutover(c, from_=None, to=None, db="experdb", back=False, json=False):
    """Move the pool's entry of --from to --to with a writer running: pause, catch up, sequences, replication back, resume."""
    if not from_ or not to:
        raise AtelierError("db.cutover needs --from and --to, e.g. `inv db.cutover --from debian12-pg15-active "
                           "--to debian13-pg17-standalone`")
    with session(c) as current:
        for name in (from_, to):
            if not current.matrix.container(name).is_server:
                raise AtelierError(f"{name} is not a PostgreSQL server")
        with locked(current.settings, "db.cutover"), uninterrupted("db.cutover"):
            report = dba_cutover.cutover(current, current.engine, from_, to, db, back, say)
    print(json_module.dumps(report.as_dict(), indent=2) if json else "\n".join(report.lines()))
    if report.failed:
        raise AtelierError(f"the cutover lost {len(report.lost)} row(s), duplicated {report.duplicated}, "
                           f"and {report.id_collisions} id(s) collide")


# ---- logical replication ------------------------------------------------------------------------

@atelier_task(help={"from_": "the publishing server", "to": "the subscribing server",
                    "db": "the database (default experdb)", "verify": "compare every table on both sides",
                    "drop": "remove the subscription, the publication and the slot", "json": "print JSON"})
def logical(c, from_=None, to=None, db="experdb", verify=False, drop=False, json=False):
    """Logical replication from one server to another (e.g. PG 15 -> 17): schema, publication, subscription."""
    if not from_ or not to:
        raise AtelierError("db.logical needs --from SERVER and --to SERVER")
    with session(c) as current:
        for name in (from_, to):
            one_target(current, name)
        report = (dba_logical.drop(current, from_, to, db, say) if drop
                  else dba_logical.logical(current, from_, to, db, verify, say))
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


# ---- tuning and health ----------------------------------------------------------------------------

@atelier_task(help={"target": SERVER_HELP,
                    "memory": "memory to tune for, like 32GB (default: the container's cgroup limit, else the host's)",
                    "cpus": "cpus to tune for (default: the container's cpu limit, else the host's)",
                    "storage": "ssd or hdd (default ssd)", "workload": "oltp, olap or mixed (default oltp)",
                    "connections": "expected connections (default: the server's max_connections, which is then "
                                   "left alone; given, it is proposed too)",
                    "apply": "ALTER SYSTEM the proposals and reload", "restart": "with --apply: restart if needed",
                    "reset": "undo what db.tune applied", "json": "print JSON"})
def tune(c, target=None, memory=None, cpus=None, storage="ssd", workload="oltp", connections=None,
         apply=False, restart=False, reset=False, json=False):
    """Memory, WAL, parallelism and I/O settings from the machine and workload (the expert note's rules)."""
    connections = None if connections is None else whole("--connections", connections)
    tuning.check_choices(storage, workload, connections)
    memory_bytes = tuning.parse_memory(memory) if memory else None
    cpus = None if cpus is None else whole("--cpus", cpus)
    if apply and reset:
        raise AtelierError("--apply and --reset exclude each other")
    with session(c) as current:
        server = Server(current, one_target(current, target))
        if reset:
            record, pending = tuning.reset(server)
            if not record:
                print(f"db.tune has applied nothing on {server.name}")
                return
            print(f"{server.name}: put back "
                  + ", ".join(f"{k}={'(default)' if v is None else v}" for k, v in record.items()))
            _restart_note(server, pending, restart)
            return
        proposal = tuning.plan(server, memory_bytes, cpus, storage, workload, connections)
        if json:
            print(json_module.dumps(proposal.as_json(), indent=2))
        else:
            print(f"{server.name}: {proposal.basis}")
            print(format_table(("setting", "current", "proposed", "", "why"),
                               [(r["setting"], r["current"], r["proposed"],
                                 ("*" if r["change"] else "") + (" restart" if r["change"] and r["restart"] else ""),
                                 r["why"]) for r in proposal.rows]))
        if not apply:
            if proposal.changes and not json:
                print(f"{len(proposal.changes)} to change (*); --apply writes them with ALTER SYSTEM")
            return
        if not proposal.changes:
            print(f"{server.name}: nothing to change")
            return
        pending = tuning.apply(server, proposal.changes)
        print(f"{server.name}: applied {len(proposal.changes)} settings with ALTER SYSTEM and reloaded "
              f"(`inv db.tune -t {server.name} --reset` undoes them)")
        _restart_note(server, pending, restart)


def _restart_note(server: Server, pending, restart) -> None:
    if not pending:
        return
    if restart:
        tuning.restart(server)
        print(f"{server.name}: restarted for {', '.join(pending)}")
    else:
        print(f"{server.name}: {', '.join(pending)} wait for a restart "
              f"(--restart, or `inv pg.restart -t {server.name}`)")


@atelier_task(help={"target": "servers (name, glob or comma list; default: every server that is up)",
                    "json": "print JSON, one object per line of the report",
                    "watch": "refresh every N seconds until Ctrl-C",
                    "long": "a query running longer than this many seconds is reported (default 300)"})
def report(c, target=None, json=False, watch=0, long=300):
    """Health: cache hits, connections, lag, long and blocked queries, top statements, unused indexes, bloat, xid age."""
    watch, long = whole("--watch", watch, 0), whole("--long", long, 0)
    with session(c) as current:
        names = servers_named_or_up(current, target)
        while True:
            lines: dict[str, list] = {}

            def work(ctx, **streams):
                cluster, databases = health.read_facts(Server(current, ctx.host, ctx), long, **streams)
                lines[ctx.host] = health.report_lines(ctx.host, cluster, databases, long)

            outcomes = fan_out(current, names, work)
            every = [line for n in names for line in lines.get(n, [])]
            if watch:
                print("\x1b[H\x1b[2J", end="")
            if json:
                print(json_module.dumps(health.as_json(every), indent=2))
            else:
                for n in names:
                    if lines.get(n):
                        print(f"== {n}: {health.worst(lines[n])}")
                        print(format_table(("check", "subject", "value", "level", "detail"),
                                           [(x.check, x.subject, x.value, x.level, x.detail) for x in lines[n]]))
            if not watch:
                break
            report_failures(outcomes, named=bool(target), exit=False)
            time.sleep(watch)
        report_failures(outcomes, named=bool(target))
        if health.worst(every) == "crit":
            raise AtelierError("the report has crit lines")


# ---- PgBouncer and pgbench ------------------------------------------------------------------------

@atelier_task(help={"target": "a pair (debian12-pg15) or either of its servers",
                    "ro": "the read-only route: the members in recovery",
                    "direct": "HAProxy's route itself, not through PgBouncer",
                    "db": "the database (default experdb)"})
def url(c, target=None, ro=False, direct=False, db="experdb"):
    """The libpq URL a client of a pair uses (DATABASE_URL): through PgBouncer to whichever member is the primary."""
    if not target:
        raise AtelierError("give the pair: inv db.url -t debian12-pg15 [--ro] [--direct]")
    env = selected_environment(c, "full")
    for route in dba_routes.routes(env, target, read_only=ro, direct=direct, database=db):
        print(f"{route.url}\t{route.where}")
    say("no password in a URL: libpq reads it from ~/.pgpass or PGPASSWORD")


@atelier_task
def pool(c):
    """PgBouncer's SHOW POOLS and SHOW STATS (ATELIER_PGBOUNCER=1)."""
    with session(c) as current:
        print(pgbouncer.console(current.engine, current.matrix, ["SHOW POOLS", "SHOW STATS"]), end="")


@atelier_task(help={"json": "print JSON"})
def alerts(c, json=False):
    """Pending and firing alerts from Prometheus (ATELIER_MONITORING=1), one line each; exit 1 when a critical one fires."""
    with session(c) as current:
        prometheus.require(current.matrix)
        found = prometheus.alerts(current.engine, current.matrix)
    if json:
        print(json_module.dumps([asdict(a) for a in found], indent=2))
    else:
        now = time.time()
        for alert in found:
            print(prometheus.alert_line(alert, now))
        if not found:
            print("no alert pending or firing")
        print(prometheus.rules_note(current.matrix), file=sys.stderr)
    critical = [a for a in found if a.critical_and_firing]
    if critical:
        raise AtelierError(f"{len(critical)} critical alert(s) firing: "
                           + ", ".join(f"{a.name} on {a.server}" for a in critical))


@atelier_task(help={"target": "container name, glob or comma list (default: every server that is up)",
                    "since": "how far back the chart goes: a number and s, m, h or d (default 1h)",
                    "chart": "draw the four expressions over time as a PNG"})
def metrics(c, target=None, since="1h", chart=False):
    """The expert note's four expressions per server from Prometheus (ATELIER_MONITORING=1); --chart draws them."""
    seconds = prometheus.parse_since(since)
    with session(c) as current:
        prometheus.require(current.matrix)
        names = [n for n in servers_named_or_up(current, target) if current.matrix.container(n).is_server]
        if not names:
            raise AtelierError(f"--target {target} names no server")
        if chart:
            series = prometheus.ranges(current.engine, current.matrix, names, seconds)
            path = current.settings.bench_dir / "metrics" / time.strftime("%Y%m%d-%H%M%S.png")
            prometheus.chart(series, path, since)
        else:
            now = prometheus.latest(current.engine, current.matrix, names)
    if chart:
        print(path)
    else:
        titles = [title for title, _, _ in prometheus.NOTE_EXPRESSIONS]
        print(format_table(("server", *titles), [(name, *(f"{now[name][t]:.4g}" if t in now[name] else "-"
                                                          for t in titles)) for name in names],
                           right=tuple(titles)))
    print(prometheus.where_the_ui_is(current.matrix), file=sys.stderr)


@atelier_task(help={"target": SERVER_HELP, "clients": "client counts, comma-separated (default 10,50,500)",
                    "via": "direct, pgbouncer or both: direct,pgbouncer (default: both when pgbouncer runs)",
                    "seconds": "seconds per run (default 30)",
                    "scale": "pgbench scale when its tables are made (default 10; existing tables are kept)",
                    "script": "pgbench's built-in script: tpcb-like (default), select-only, simple-update",
                    "db": "the database (default experdb)", "json": "print JSON"})
def bench(c, target=None, clients="10,50,500", via=None, seconds=30, scale=10, script="tpcb-like",
          db="experdb", json=False):
    """pgbench at each client count, direct and through PgBouncer: CSV and a chart in bench-results/<server>/."""
    counts = pgbench.parse_clients(clients)
    seconds, scale = whole("--seconds", seconds), whole("--scale", scale)
    if script not in pgbench.SCRIPTS:
        raise choice_error("script", script, pgbench.SCRIPTS)
    db = dba_backup.checked_db_name(db)
    with session(c) as current:
        vias = pgbench.parse_vias(via) if via else (
            ["direct", "pgbouncer"] if current.settings.pgbouncer else ["direct"])
        if "pgbouncer" in vias:
            pgbouncer.require(current.matrix)
        server = Server(current, one_target(current, target))
        result = pgbench.bench(server, vias, counts, seconds, scale, script, db, current.settings.bench_dir, say)
    if json:
        print(json_module.dumps({"csv": str(result.csv), "chart": str(result.chart),
                                 "runs": [asdict(r) for r in result.runs]}, indent=2))
        return
    print(format_table(("via", "clients", "tps", "lat avg ms", "p99 ms", "done", "failed", "server conns", "error"),
                       [(r.via, r.clients, "-" if r.tps is None else f"{r.tps:.0f}",
                         r.latency_avg_ms if r.latency_avg_ms is not None else "-",
                         r.p99_ms if r.p99_ms is not None else "-", r.transactions, r.failed,
                         r.max_server_connections, r.error) for r in result.runs],
                       right=("clients", "tps", "lat avg ms", "p99 ms", "done", "failed", "server conns")))
    print(result.csv)
    print(result.chart)
