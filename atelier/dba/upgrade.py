"""db.upgrade: pg_upgrade of a server's cluster from major M to major N, as a
drill that proves what it did.

Where it runs: in the container of the new major (same OS and role), whose
image carries the old major's server too, and whose data volume is the old
one's (one volume per OS and role, a folder per major): both clusters sit on
one file system, so --link, --clone and --swap work as on a host.

What it proves: per-table row counts and checksums of every database before
and after (checksums.py, as db.backup's manifest), amcheck's
bt_index_check(heapallindexed) on every B-tree index after, and the planner
statistics after (kept by pg_upgrade from 18 on, else vacuumdb
--analyze-in-stages, timed)."""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import asdict, dataclass, field

from atelier.core.errors import AtelierError, StepFailed, choice_error
from atelier.core.matrix import MAJORS
from atelier.dba.checksums import compare_tables, table_checksums
from atelier.dba.replication import reseed
from atelier.dba.server import FENCE_MARKER, Server, psql_local, wait_for
from atelier.pg.step import PRELUDE
from atelier.ssh.guard import guarded

METHODS = ("copy", "link", "clone", "swap")
# After these the old cluster cannot start again once the new one has run.
ONE_WAY = ("link", "swap")
SWAP_SINCE = 18  # pg_upgrade --swap is new in 18
STATS_KEPT_SINCE = 18  # pg_upgrade carries planner statistics over from 18 on
UPGRADED_MARKER = ".atelier-upgraded"  # in the old major's folder: to what, how, when
ASIDE = "main.before-upgrade"  # the new major's cluster before the upgrade, kept


@dataclass(frozen=True)
class Plan:
    old: str  # container names
    new: str
    old_major: int
    new_major: int
    method: str

    @property
    def one_way(self) -> bool:
        return self.method in ONE_WAY


def plan(matrix, name: str, to: int | str, method: str) -> Plan:
    """What `inv db.upgrade -t name --to N --method M` would do, or one line
    saying why it cannot."""
    if method not in METHODS:
        raise choice_error("upgrade method", method, METHODS)
    old = matrix.container(name)
    if not old.is_server:
        raise AtelierError(f"{name} is not a PostgreSQL server; db.upgrade upgrades <os>-pg<major>-active "
                           "or -standalone (a standby is rebuilt from its upgraded primary)")
    if old.role == "standby":
        raise AtelierError(f"{name} is a standby: upgrade its primary ({matrix.partner(name).name}); "
                           "db.upgrade then rebuilds the standby on the new major")
    try:
        new_major = int(to)
    except (TypeError, ValueError):
        raise choice_error("PostgreSQL major", str(to), MAJORS) from None
    if new_major not in MAJORS:
        raise choice_error("PostgreSQL major", str(to), MAJORS)
    if new_major == old.major:
        raise AtelierError(f"{name} already runs PostgreSQL {old.major}; --to names a newer major")
    if new_major < old.major:
        raise AtelierError(f"PostgreSQL {old.major} to {new_major} is a downgrade, which pg_upgrade does not do; "
                           "a dump and restore (`inv db.backup`, `inv db.restore`) or `inv db.logical` goes down")
    if method == "swap" and new_major < SWAP_SINCE:
        raise AtelierError(f"--method swap needs pg_upgrade {SWAP_SINCE} or later; PostgreSQL {new_major}'s "
                           "has copy, link and clone")
    new_name = matrix.server_name(old.os, new_major, old.role)
    try:
        new = matrix.container(new_name)
    except AtelierError:
        raise AtelierError(f"{new_name} is not in the selection; bring both majors up first, e.g. "
                           f"`inv up --os {old.os} --pg {old.major},{new_major}`") from None
    carried = new.image.build.upgrade_from
    if old.major not in carried:
        have = ", ".join(map(str, carried)) or "no older major"
        raise AtelierError(f"{new.image.name} carries the server of {have}, not {old.major}; pg_upgrade "
                           f"needs both in one container: upgrade through {carried[0] if carried else 'a'} "
                           "step by step")
    return Plan(name, new_name, old.major, new_major, method)


# ---- what pg_upgrade says ------------------------------------------------------------------

LIBRARY = re.compile(r'could not load library "(?:\$libdir/)?([^"]+)"')
IN_DATABASE = re.compile(r"^In database: (\S+)")


