"""Logical backups that are proven to restore: pg_dump (custom format) of
each database and pg_dumpall's globals, with a manifest of per-table row
counts and checksums taken in the dump's own snapshot, so that a restore is
compared with exactly what was dumped.

Files go through SSH (SFTP to and from the containers), never a bind mount:
the engine's disk need not be this host's."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atelier.core.errors import AtelierError
from atelier.dba.checksums import CHECKSUMS_GEXEC, USER_OBJECTS_SQL, compare_tables, parse_checksums, table_checksums
from atelier.dba.server import Server, psql_local

MANIFEST = "manifest.json"


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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remote_sha256(server: Server, folder: str, names: list[str], **kw) -> dict[str, str]:
    result = server.step("checksumming the files", f"cd {shlex.quote(folder)} && sha256sum -- "
                         + " ".join(shlex.quote(n) for n in names), hide=True, **kw)
    return {line.split(None, 1)[1].lstrip("*"): line.split(None, 1)[0] for line in result.stdout.splitlines()}


def article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def fetch(server: Server, remote_folder: str, names: list[str], local: Path, **kw) -> None:
    """Copy files to this host and check each against its sha256 there."""
    sums = remote_sha256(server, remote_folder, names, **kw)
    for name in names:
        server.c.get(f"{remote_folder}/{name}", str(local / name))
        (local / name).chmod(0o600)  # dumps hold data, globals hold password hashes
        if sha256_of(local / name) != sums[name]:
            raise AtelierError(f"{name} changed on its way from {server.name}: sha256 differs; nothing kept")


@contextmanager
def staged(target: Path):
    """A folder of this host written as `<target>.partial` and renamed to
    `target` only when the block finishes: a backup folder is whole or
    absent. A failed block removes what it wrote."""
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, mode=0o700)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(target)


# ---- logical backups ----------------------------------------------------------------------

DB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")


def checked_db_name(name: str) -> str:
    if not DB_NAME.match(name):
        raise AtelierError(f"database name {name!r}: use letters, digits, _, . and - (up to 63)")
    return name


def backup(session, name: str, dbs: list[str] | None, say) -> Path:
    """pg_dump of `dbs` (None: every database) and the globals of server
    `name`, with their manifest, into backups/<name>/<time>/ on this host."""
    server = Server(session, name)
    if not server.state().running:
        raise AtelierError(f"PostgreSQL is not running on {name}; `inv pg.start -t {name}`")
    present = server.databases()
    wanted = present if dbs is None else [checked_db_name(d) for d in dbs]
    missing = [d for d in wanted if d not in present]
    if missing:
        raise AtelierError(f"no database {', '.join(missing)} on {name}; its databases: {', '.join(present)}")
    with server.temp_folder("backup") as folder:
        tables = {}
        for db in wanted:
            say(f"dumping {db} (pg_dump -Fc) and checksumming its tables in the same snapshot")
            server.step(f"writing the script for {db}", f"cat > {shlex.quote(folder + '/' + db + '.sql')}",
                        stdin=dump_script(db, folder))
            server.step(f"dumping {db}", f'{psql_local(db, folder + "/" + db + ".sql")} && '
                        f'code=$(cat {shlex.quote(folder + "/" + db + ".dump.status")}) && '
                        f'{{ [ "$code" = 0 ] || {{ cat {shlex.quote(folder + "/" + db + ".dump.log")} >&2; '
                        'exit "$code"; }; }')
            raw = server.step(f"reading {db}'s checksums", f"cat {shlex.quote(folder + '/' + db + '.tables.json')}",
                              hide=True).stdout.strip()
            tables[db] = parse_checksums(raw)
        server.step("dumping the globals",
                    f'pg_dumpall -h "$PG_SOCKET_DIR" --globals-only -f {shlex.quote(folder)}/globals.sql')
        version = server.setting("server_version")
        files = [f"{db}.dump" for db in wanted] + ["globals.sql"]
        target = session.settings.backup_dir / name / stamp()
        with staged(target) as partial:
            say(f"copying {len(files)} files to {target}")
            fetch(server, folder, files, partial)
            manifest = {
                "format": 1, "kind": "pg_dump", "source": name, "os": server.container.os, "major": server.major,
                "server_version": version, "taken": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "globals": {"file": "globals.sql", "sha256": sha256_of(partial / "globals.sql")},
                "databases": {db: {"file": f"{db}.dump", "sha256": sha256_of(partial / f"{db}.dump"),
                                   "tables": tables[db]} for db in wanted},
            }
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return target


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
    server = Server(session, name)
    if not server.state().primary:
        raise AtelierError(f"{name} is not a running primary; restore into a server that takes writes")
    present = server.databases()
    plan = {source: checked_db_name(new_db or source) for source in dumped}
    for db in plan.values():
        if db in present:
            objects = server.rows(USER_OBJECTS_SQL, db=db, what=f"looking into {db}")[0]["objects"]
            if objects and not clean:
                raise AtelierError(f"database {db} on {name} is not empty ({objects} relations); restore into "
                                   "a new one (--db NAME), or replace it with --clean --yes")
    results = []
    with server.temp_folder("restore") as folder:
        for source, db in plan.items():
            say(f"copying {dumped[source]['file']} to {name}")
            remote_file = f"{folder}/{dumped[source]['file']}"
            server.c.put(str(path / dumped[source]["file"]), remote_file)
            if db in present and clean:
                say(f"dropping {db} (--clean)")
                server.run(f'DROP DATABASE "{db}" WITH (FORCE);', what=f"dropping {db}")
            if db not in present or clean:
                server.run(f'CREATE DATABASE "{db}" OWNER experdba;', what=f"creating {db}")
            say(f"restoring {source} into {db} (pg_restore)")
            restore_sections = (f'pg_restore -h "$PG_SOCKET_DIR" --exit-on-error -j 2 -d {shlex.quote(db)} '
                                f'{shlex.quote(remote_file)}')
            server.step(f"restoring {db}'s tables", f"{restore_sections} --section=pre-data --section=data")
            problems = []
            if not verify:
                server.step(f"restoring {db}'s indexes and constraints", f"{restore_sections} --section=post-data")
            else:
                # The rows are all in: checksum them while indexes are built.
                say(f"verifying {db} against the manifest while its indexes are built")
                script, sums = f"{folder}/checksums.sql", f"{folder}/checksums.json"
                server.step("writing the checksum script", f"cat > {shlex.quote(script)}", stdin=CHECKSUMS_GEXEC)
                server.step(f"restoring {db}'s indexes and constraints",
                            f"{restore_sections} --section=post-data & restoring=$!; "
                            f'{psql_local(db, script)} > {shlex.quote(sums)}; '
                            'summed=$?; wait $restoring || exit $?; exit $summed')
                raw = server.step("reading the checksums", f"cat {shlex.quote(sums)}", hide=True).stdout.strip()
                problems = compare_tables(dumped[source]["tables"], parse_checksums(raw))
            results.append(Restored(source, db, verify, problems))
    return results


def verify(session, path: Path, name: str, db: str | None) -> dict[str, list[str]]:
    """Compare databases on server `name` with the backup's manifest, without
    restoring: source database -> what differs."""
    manifest = read_manifest(path, "pg_dump")
    dumped = manifest["databases"]
    if db and len(dumped) != 1:
        raise AtelierError(f"--db names one database, and {path} holds {len(dumped)}: {', '.join(dumped)}")
    server = Server(session, name)
    present = server.databases()
    out = {}
    for source in dumped:
        target = db or source
        if target not in present:
            raise AtelierError(f"no database {target} on {name}; its databases: {', '.join(present)}")
        out[f"{source} -> {target}"] = compare_tables(dumped[source]["tables"], table_checksums(server, target))
    return out
