"""Backups that are proven to restore.

Logical: pg_dump (custom format) of each database and pg_dumpall's globals,
with a manifest of per-table row counts and checksums taken in the dump's own
snapshot, so that a restore can be compared with exactly what was dumped.
Physical: pg_basebackup with its backup manifest, checked by pg_verifybackup,
and point-in-time recovery from it with the WAL the server archived.

Files go through SSH (SFTP to and from the containers), never a bind mount:
the engine's disk need not be this host's."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import AtelierError, StepFailed
from .in_container import step
from .replication import psql_local, server_state, sql_literal, sql_rows, sql_run, wait_for

MANIFEST = "manifest.json"
BASE_INFO = "basebackup.json"
ARCHIVE_FOLDER = "wal-archive"   # in the data volume: WAL archived by servers that are backed up

# The per-table facts a restore is compared with. The checksum is the sum of
# a 64-bit hash of every row: as good as a hash of the ordered contents for
# telling tables apart, and it needs no sort (a 1 GB table is one scan).
# Tables whose columns are all of the built-in types below hash each row by
# value (hash_record_extended: no text conversion, the cheapest); any other
# table hashes its rows' text (hashtextextended). Both are the hashes hash
# partitioning relies on, so they are the same on every major (14+), and the
# choice depends only on the column types, so both sides of a restore (or of
# logical replication) make the same one. md5 of the text cost 4.5x as much.
HASHED_BY_VALUE = ("bool", "int2", "int4", "int8", "oid", "float4", "float8", "numeric", "text", "varchar",
                   "bpchar", "name", "bytea", "uuid", "date", "time", "timestamp", "timestamptz",
                   "interval", "jsonb")
ROW_ALIAS = "atelier_row"
CHECKSUMS_GEXEC = f"""SELECT format('SELECT coalesce(json_agg(q ORDER BY q."table"), ''[]'') FROM (%s) q',
       coalesce(string_agg(format(
           'SELECT %L AS "table", count(*) AS rows, coalesce(sum(%s::numeric), 0)::text '
           'AS checksum FROM %I.%I {ROW_ALIAS}',
           n.nspname || '.' || c.relname,
           CASE WHEN by_value THEN 'hash_record_extended({ROW_ALIAS}, 0)'
                ELSE 'hashtextextended({ROW_ALIAS}::text, 0)' END,
           n.nspname, c.relname), ' UNION ALL '),
           'SELECT NULL::text AS "table", 0 AS rows, NULL::text AS checksum WHERE false'))
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL (
      SELECT coalesce(bool_and(t.typnamespace = 'pg_catalog'::regnamespace
                               AND t.typname IN ({", ".join(f"'{t}'" for t in HASHED_BY_VALUE)})), false)
             AS by_value
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) columns
 WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