def findings(output: str, reports: dict[str, str]) -> list[str]:
    """One line per problem of a failed `pg_upgrade --check`: the checks that
    failed, with what their report files name (a missing library and the
    databases using it, one line each)."""
    lines = []
    for line in output.splitlines():
        words = line.rstrip()
        if words.endswith("fatal"):
            lines.append(re.sub(r"\s+fatal$", "", words).strip() + ": failed")
        elif words.startswith(("could not ", "error: ", "FATAL:", "ERROR:")) and words not in lines:
            lines.append(words)
    for report, text in sorted(reports.items()):
        if report.startswith("loadable_libraries"):
            used: dict[str, list[str]] = {}
            library = ""
            for row in text.splitlines():
                found = LIBRARY.search(row)
                if found:
                    library = found.group(1)
                    used.setdefault(library, [])
                in_db = IN_DATABASE.match(row.strip())
                if in_db and library:
                    used[library].append(in_db.group(1))
            for library, dbs in sorted(used.items()):
                lines.append(f"library {library} is missing from the new major (used in "
                             f"{', '.join(sorted(set(dbs))) or 'a database'}): drop the extension there, "
                             "or build it for the new major")
        else:
            for row in text.splitlines():
                if row.strip():
                    lines.append(f"{report}: {row.strip()}")
    if not lines:
        said = [line.strip() for line in output.splitlines() if line.strip()]
        lines = [f"pg_upgrade --check failed without naming a check; it said: {' / '.join(said[-3:]) or 'nothing'}"]
    return lines


def pg_upgrade_line(p: Plan, old_bindir: str, new_bindir: str, old_datadir: str, new_datadir: str,
                    old_config: str, socket_dir: str, check: bool, jobs: int = 2) -> str:
    """pg_upgrade's command line. The old server starts from its own
    configuration without its preloaded libraries: the new major's image need
    not carry the old major's extensions to read the old catalog."""
    old_options = f"-c config_file={old_config} -c shared_preload_libraries="
    words = [f"{new_bindir}/pg_upgrade", "-b", old_bindir, "-B", new_bindir, "-d", old_datadir, "-D", new_datadir,
             "-o", old_options, "-U", "postgres", "-s", socket_dir, "-j", str(jobs), f"--{p.method}"]
    if check:
        words.append("--check")
    return " ".join(shlex.quote(w) for w in words)


# ---- the drill -------------------------------------------------------------------------------

@dataclass
class Report:
    old: str
    new: str
    method: str
    old_major: int
    new_major: int
    downtime_ms: int = 0
    pg_upgrade_s: float = 0.0
    tables: int = 0
    rows: int = 0
    differences: list[str] = field(default_factory=list)
    added_tables: list[str] = field(default_factory=list)
    indexes_checked: int = 0
    index_errors: list[str] = field(default_factory=list)
    statistics: str = ""
    standby: str = ""
    rollback: str = ""
    kept: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.old} (PostgreSQL {self.old_major}) -> {self.new} (PostgreSQL {self.new_major}) "
               f"by pg_upgrade --{self.method}",
               f"downtime {self.downtime_ms} ms (old stopped to a write on the new), "
               f"pg_upgrade {self.pg_upgrade_s:.1f} s",
               f"tables: {self.tables} in every database, {self.rows} rows, "
               + ("counts and checksums equal" if not self.differences else
                  f"{len(self.differences)} DIFFER: " + "; ".join(self.differences))]
        if self.added_tables:
            out.append("new on the new major (extensions atelier creates there): " + ", ".join(self.added_tables))
        out.append(f"amcheck: {self.indexes_checked} B-tree indexes checked with heapallindexed, "
                   + ("no corruption" if not self.index_errors else "ERRORS: " + "; ".join(self.index_errors)))
        out += [f"statistics: {self.statistics}"]
        if self.standby:
            out.append(f"standby: {self.standby}")
        if self.kept:
            out.append(self.kept)
        out.append(self.rollback)
        return out

    def as_dict(self) -> dict:
        return asdict(self)


