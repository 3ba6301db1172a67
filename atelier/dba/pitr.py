"""Physical backups and point in time recovery: pg_basebackup with its
backup manifest, checked by pg_verifybackup, and a standalone server's data
replaced by it, recovered up to a time with the WAL its source archived."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from atelier.core.errors import AtelierError, StepFailed
from atelier.dba.backup import article, check_files, fetch, read_manifest, sha256_of, stamp, staged
from atelier.dba.server import Server, wait_for

BASE_INFO = "basebackup.json"
ARCHIVE_FOLDER = "wal-archive"   # in the data volume: WAL archived by servers that are backed up


def archive_folder(server: Server) -> str:
    return f"{server.build.data_mount}/{ARCHIVE_FOLDER}"


def ensure_archiving(server: Server, say) -> None:
    """WAL archiving into the data volume, switched on (with a restart) the
    first time a server is backed up."""
    folder = archive_folder(server)
    command = f"test ! -f {folder}/%f && cp %p {folder}/%f"
    row = server.rows("SELECT current_setting('archive_mode') AS mode, "
                      "current_setting('archive_command') AS command")[0]
    if row["mode"] == "on" and row["command"] == command:
        return
    say(f"switching on WAL archiving into {folder} (restarts {server.name})")
    server.step("making the archive folder", f"mkdir -p {shlex.quote(folder)}")
    server.run(f"ALTER SYSTEM SET archive_mode = on;\nALTER SYSTEM SET archive_command = {server.literal(command)};",
               what="switching on archiving")
    server.restart("restarting")
    server.wait_running(60)


def basebackup(session, name: str, say) -> Path:
    server = Server(session, name)
    if not server.state().primary:
        raise AtelierError(f"{name} is not a running primary; db.basebackup backs up a primary and archives its WAL")
    ensure_archiving(server, say)
    with server.temp_folder("basebackup") as folder:
        say(f"pg_basebackup of {name}, with a backup manifest")
        server.step("pg_basebackup", f'pg_basebackup -h "$PG_SOCKET_DIR" -D {shlex.quote(folder)}/base -Fp '
                    '-X stream --checkpoint=fast')
        say("checking it with pg_verifybackup")
        server.step("pg_verifybackup", f"pg_verifybackup -q {shlex.quote(folder)}/base")
        label = server.step("reading the backup label", f"cat {shlex.quote(folder)}/base/backup_label",
                            hide=True).stdout
        started = next(line.split(":", 1)[1].strip() for line in label.splitlines() if line.startswith("START TIME"))
        server.step("packing it", f"tar -C {shlex.quote(folder)}/base -cf {shlex.quote(folder)}/base.tar . && "
                    f"cp {shlex.quote(folder)}/base/backup_manifest {shlex.quote(folder)}/backup_manifest")
        # The WAL of the backup's end goes to the archive now, not at the next switch.
        server.run("SELECT pg_switch_wal();", what="switching WAL")
        target = session.settings.backup_dir / name / (stamp() + "-base")
        files = ["base.tar", "backup_manifest"]
        with staged(target) as partial:
            say(f"copying it to {target}")
            fetch(server, folder, files, partial)
            info = {"format": 1, "kind": "basebackup", "source": name, "os": server.container.os,
                    "major": server.major, "started": started,
                    "files": [{"file": f, "sha256": sha256_of(partial / f)} for f in files]}
            (partial / BASE_INFO).write_text(json.dumps(info, indent=2) + "\n")
        return target


def pitr(session, path: Path, to: str, name: str, say, ask) -> str:
    """Replace the data of server `name` with the base backup at `path`,
    recovered up to the time `to` with the WAL its source archived."""
    matrix = session.matrix
    info = read_manifest(path, "base", BASE_INFO)
    check_files(path, info["files"])
    server, source = Server(session, name), Server(session, info["source"])
    if server.container.role != "standalone":
        raise AtelierError(f"{name} is {article(server.container.role)} server; db.pitr replaces the data of a "
                           f"standalone server (e.g. {matrix.server_name(server.container.os, server.major, 'standalone')})")
    if server.major != info["major"]:
        raise AtelierError(f"the backup is of PostgreSQL {info['major']} and {name} runs {server.major}; "
                           f"choose a standalone of the same major")
    if not source.state().running:
        raise AtelierError(f"{source.name}, whose archive holds the WAL, is not running")
    when, started = source.literal(to), source.literal(info["started"])
    try:
        times = source.rows(f"SELECT {when}::timestamptz AS target, {when}::timestamptz < {started}::timestamptz "
                            f"AS before, {when}::timestamptz > now() AS after, now()::text AS now",
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
    source.run("SELECT pg_switch_wal();", what="switching WAL")
    wait_for(lambda: source.rows("SELECT last_archived_time >= now() - interval '1 min' AND "
                                 "(last_failed_time IS NULL OR last_failed_time < last_archived_time) AS ok "
                                 "FROM pg_stat_archiver")[0]["ok"], 30, 0.3)
    work = Path(session.settings.backup_dir) / ".pitr-work"
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with source.temp_folder("archive") as src_folder:
            source.step("packing the WAL archive", f"tar -C {shlex.quote(archive_folder(source))} "
                        f"-cf {shlex.quote(src_folder)}/wal.tar .")
            fetch(source, src_folder, ["wal.tar"], work)
        with server.temp_folder("pitr") as folder:
            recover(server, path / "base.tar", work / "wal.tar", folder, to, say)
    finally:
        (work / "wal.tar").unlink(missing_ok=True)
    return name


def recover(server: Server, base: Path, wal: Path, folder: str, to: str, say) -> None:
    """Put the base backup and the WAL in place of the server's data, and
    recover to `to` (promoting at the end)."""
    mount = server.build.data_mount
    say(f"copying the base backup and the WAL archive to {server.name}")
    server.c.put(str(base), f"{folder}/base.tar")
    server.c.put(str(wal), f"{folder}/wal.tar")
    settings = (f"restore_command = 'cp {mount}/pitr-wal/%f %p'\n"
                f"recovery_target_time = {server.literal(to)}\n"
                "recovery_target_action = 'promote'\n")
    say(f"replacing {server.name}'s data and recovering to {to}")
    server.stop("stopping it")
    server.step("unpacking beside its data",
                f'staging="$PG_DATA_MOUNT/.atelier-pitr"; rm -rf "$staging" "$PG_DATA_MOUNT/pitr-wal" && '
                f'mkdir -p -m 700 "$staging" "$PG_DATA_MOUNT/pitr-wal" "$PG_DATA_MOUNT/{ARCHIVE_FOLDER}" && '
                f'tar -C "$staging" -xf {shlex.quote(folder)}/base.tar && '
                f'tar -C "$PG_DATA_MOUNT/pitr-wal" -xf {shlex.quote(folder)}/wal.tar && '
                'rm -f "$staging/standby.signal" && touch "$staging/recovery.signal" && '
                'cat >> "$staging/postgresql.auto.conf" && rm -rf "$PGDATA" && mv "$staging" "$PGDATA"',
                stdin=settings)
    # atelier-pg-setup writes this server's own settings and pg_hba again
    # (on Rocky the backup brought the source's, in the data directory).
    try:
        server.boot("starting it to recover", hide=True)
        promoted = wait_for(lambda: server.state().primary, 300, 0.5)
    except StepFailed:
        promoted = False
    if not promoted:
        log = server.c.run(". /etc/atelier/pg.env; tail -n 50 $(ls -t /var/log/postgresql/*.log 2>/dev/null | "
                           "head -1) 2>/dev/null; journalctl -u \"$PG_SERVICE\" -n 20 --no-pager 2>/dev/null",
                           warn=True, hide=True, in_stream=False).stdout
        fatal = [line for line in log.splitlines() if "FATAL" in line or "recovery ended" in line]
        raise AtelierError(f"recovery of {server.name} to {to} failed: "
                           + (fatal[-1].strip() if fatal else "the server did not come up (inv pg.log)"))
    server.run("ALTER SYSTEM RESET restore_command;\nALTER SYSTEM RESET recovery_target_time;\n"
               "ALTER SYSTEM RESET recovery_target_action;\nSELECT pg_reload_conf();",
               what="forgetting the recovery settings")