\\gexec
"""

# The user's relations: an extension's own (atelier creates the preloaded
# ones in experdb) do not make a database "not empty". An extension owns its
# tables and views directly, their indexes through the table, and its
# composite types (pldbgapi has several) through the type, not the relation.
USER_OBJECTS_SQL = """SELECT count(*) AS objects FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 LEFT JOIN pg_index i ON i.indexrelid = c.oid
 WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.deptype = 'e'
                   AND ((d.classid = 'pg_class'::regclass AND d.objid = coalesce(i.indrelid, c.oid))
                        OR (d.classid = 'pg_type'::regclass AND d.objid = c.reltype)))"""


def dump_script(db: str, folder: str) -> str:
    """psql script: pg_dump and the checksums in one snapshot, side by side.
    The snapshot's transaction stays open until pg_dump has finished.
    Compression level 1: a dump a few % bigger, made a third faster."""
    dump = shlex.quote(f"{folder}/{db}.dump")
    status = shlex.quote(f"{folder}/{db}.dump.status")
    log = shlex.quote(f"{folder}/{db}.dump.log")
    return (
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
        "SELECT pg_export_snapshot() AS snapshot \\gset\n"
        "\\setenv ATELIER_SNAPSHOT :snapshot\n"
        f"\\! ( pg_dump -h \"$PG_SOCKET_DIR\" -Fc -Z1 --snapshot=\"$ATELIER_SNAPSHOT\" -d {shlex.quote(db)} "
        f"-f {dump} > {log} 2>&1; echo $? > {status} ) &\n"
        f"\\o {folder}/{db}.tables.json\n"
        + CHECKSUMS_GEXEC +
        "\\o\n"
        f"\\! while [ ! -e {status} ]; do sleep 0.1; done\n"
        "COMMIT;\n")


def parse_checksums(raw: str) -> dict[str, dict]:
    return {row["table"]: {"rows": row["rows"], "checksum": row["checksum"]} for row in json.loads(raw or "[]")}


def table_checksums(c, db: str, **kw) -> dict[str, dict]:
    """table -> {rows, checksum} of `db` as it is now."""
    result = step(c, f"checksumming {db}", psql_local(db), stdin=CHECKSUMS_GEXEC, hide="out", **kw)
    return parse_checksums(result.stdout.strip())


def compare_tables(expected: dict[str, dict], found: dict[str, dict]) -> list[str]:
    """What differs between two {table: {rows, checksum}}; [] when equal."""
    problems = []
    for table in sorted(set(expected) | set(found)):
        want, got = expected.get(table), found.get(table)
        if want is None:
            problems.append(f"{table}: not in the backup")
        elif got is None:
            problems.append(f"{table}: missing")
        elif want["rows"] != got["rows"]:
            problems.append(f"{table}: {got['rows']} rows, {want['rows']} expected")
        elif want["checksum"] != got["checksum"]:
            problems.append(f"{table}: same {got['rows']} rows, different contents")
    return problems


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remote_sha256(c, folder: str, names: list[str], **kw) -> dict[str, str]:
    result = step(c, "checksumming the files", f"cd {shlex.quote(folder)} && sha256sum -- "
                  + " ".join(shlex.quote(n) for n in names), hide=True, **kw)
    return {line.split(None, 1)[1].lstrip("*"): line.split(None, 1)[0] for line in result.stdout.splitlines()}


def article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def temporary_folder(c, what: str, **kw) -> str:
    return step(c, "making a work folder", f"mktemp -d /tmp/atelier-{what}-XXXXXX", hide=True, **kw).stdout.strip()


def fetch(c, remote_folder: str, names: list[str], local: Path, **kw) -> None:
    """Copy files to this host and check each against its sha256 there."""
    sums = remote_sha256(c, remote_folder, names, **kw)
    for name in names:
        c.get(f"{remote_folder}/{name}", str(local / name))
        (local / name).chmod(0o600)  # dumps hold data, globals hold password hashes
        if sha256_of(local / name) != sums[name]:
            raise AtelierError(f"{name} changed on its way from {c.host}: sha256 differs; nothing kept")


def finished_folder(partial: Path, final: Path) -> Path:
    partial.rename(final)
    return final


# ---- logical backups ----------------------------------------------------------------------

DB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")


def checked_db_name(name: str) -> str:
    if not DB_NAME.match(name):
        raise AtelierError(f"database name {name!r}: use letters, digits, _, . and - (up to 63)")
    return name


def databases(c, **kw) -> list[str]:
    rows = sql_rows(c, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
                       "ORDER BY datname", what="listing databases", **kw)
    return [r["datname"] for r in rows]


def backup(session, name: str, dbs: list[str] | None, say) -> Path:
    """pg_dump of `dbs` (None: every database) and the globals of server
    `name`, with their manifest, into backups/<name>/<time>/ on this host."""
    model = session.model
    server = model.container(name)
    c = session.context(name, "postgres")
    if not server_state(c).running:
        raise AtelierError(f"PostgreSQL is not running on {name}; `inv pg.start -t {name}`")
    present = databases(c)
    wanted = present if dbs is None else [checked_db_name(d) for d in dbs]
    missing = [d for d in wanted if d not in present]
    if missing:
        raise AtelierError(f"no database {', '.join(missing)} on {name}; its databases: {', '.join(present)}")
    folder = temporary_folder(c, "backup")
    try:
        tables = {}
        for db in wanted:
            say(f"dumping {db} (pg_dump -Fc) and checksumming its tables in the same snapshot")
            step(c, f"writing the script for {db}", f"cat > {shlex.quote(folder + '/' + db + '.sql')}",
                 stdin=dump_script(db, folder))
            step(c, f"dumping {db}", f'{psql_local(db, folder + "/" + db + ".sql")} && '
                 f'code=$(cat {shlex.quote(folder + "/" + db + ".dump.status")}) && '
                 f'{{ [ "$code" = 0 ] || {{ cat {shlex.quote(folder + "/" + db + ".dump.log")} >&2; exit "$code"; }}; }}')
            raw = step(c, f"reading {db}'s checksums", f"cat {shlex.quote(folder + '/' + db + '.tables.json')}",
                       hide=True).stdout.strip()
            tables[db] = parse_checksums(raw)
        step(c, "dumping the globals", f'pg_dumpall -h "$PG_SOCKET_DIR" --globals-only -f {shlex.quote(folder)}/globals.sql')
        version = sql_rows(c, "SELECT current_setting('server_version') AS v")[0]["v"]
        files = [f"{db}.dump" for db in wanted] + ["globals.sql"]
        target = model.settings.backup_dir / name / stamp()
        partial = target.with_name(target.name + ".partial")
        partial.mkdir(parents=True, mode=0o700)
        say(f"copying {len(files)} files to {target}")
        fetch(c, folder, files, partial)
        manifest = {
            "format": 1, "kind": "pg_dump", "source": name, "os": server.os, "major": server.major,
            "server_version": version, "taken": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "globals": {"file": "globals.sql", "sha256": sha256_of(partial / "globals.sql")},
            "databases": {db: {"file": f"{db}.dump", "sha256": sha256_of(partial / f"{db}.dump"),
                               "tables": tables[db]} for db in wanted},
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return finished_folder(partial, target)
    finally:
        c.run(f"rm -rf {shlex.quote(folder)}", warn=True, hide=True, in_stream=False)


def read_manifest(path: Path, kind: str, file_name: str = MANIFEST) -> dict:
    manifest_path = path / file_name
    if not path.is_dir():
        raise AtelierError(f"no backup at {path}: not a folder (backups are in backups/<container>/<time>/)")
    if not manifest_path.is_file():
        raise AtelierError(f"{path} is not a {kind} backup: it has no {file_name}")
    try:
        return json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise AtelierError(f"{manifest_path} is damaged: {exc}") from None


def check_files(path: Path, entries: list[dict]) -> None:
    for entry in entries:
        file = path / entry["file"]
        if not file.is_file():
            raise AtelierError(f"{file} is missing from the backup")
        if sha256_of(file) != entry["sha256"]:
            raise AtelierError(f"{file} does not match its sha256 in the manifest: the backup is damaged")


@dataclass
class Restored:
    source_db: str
    db: str
    verified: bool
    problems: list[str]


def restore(session, path: Path, name: str, new_db: str | None, clean: bool, verify: bool, say) -> list[Restored]:
    """Restore every database of the backup at `path` into server `name`
    (as `new_db` when the backup holds one), never over a non-empty
    database unless `clean`; with `verify`, compare each table with the
    manifest."""
    manifest = read_manifest(path, "pg_dump")
    dumped = manifest["databases"]
    if new_db and len(dumped) != 1:
        raise AtelierError(f"--db names one database, and {path} holds {len(dumped)}: {', '.join(dumped)}")
    check_files(path, list(dumped.values()))
    c = session.context(name, "postgres")
    if not server_state(c).primary:
        raise AtelierError(f"{name} is not a running primary; restore into a server that takes writes")
    present = databases(c)
    plan = {source: checked_db_name(new_db or source) for source in dumped}
    for db in plan.values():
        if db in present:
            objects = sql_rows(c, USER_OBJECTS_SQL, db=db, what=f"looking into {db}")[0]["objects"]
            if objects and not clean:
                raise AtelierError(f"database {db} on {name} is not empty ({objects} relations); restore into "
                                   "a new one (--db NAME), or replace it with --clean --yes")
    folder = temporary_folder(c, "restore")
    results = []
    try:
        for source, db in plan.items():
            say(f"copying {dumped[source]['file']} to {name}")
            remote_file = f"{folder}/{dumped[source]['file']}"
            c.put(str(path / dumped[source]["file"]), remote_file)
            if db in present and clean:
                say(f"dropping {db} (--clean)")
                sql_run(c, f'DROP DATABASE "{db}" WITH (FORCE);', what=f"dropping {db}")
            if db not in present or clean:
                sql_run(c, f'CREATE DATABASE "{db}" OWNER experdba;', what=f"creating {db}")
            say(f"restoring {source} into {db} (pg_restore)")
            restore_sections = (f'pg_restore -h "$PG_SOCKET_DIR" --exit-on-error -j 2 -d {shlex.quote(db)} '
                                f'{shlex.quote(remote_file)}')
            step(c, f"restoring {db}'s tables", f"{restore_sections} --section=pre-data --section=data")
            problems = []
            if not verify:
                step(c, f"restoring {db}'s indexes and constraints", f"{restore_sections} --section=post-data")
            else:
                # The rows are all in: checksum them while indexes are built.
                say(f"verifying {db} against the manifest while its indexes are built")
                script, sums = f"{folder}/checksums.sql", f"{folder}/checksums.json"
                step(c, "writing the checksum script", f"cat > {shlex.quote(script)}", stdin=CHECKSUMS_GEXEC)
                step(c, f"restoring {db}'s indexes and constraints",
                     f"{restore_sections} --section=post-data & restoring=$!; "
                     f'{psql_local(db, script)} > {shlex.quote(sums)}; '
                     'summed=$?; wait $restoring || exit $?; exit $summed')
                raw = step(c, "reading the checksums", f"cat {shlex.quote(sums)}", hide=True).stdout.strip()
                problems = compare_tables(dumped[source]["tables"], parse_checksums(raw))
            results.append(Restored(source, db, verify, problems))
    finally:
        c.run(f"rm -rf {shlex.quote(folder)}", warn=True, hide=True, in_stream=False)
    return results


def verify(session, path: Path, name: str, db: str | None) -> dict[str, list[str]]:
    """Compare databases on server `name` with the backup's manifest, without
    restoring: source database -> what differs."""
    manifest = read_manifest(path, "pg_dump")
    dumped = manifest["databases"]
    if db and len(dumped) != 1:
        raise AtelierError(f"--db names one database, and {path} holds {len(dumped)}: {', '.join(dumped)}")
    c = session.context(name, "postgres")
    present = databases(c)
    out = {}
    for source in dumped:
        target = db or source
        if target not in present:
            raise AtelierError(f"no database {target} on {name}; its databases: {', '.join(present)}")
        out[f"{source} -> {target}"] = compare_tables(dumped[source]["tables"], table_checksums(c, target))
    return out


# ---- physical backups and point in time recovery ------------------------------------------

def archive_folder(server) -> str:
    return f"{server.image.build.data_mount}/{ARCHIVE_FOLDER}"


def ensure_archiving(c, server, say) -> None:
    """WAL archiving into the data volume, switched on (with a restart) the
    first time a server is backed up."""
    folder = archive_folder(server)
    command = f"test ! -f {folder}/%f && cp %p {folder}/%f"
    row = sql_rows(c, "SELECT current_setting('archive_mode') AS mode, "
                      "current_setting('archive_command') AS command")[0]
    if row["mode"] == "on" and row["command"] == command:
        return
    say(f"switching on WAL archiving into {folder} (restarts {c.host})")
    step(c, "making the archive folder", f"mkdir -p {shlex.quote(folder)}")
    sql_run(c, f"ALTER SYSTEM SET archive_mode = on;\nALTER SYSTEM SET archive_command = {sql_literal(command)};",
            what="switching on archiving")
    step(c, "restarting", 'systemctl restart "$PG_SERVICE"', sudo=True)
    wait_for(lambda: server_state(c).running, 60, 0.3)


def basebackup(session, name: str, say) -> Path:
    model = session.model
    server = model.container(name)
    c = session.context(name, "postgres")
    if not server_state(c).primary:
        raise AtelierError(f"{name} is not a running primary; db.basebackup backs up a primary and archives its WAL")
    ensure_archiving(c, server, say)
    folder = temporary_folder(c, "basebackup")
    try:
        say(f"pg_basebackup of {name}, with a backup manifest")
        step(c, "pg_basebackup", f'pg_basebackup -h "$PG_SOCKET_DIR" -D {shlex.quote(folder)}/base -Fp -X stream '
             '--checkpoint=fast')
        say("checking it with pg_verifybackup")
        step(c, "pg_verifybackup", f"pg_verifybackup -q {shlex.quote(folder)}/base")
        label = step(c, "reading the backup label", f"cat {shlex.quote(folder)}/base/backup_label",
                     hide=True).stdout
        started = next(line.split(":", 1)[1].strip() for line in label.splitlines() if line.startswith("START TIME"))
        step(c, "packing it", f"tar -C {shlex.quote(folder)}/base -cf {shlex.quote(folder)}/base.tar . && "
             f"cp {shlex.quote(folder)}/base/backup_manifest {shlex.quote(folder)}/backup_manifest")
        # The WAL of the backup's end goes to the archive now, not at the next switch.
        sql_run(c, "SELECT pg_switch_wal();", what="switching WAL")
        target = model.settings.backup_dir / name / (stamp() + "-base")
        partial = target.with_name(target.name + ".partial")
        partial.mkdir(parents=True, mode=0o700)
        files = ["base.tar", "backup_manifest"]
        say(f"copying it to {target}")
        fetch(c, folder, files, partial)
        info = {"format": 1, "kind": "basebackup", "source": name, "os": server.os, "major": server.major,
                "started": started,
                "files": [{"file": f, "sha256": sha256_of(partial / f)} for f in files]}
        (partial / BASE_INFO).write_text(json.dumps(info, indent=2) + "\n")
        return finished_folder(partial, target)
    finally:
        c.run(f"rm -rf {shlex.quote(folder)}", warn=True, hide=True, in_stream=False)


def pitr(session, path: Path, to: str, name: str, say, ask) -> str:
    """Replace the data of server `name` with the base backup at `path`,
    recovered up to the time `to` with the WAL its source archived."""
    model = session.model
    info = read_manifest(path, "base", BASE_INFO)
    check_files(path, info["files"])
    server, source = model.container(name), model.container(info["source"])
    if server.role != "standalone":
        raise AtelierError(f"{name} is {article(server.role)} server; db.pitr replaces the data of a standalone "
                           f"server (e.g. {model.server_name(server.os, server.major, 'standalone')})")
    if server.major != info["major"]:
        raise AtelierError(f"the backup is of PostgreSQL {info['major']} and {name} runs {server.major}; "
                           f"choose a standalone of the same major")
    src = session.context(source.name, "postgres")
    if not server_state(src).running:
        raise AtelierError(f"{source.name}, whose archive holds the WAL, is not running")
    try:
        times = sql_rows(src, f"SELECT {sql_literal(to)}::timestamptz AS target, "
                              f"{sql_literal(to)}::timestamptz < {sql_literal(info['started'])}::timestamptz "
                              f"AS before, {sql_literal(to)}::timestamptz > now() AS after, now()::text AS now",
                         what="reading the time", quiet=True)[0]
    except StepFailed:
        raise AtelierError(f"--to {to!r} is not a time PostgreSQL reads; e.g. '2026-11-24 10:15:00+00'") from None
    if times["before"]:
        raise AtelierError(f"{to} is before the backup started ({info['started']}); choose a time between "
                           f"then and now ({times['now']})")
    if times["after"]:
        raise AtelierError(f"{to} is after the newest archived WAL of {source.name} (it is {times['now']} "
                           "there); choose an earlier time")
    ask(f"replace the data of {name} with {path.name} recovered to {to}?",
        f"db.pitr replaces the data of {name}; add --yes to confirm")
    # Everything up to now goes to the archive, then the archive is copied.
    sql_run(src, "SELECT pg_switch_wal();", what="switching WAL")
    wait_for(lambda: sql_rows(src, "SELECT last_archived_time >= now() - interval '1 min' AND "
                                   "(last_failed_time IS NULL OR last_failed_time < last_archived_time) AS ok "
                                   "FROM pg_stat_archiver")[0]["ok"], 30, 0.3)
    work = Path(model.settings.backup_dir) / ".pitr-work"
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    src_folder = temporary_folder(src, "archive")
    try:
        step(src, "packing the WAL archive", f"tar -C {shlex.quote(archive_folder(source))} "
             f"-cf {shlex.quote(src_folder)}/wal.tar .")
        fetch(src, src_folder, ["wal.tar"], work)
    finally:
        src.run(f"rm -rf {shlex.quote(src_folder)}", warn=True, hide=True, in_stream=False)
    c = session.context(name, "postgres")
    folder = temporary_folder(c, "pitr")
    mount = server.image.build.data_mount
    try:
        say(f"copying the base backup and the WAL archive to {name}")
        c.put(str(path / "base.tar"), f"{folder}/base.tar")
        c.put(str(work / "wal.tar"), f"{folder}/wal.tar")
        settings = (f"restore_command = 'cp {mount}/pitr-wal/%f %p'\n"
                    f"recovery_target_time = {sql_literal(to)}\n"
                    "recovery_target_action = 'promote'\n")
        say(f"replacing {name}'s data and recovering to {to}")
        step(c, "stopping it", 'systemctl stop "$PG_SERVICE"', sudo=True)
        step(c, "unpacking beside its data",
             f'staging="$PG_DATA_MOUNT/.atelier-pitr"; rm -rf "$staging" "$PG_DATA_MOUNT/pitr-wal" && '
             f'mkdir -p -m 700 "$staging" "$PG_DATA_MOUNT/pitr-wal" "$PG_DATA_MOUNT/{ARCHIVE_FOLDER}" && '
             f'tar -C "$staging" -xf {shlex.quote(folder)}/base.tar && '
             f'tar -C "$PG_DATA_MOUNT/pitr-wal" -xf {shlex.quote(folder)}/wal.tar && '
             'rm -f "$staging/standby.signal" && touch "$staging/recovery.signal" && '
             'cat >> "$staging/postgresql.auto.conf" && rm -rf "$PGDATA" && mv "$staging" "$PGDATA"',
             stdin=settings)
        # atelier-pg-setup writes this server's own settings and pg_hba again
        # (on Rocky the backup brought the source's, in the data directory).
        started = c.sudo('bash -c ". /etc/atelier/pg.env; systemctl restart atelier-pg-setup.service && '
                         'systemctl start \\"\\$PG_SERVICE\\""', warn=True, hide=True, in_stream=False)
        promoted = started.exited == 0 and wait_for(lambda: server_state(c).primary, 300, 0.5)
        if not promoted:
            log = c.run(". /etc/atelier/pg.env; tail -n 50 $(ls -t /var/log/postgresql/*.log 2>/dev/null | head -1) "
                        "2>/dev/null; journalctl -u \"$PG_SERVICE\" -n 20 --no-pager 2>/dev/null",
                        warn=True, hide=True, in_stream=False).stdout
            fatal = [line for line in log.splitlines() if "FATAL" in line or "recovery ended" in line]
            raise AtelierError(f"recovery of {name} to {to} failed: "
                               + (fatal[-1].strip() if fatal else "the server did not come up (inv pg.log)"))
        sql_run(c, "ALTER SYSTEM RESET restore_command;\nALTER SYSTEM RESET recovery_target_time;\n"
                   "ALTER SYSTEM RESET recovery_target_action;\nSELECT pg_reload_conf();",
                what="forgetting the recovery settings")
        return name
    finally:
        c.run(f"rm -rf {shlex.quote(folder)}", warn=True, hide=True, in_stream=False)
        (work / "wal.tar").unlink(missing_ok=True)