def quiet(server: Server, command: str, sudo: bool = False):
    """A step whose output atelier reads (and shows only when it explains a
    failure): (exit code, stdout + stderr)."""
    line = guarded(PRELUDE + command)
    if sudo:
        result = server.c.sudo("bash -c " + shlex.quote(line), warn=True, hide=True, in_stream=False)
    else:
        result = server.c.run(line, warn=True, hide=True, in_stream=False)
    return result.exited, result.stdout + result.stderr


INITDB_FACTS_SQL = """SELECT d.datcollate AS collate, d.datctype AS ctype, pg_encoding_to_char(d.encoding) AS encoding,
       d.datlocprovider AS provider, {locale} AS locale,
       current_setting('data_checksums') AS checksums
  FROM pg_database d WHERE d.datname = 'template1'"""


def initdb_line(bindir: str, datadir: str, facts: dict) -> str:
    """initdb of the new cluster with what pg_upgrade requires to match the
    old: encoding, locale and its provider, data checksums."""
    words = [f"{bindir}/initdb", "-D", datadir, "-U", "postgres", "--auth-local=peer", "--auth-host=scram-sha-256",
             "-E", facts["encoding"], f"--lc-collate={facts['collate']}", f"--lc-ctype={facts['ctype']}"]
    provider = {"c": "libc", "i": "icu", "b": "builtin"}[facts["provider"]]
    words.append(f"--locale-provider={provider}")
    if provider == "icu":
        words.append(f"--icu-locale={facts['locale']}")
    elif provider == "builtin":
        words.append(f"--builtin-locale={facts['locale']}")
    words.append("--data-checksums" if facts["checksums"] == "on" else "--no-data-checksums")
    return " ".join(shlex.quote(w) for w in words)


STATS_SQL = """SELECT count(*) AS n FROM pg_stats WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
   AND schemaname NOT LIKE 'pg\\_%'"""

AMCHECK_FUNCTION = """CREATE FUNCTION pg_temp.atelier_amcheck(index oid) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM bt_index_check(index, true);
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RETURN index::regclass::text || ': ' || SQLERRM;
END $$;"""


def amcheck(server: Server, db: str) -> tuple[int, list[str]]:
    """bt_index_check(heapallindexed) of every B-tree index of `db`. amcheck
    is created for the check and dropped after when it was not there."""
    script = ("SELECT NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'amcheck') AS created \\gset\n"
              "CREATE EXTENSION IF NOT EXISTS amcheck;\n"
              + AMCHECK_FUNCTION + "\n"
              + "SELECT json_build_object('checked', count(*), 'errors', coalesce(json_agg(error) "
                "FILTER (WHERE error IS NOT NULL), '[]')) FROM (SELECT pg_temp.atelier_amcheck(c.oid) AS error "
                "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
                "WHERE a.amname = 'btree' AND c.relpersistence <> 't' AND i.indisvalid AND i.indisready) q;\n"
              + "\\if :created\nDROP EXTENSION amcheck;\n\\endif\n")
    result = server.step(f"amcheck of {db}", psql_local(db), stdin=script, hide="out")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return answer["checked"], answer["errors"]


def checksums_of(server: Server) -> dict[str, dict[str, dict]]:
    return {db: table_checksums(server, db) for db in server.databases()}


def write_works(server: Server) -> bool:
    code, _ = quiet(server, 'psql -XAtq -h "$PG_SOCKET_DIR" -d postgres -c "SELECT pg_current_xact_id()"')
    return code == 0


def upgrade(session, p: Plan, say, check_only: bool = False) -> Report | None:
    """Run the drill (see the module's doc). Ctrl-C, or a failure, before
    the new cluster starts puts everything back as it was: the old server
    runs again, the new major's cluster is back in its place."""
    old, new = Server(session, p.old), Server(session, p.new)
    ob, nb = old.build, new.build
    old_datadir, new_datadir = ob.datadir, nb.datadir
    aside = f"{nb.data_mount}/{ASIDE}-{time.strftime('%Y%m%d-%H%M%S')}"
    state = old.state()
    if not state.running or state.in_recovery:
        raise AtelierError(f"{p.old} is not a running primary ({'in recovery' if state.running else 'stopped'}); "
                           "db.upgrade upgrades a running cluster")
    locale_column = "d.datlocale" if p.old_major >= 17 else ("d.daticulocale" if p.old_major >= 15 else "NULL")
    facts = old.rows(INITDB_FACTS_SQL.format(locale=locale_column), what="reading its locale and checksums")[0]
    before = {} if check_only else checksums_of(old)
    stats_before = sum(old.rows(STATS_SQL, db)[0]["n"] for db in old.databases()) if not check_only else 0
    no_return = False
    report = Report(p.old, p.new, p.method, p.old_major, p.new_major)
    try:
        say(f"stopping {p.new} and making a new PostgreSQL {p.new_major} cluster to upgrade into "
            f"(the one there is kept as {aside})")
        new.stop(f"stopping {p.new}")
        # A fence (from a rollback) kept the old cluster of this folder stopped; the new one is to run.
        new.step("putting its cluster aside", f'mv {shlex.quote(new_datadir)} {shlex.quote(aside)} && '
                 f'rm -f "$PG_DATA_MOUNT/{FENCE_MARKER}"')
        new.step("making the new cluster", initdb_line(nb.bindir, new_datadir, facts), hide=True)
        started = time.monotonic()
        say(f"stopping {p.old}: downtime starts")
        old.stop(f"stopping {p.old}")
        old.shutdown_checkpoint()
        with new.temp_folder("upgrade") as work:
            run = f"cd {shlex.quote(work)} && " + pg_upgrade_line(
                p, nb.bindir_of(p.old_major), nb.bindir,
                old_datadir, new_datadir, f"/etc/postgresql/{p.old_major}/main/postgresql.conf"
                if ob.os.package_manager == "apt" else f"{old_datadir}/postgresql.conf", work, check=True)
            say("pg_upgrade --check")
            code, output = quiet(new, run)
            if code != 0:
                _, reports = quiet(new, f'cd {shlex.quote(new_datadir)}/pg_upgrade_output.d 2>/dev/null && '
                                        'for f in */*.txt; do [ -e "$f" ] && printf "==> %s\\n" "$(basename "$f")" '
                                        '&& cat "$f"; done; true')
                raise CheckFailed(findings(output, split_reports(reports)))
            if check_only:
                put_back(old, new, new_datadir, aside, say)
                say(f"pg_upgrade --check passed: nothing stands in the way of PostgreSQL {p.new_major}")
                return None
            say(f"pg_upgrade --{p.method}")
            timer = time.monotonic()
            no_return = p.method == "swap"  # --swap moves the old cluster's files as it goes
            code, output = quiet(new, run.replace(" --check", ""))
            report.pg_upgrade_s = time.monotonic() - timer
            if code != 0:
                moved = (f" (--swap may have moved part of {p.old}'s cluster already; pg_upgrade's logs are in "
                         f"{new_datadir}/pg_upgrade_output.d, and a backup is the way back)" if no_return else "")
                raise AtelierError(f"pg_upgrade --{p.method} failed{moved}:\n{output.strip()}")
        no_return = True
        mark_upgraded(old, p)
        say(f"starting {p.new} on the upgraded cluster")
        new.start(f"starting {p.new}")
        if not wait_for(lambda: write_works(new), 60, 0.05):
            raise AtelierError(f"{p.new} does not take writes after the upgrade; `inv run -t {p.new} -- journalctl "
                               f"-u {nb.service}` says why")
        report.downtime_ms = round((time.monotonic() - started) * 1000)
    except BaseException as exc:
        if no_return:
            raise
        if isinstance(exc, KeyboardInterrupt):
            session.reconnect()
            old, new = Server(session, p.old), Server(session, p.new)
        put_back(old, new, new_datadir, aside, say)
        if isinstance(exc, CheckFailed):
            lines = [with_extension_names(old, line, p.new_major) for line in exc.lines]
            raise AtelierError(f"pg_upgrade --check refused the upgrade of {p.old} to PostgreSQL {p.new_major}; "
                               f"{p.old} runs again as it was:\n" + "\n".join(f"  {line}" for line in lines))
        raise
    if check_only:
        return None
    say("proving it: checksums, amcheck, statistics")
    prove(old, new, p, before, stats_before, report)
    report.kept = f"{p.new}'s cluster from before the upgrade is kept in {aside}"
    report.rollback = rollback_note(p)
    return report


MISSING = re.compile(r"^library (\S+) is missing from the new major \(used in (.+?)\)")
EXTENSION_OF_LIBRARY_SQL = """SELECT DISTINCT e.extname FROM pg_extension e
  JOIN pg_depend d ON d.refobjid = e.oid AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.classid = 'pg_proc'::regclass
  JOIN pg_proc p ON p.oid = d.objid
 WHERE p.probin IN ({library}, '$libdir/' || {library})"""


def with_extension_names(old: Server, line: str, new_major: int) -> str:
    """A missing library's line, said by the extensions that need it (asked
    of the old server, which runs again): what the user drops."""
    found = MISSING.match(line)
    if not found:
        return line
    library, dbs = found.group(1), found.group(2).split(", ")
    named = []
    for db in dbs:
        try:
            rows = old.rows(EXTENSION_OF_LIBRARY_SQL.format(library=old.literal(library)), db, quiet=True)
        except StepFailed:
            rows = []
        named += [(db, r["extname"]) for r in rows]
    if not named:
        return line
    drops = "; ".join(f"DROP EXTENSION {ext} in {db}" for db, ext in named)
    return (f"extension {', '.join(sorted({ext for _, ext in named}))} needs library {library}, which "
            f"PostgreSQL {new_major} lacks: {drops}, or build it for {new_major}")


class CheckFailed(Exception):
    def __init__(self, lines: list[str]):
        super().__init__("; ".join(lines))
        self.lines = lines


def split_reports(text: str) -> dict[str, str]:
    reports: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if line.startswith("==> "):
            name = line[4:].strip()
            reports[name] = ""
        elif name:
            reports[name] += line + "\n"
    return reports


def put_back(old: Server, new: Server, new_datadir: str, aside: str, say) -> None:
    """Before the point of no return: the old server runs again, the new
    major's own cluster goes back in its place (the scratch cluster atelier
    made for the upgrade is removed). pg_upgrade --link renames the old
    pg_control before it links, and the old cluster is whole again when it
    is named back, since the new one never ran."""
    say(f"putting {old.name} and {new.name} back as they were")
    quiet(new, 'pkill -INT -x pg_upgrade; for i in $(seq 50); do pgrep -x pg_upgrade >/dev/null || break; '
               'sleep 0.1; done')
    # A server pg_upgrade started (killed, it leaves them running) must be
    # gone before the old container starts its own on the same cluster: from
    # another PID and IPC namespace, PostgreSQL's own lock would not see it.
    for datadir in (old.build.datadir, new_datadir):
        pattern = shlex.quote(f"postgres -D {datadir}( |$)")
        quiet(new, f'pkill -INT -f -- {pattern}; for i in $(seq 100); do pgrep -f -- {pattern} >/dev/null || '
                   f'break; sleep 0.1; done; ! pgrep -f -- {pattern} >/dev/null')
    control = f"{old.build.datadir}/global/pg_control"
    quiet(new, f'if [ -e {control}.old ] && [ ! -e {control} ]; then mv {control}.old {control}; fi')
    quiet(new, f'systemctl stop "$PG_SERVICE"', sudo=True)
    quiet(new, f'test -d {shlex.quote(aside)} && rm -rf {shlex.quote(new_datadir)} && '
               f'mv {shlex.quote(aside)} {shlex.quote(new_datadir)}')
    quiet(new, 'systemctl start "$PG_SERVICE"', sudo=True)
    old.start(f"starting {old.name} again")


def mark_upgraded(old: Server, p: Plan) -> None:
    """The old major's folder says what became of it, and keeps it stopped
    (db.upgrade --rollback undoes this when the method allows)."""
    record = json.dumps({"to": p.new, "major": p.new_major, "method": p.method,
                         "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    old.step("marking it upgraded (and keeping it stopped)",
             f'echo {shlex.quote(record)} > "$PG_DATA_MOUNT/{UPGRADED_MARKER}" && '
             f'echo "upgraded by inv db.upgrade" > "$PG_DATA_MOUNT/{FENCE_MARKER}"')


def rollback_note(p: Plan) -> str:
    if p.one_way:
        return (f"rollback: none by pg_upgrade; --{p.method} left {p.old}'s cluster unusable once "
                f"{p.new} ran. A backup is the way back (`inv db.restore`)")
    return (f"rollback: `inv db.upgrade --rollback -t {p.old}` starts PostgreSQL {p.old_major} again on its "
            f"cluster as it was when it stopped; writes made on {p.new} since are not in it")


def prove(old: Server, new: Server, p: Plan, before: dict, stats_before: int, report: Report) -> None:
    after_dbs = set(new.databases())
    for db, tables in before.items():
        if db not in after_dbs:
            report.differences.append(f"database {db}: missing")
            continue
        after = table_checksums(new, db)
        report.differences += [f"{db}.{line}" for line in compare_tables(tables, {t: after.get(t) for t in tables
                                                                                   if t in after})]
        report.added_tables += [f"{db}.{t}" for t in sorted(set(after) - set(tables))]
        report.tables += len(tables)
        report.rows += sum(t["rows"] for t in tables.values())
    for db in sorted(after_dbs):
        checked, errors = amcheck(new, db)
        report.indexes_checked += checked
        report.index_errors += [f"{db}: {e}" for e in errors]
    stats_after = sum(new.rows(STATS_SQL, db)[0]["n"] for db in after_dbs)
    if p.new_major >= STATS_KEPT_SINCE and stats_after >= stats_before:
        timer = time.monotonic()
        new.step("gathering what pg_upgrade does not carry (extended statistics)",
                 'vacuumdb -h "$PG_SOCKET_DIR" --all --analyze-only --missing-stats-only -q', hide=True)
        report.statistics = (f"kept by pg_upgrade ({stats_after} column statistics, {stats_before} before); "
                             f"vacuumdb --missing-stats-only {time.monotonic() - timer:.1f} s")
    else:
        timer = time.monotonic()
        new.step("analyzing in stages", 'vacuumdb -h "$PG_SOCKET_DIR" --all --analyze-in-stages -q', hide=True)
        again = sum(new.rows(STATS_SQL, db)[0]["n"] for db in after_dbs)
        report.statistics = (f"not carried ({stats_after} after pg_upgrade, {stats_before} before); "
                             f"vacuumdb --analyze-in-stages {time.monotonic() - timer:.1f} s, {again} now")


def rollback(session, name: str, say) -> str:
    """Start the old major's cluster again after an upgrade by copy or clone;
    the new major's server is stopped and fenced (its data kept)."""
    old = Server(session, name)
    code, text = quiet(old, f'cat "$PG_DATA_MOUNT/{UPGRADED_MARKER}"')
    if code != 0:
        raise AtelierError(f"{name} was not upgraded by db.upgrade (no {UPGRADED_MARKER} in its data folder); "
                           "nothing to roll back")
    record = json.loads(text.strip().splitlines()[-1])
    if record["method"] in ONE_WAY:
        raise AtelierError(f"{name} was upgraded with --{record['method']} to {record['to']}: its cluster cannot "
                           "start again (pg_upgrade said so before it began); a backup is the way back")
    new = Server(session, record["to"])
    say(f"stopping {new.name} (its data stays; it stays stopped until `inv db.rejoin` or db.reseed)")
    quiet(new, f'touch "$PG_DATA_MOUNT/{FENCE_MARKER}"; systemctl stop "$PG_SERVICE"', sudo=True)
    say(f"starting {name} on PostgreSQL {old.major} again")
    old.boot(f"starting {name}", before=f'rm -f "$PG_DATA_MOUNT/{FENCE_MARKER}" "$PG_DATA_MOUNT/{UPGRADED_MARKER}"')
    if not wait_for(lambda: write_works(old), 60, 0.1):
        raise AtelierError(f"{name} did not start again; `inv run -t {name} -- journalctl -u {old.build.service}`")
    return f"{name} runs PostgreSQL {old.major} again; {new.name} is stopped and fenced, its data kept"


def rebuild_standby(session, p: Plan, say) -> str:
    """The new primary's standby: copied afresh from it (the caller asked)."""
    standby = session.matrix.sibling(p.new, "standby").name
    say(f"rebuilding {standby} from {p.new}")
    try:
        reseed(session, standby)
    except StepFailed as exc:
        raise AtelierError(f"{standby} could not be rebuilt: {exc}") from None
    server = Server(session, standby)
    streaming = wait_for(lambda: server.state().receiver == "streaming", 60, 0.3)
    return f"{standby} streams from {p.new} on PostgreSQL {p.new_major}" if streaming else \
        f"{standby} was rebuilt but does not stream yet (`inv db.replication -t {p.new}`)"
