"""Streaming replication pairs: what they are doing, and changing which one
serves. Everything goes through each server's Server object (SQL as
postgres on its own socket, its service through sudo), and the servers'
own word decides who is primary, never a container's name: after a
failover the names no longer tell the truth."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import Enum

from atelier.core.errors import AtelierError
from atelier.core.model import REPLICATED_ROLES
from atelier.dba.server import FENCE_MARKER, SEED_MARKER, Server, wait_for
from atelier.engine.containers import start_and_wait_for_sshd

# The expert note's thresholds (seed 003): under 1 MB is fine, over 100 MB critical.
LAG_OK_BYTES = 1 << 20
LAG_CRIT_BYTES = 100 << 20


def lag_level(lag_bytes: int | None) -> str:
    if lag_bytes is None:
        return "-"
    if lag_bytes < LAG_OK_BYTES:
        return "ok"
    return "crit" if lag_bytes > LAG_CRIT_BYTES else "warn"


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# ---- what replication is doing -----------------------------------------------------------

# One row per standby that streams, plus one per physical slot nobody uses
# (it still holds WAL back). Nothing on a server in recovery.
REPLICATION_SQL = """
SELECT r.application_name AS standby, host(r.client_addr) AS address, r.state, r.sync_state,
       r.sent_lsn::text AS sent, r.write_lsn::text AS write, r.flush_lsn::text AS flush,
       r.replay_lsn::text AS replay,
       pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint AS lag_bytes,
       extract(epoch FROM r.replay_lag)::float8 AS lag_seconds,
       s.slot_name AS slot, pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint AS retained_bytes
  FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
 WHERE NOT pg_is_in_recovery()
UNION ALL
SELECT NULL, NULL, 'slot unused', NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.slot_name,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint
  FROM pg_replication_slots s
 WHERE NOT pg_is_in_recovery() AND s.slot_type = 'physical' AND NOT s.active
"""


def replication_rows(server: Server, **kw) -> list[dict]:
    """What `server` says of its standbys, if it is a primary ([] otherwise)."""
    state = server.state(**kw)
    if not state.primary:
        return []
    matrix = server.session.matrix
    rows = server.rows(REPLICATION_SQL, what="reading pg_stat_replication", **kw)
    out = [{"primary": server.name,
            "standby": (matrix.name_at(r["address"]) if r["address"] else None) or r["standby"],
            **{k: v for k, v in r.items() if k != "standby"}} for r in rows]
    for row in out:
        # A standby that has caught up and is idle has no replay_lag (NULL).
        if row["lag_seconds"] is None and row["lag_bytes"] == 0:
            row["lag_seconds"] = 0.0
        measured = row["lag_bytes"] if row["state"] != "slot unused" else row["retained_bytes"]
        row["level"] = lag_level(measured)
    if not out:
        out.append({"primary": server.name, "standby": None, "state": "no standby", "level": "-"})
    return out


REPLICATION_COLUMNS = ("primary", "standby", "state", "sync_state", "sent", "write", "flush", "replay",
                       "lag", "lag s", "slot", "retained", "level")


def replication_table_row(row: dict) -> tuple:
    seconds = row.get("lag_seconds")
    return (row["primary"], row.get("standby") or "-", row.get("state") or "-", row.get("sync_state") or "-",
            row.get("sent") or "-", row.get("write") or "-", row.get("flush") or "-", row.get("replay") or "-",
            human_bytes(row.get("lag_bytes")), "-" if seconds is None else f"{seconds:.3f}",
            row.get("slot") or "-", human_bytes(row.get("retained_bytes")), row.get("level") or "-")


# ---- changing who serves -----------------------------------------------------------------

def promote(server: Server, **kw) -> None:
    """pg_promote, waiting for it; then forget the primary it followed."""
    server.run("SELECT pg_promote(true, 120);", what="promoting", **kw)
    server.run("ALTER SYSTEM RESET primary_conninfo;\nALTER SYSTEM RESET primary_slot_name;\n"
               "SELECT pg_reload_conf();", what="forgetting its old primary", **kw)


def ensure_slot(server: Server, slot: str, **kw) -> None:
    literal = server.literal(slot)
    server.run(f"SELECT pg_create_physical_replication_slot({literal}, true) "
               f"WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = {literal});",
               what=f"making slot {slot}", **kw)


def follow(server: Server, upstream_alias: str, slot: str, wait_seconds: float = 120, **kw) -> None:
    """Start this stopped server as a standby of `upstream_alias` (a host name
    of its own group) through `slot`, and wait until it streams."""
    server.step("marking it a standby", 'touch "$PGDATA/standby.signal"', **kw)
    server.boot("starting it", **kw)
    conninfo = f"host={upstream_alias} port=5432 user=repluser application_name={slot}"
    server.run(f"ALTER SYSTEM SET primary_conninfo = {server.literal(conninfo)};\n"
               f"ALTER SYSTEM SET primary_slot_name = {server.literal(slot)};\n"
               "SELECT pg_reload_conf();", what=f"following {upstream_alias}", **kw)
    if not wait_for(lambda: server.state().receiver == "streaming", wait_seconds, 0.3):
        raise AtelierError(f"{server.name} was started as a standby of {upstream_alias} but does not stream "
                           f"after {wait_seconds:.0f} s; its log: journalctl -u postgresql (inv pg.log)")
    # Slots it kept from when it was a primary would hold WAL back for nobody.
    server.run("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
               "WHERE slot_type = 'physical' AND NOT active;", what="dropping its old slots", **kw)


def replayed_past(server: Server, lsn: str) -> bool:
    rows = server.rows(f"SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), {server.literal(lsn)}) >= 0 AS done")
    return bool(rows[0]["done"])


@dataclass
class Pair:
    standby: str   # the container that is a standby now
    primary: str   # the container it should follow


def switchover(session, name: str, say) -> Pair:
    """Swap the roles of `name` (a streaming standby) and its primary, losing
    nothing: stop the primary cleanly, check the standby replayed its shutdown
    checkpoint, promote the standby, start the old primary as its standby."""
    matrix = session.matrix
    new, old = Server(session, name), Server(session, matrix.partner(name).name)
    mine, theirs = new.state(), old.state()
    if not mine.running:
        raise AtelierError(f"{name} is not running: db.switchover promotes a running standby")
    if not mine.in_recovery:
        raise AtelierError(f"{name} is a primary, not a standby: db.switchover takes the standby to promote "
                           f"(here {old.name}, if it streams from {name})")
    if not theirs.primary:
        raise AtelierError(f"{old.name} is not a running primary, so there is nothing to switch over from; "
                           f"`inv db.failover -t {name}` promotes {name} alone")
    if mine.receiver != "streaming" or matrix.upstream_name(name, mine.upstream) != old.name:
        raise AtelierError(f"{name} does not stream from {old.name} ({mine.receiver}); a switchover needs it to")
    say(f"stopping {old.name} cleanly")
    old.stop("stopping the primary")
    checkpoint = old.shutdown_checkpoint()
    say(f"waiting for {name} to replay up to {checkpoint}")
    if not wait_for(lambda: replayed_past(new, checkpoint), 60, 0.05):
        old.start("starting the old primary again")
        raise AtelierError(f"{name} did not replay {old.name}'s shutdown checkpoint {checkpoint} in 60 s; "
                           f"nothing changed: {old.name} is the primary again")
    say(f"promoting {name}")
    promote(new)
    slot = matrix.replication_slot(old.container)
    ensure_slot(new, slot)
    say(f"starting {old.name} as a standby of {name}")
    follow(old, new.container.role, slot)
    return Pair(old.name, name)


def failover(session, name: str, say) -> Pair:
    """Promote the standby `name` whether or not its primary answers, after
    fencing the primary so that two primaries never take writes."""
    new, old = Server(session, name), Server(session, session.matrix.partner(name).name)
    mine = new.state()
    if not mine.running:
        raise AtelierError(f"{name} is not running: db.failover promotes a running standby")
    if not mine.in_recovery:
        raise AtelierError(f"{name} is a primary already, not a standby: db.failover takes the standby "
                           "to promote")
    say(old.fence_through_engine())
    say(f"promoting {name}")
    promote(new)
    return Pair(old.name, name)


# pg_rewind needs a cleanly stopped target, and the target's WAL from its last
# checkpoint before the timelines diverged: the end-of-recovery checkpoint
# must not recycle it (wal_keep_size), or a big load before the crash leaves
# nothing to rewind from.
CRASH_RECOVERY = ('state=$(LC_ALL=C pg_controldata "$PGDATA" | sed -n "s/^Database cluster state: *//p"); '
                  'case "$state" in "shut down"|"shut down in recovery") ;; *) '
                  'echo "atelier: $PGDATA was not shut down cleanly ($state): crash recovery first" >&2; '
                  'log=$(mktemp); postgres --single -D "$PGDATA" -c config_file="$PG_CONFDIR/postgresql.conf" '
                  '-c archive_mode=off -c wal_keep_size=1TB template1 </dev/null >"$log" 2>&1 || { cat "$log" >&2; exit 1; }; '
                  'rm -f "$log" ;; esac')


class Rejoin(Enum):
    """How an old primary comes back: rewound, or copied afresh."""

    REWIND = "pg_rewind"
    COPY = "pg_basebackup"


def rewind(old: Server, new: Server, say) -> bool:
    """pg_rewind of the stopped `old` to `new`'s timeline; True if it worked."""
    # pg_rewind reads the source's timeline from its control file, which a
    # promotion updates only at the next checkpoint (spread over minutes
    # after a big load); without one it rewinds to the wrong point.
    new.run("CHECKPOINT;", what=f"checkpointing {new.name}")
    say(f"rewinding {old.name} to {new.name}'s timeline (pg_rewind)")
    source = f"host={new.container.role} port=5432 user=experdba dbname=postgres"
    result = old.c.run(f'. /etc/atelier/pg.env; "$PG_BINDIR/pg_rewind" --target-pgdata="$PGDATA" '
                       f'--source-server={shlex.quote(source)} 2>&1', warn=True, hide=True, in_stream=False)
    for line in result.stdout.strip().splitlines()[-3:]:
        say(line)
    return result.exited == 0


def rejoin(session, name: str, say, ask, fresh: bool = False) -> Pair:
    """Make the old primary `name` a standby of its partner, which serves
    now: pg_rewind, or (after `ask`) a fresh copy with pg_basebackup, at
    once when `fresh`."""
    matrix = session.matrix
    old, new = Server(session, name), Server(session, matrix.partner(name).name)
    start_and_wait_for_sshd(session.engine, matrix, name, say)
    theirs, mine = new.state(), old.state()
    if not theirs.primary:
        raise AtelierError(f"{new.name} is not a running primary, so {name} has nothing to follow; "
                           f"promote it first (`inv db.failover -t {new.name}`)")
    if mine.running and mine.in_recovery and mine.receiver == "streaming":
        raise AtelierError(f"{name} already streams from {matrix.upstream_name(name, mine.upstream)}")
    if mine.running and not mine.in_recovery:
        raise AtelierError(f"{name} is up as a primary beside {new.name}; stop it first "
                           f"(`inv pg.stop -t {name}`), then db.rejoin rewinds it")
    slot = matrix.replication_slot(old.container)
    if fresh:
        ask(f"replace the data of {name} with a fresh copy of {new.name} (pg_basebackup)?",
            f"db.rejoin --fresh replaces the data of {name} with a copy of {new.name}; add --yes to confirm")
    old.stop("stopping it")
    old.step("making sure it was shut down cleanly", CRASH_RECOVERY)
    how = Rejoin.COPY if fresh else (Rejoin.REWIND if rewind(old, new, say) else None)
    if how is None:
        ask(f"pg_rewind could not rewind {name}; copy it afresh from {new.name} with pg_basebackup, "
            f"replacing its data?",
            f"pg_rewind could not rewind {name}; `inv db.rejoin -t {name} --yes` copies it afresh "
            f"from {new.name} with pg_basebackup, replacing its data")
        how = Rejoin.COPY
    if how is Rejoin.COPY:
        say(f"copying {name} afresh from {new.name} (pg_basebackup)")
        copy_afresh(old, new.container.role, slot)
        if not wait_for(lambda: old.state().receiver == "streaming", 120, 0.3):
            raise AtelierError(f"{name} was copied from {new.name} but does not stream")
        return Pair(name, new.name)
    ensure_slot(new, slot)
    old.step("lifting the fence", f'rm -f "$PG_DATA_MOUNT/{FENCE_MARKER}"', sudo=True)
    follow(old, new.container.role, slot)
    return Pair(name, new.name)


def copy_afresh(server: Server, upstream_alias: str, slot: str, **kw) -> None:
    """Replace this server's data with a pg_basebackup of `upstream_alias`
    (made by atelier-pg-setup beside the data, moved in when complete) and
    start it as a standby through `slot`. Only on the user's word."""
    server.stop(**kw)
    marker = shlex.quote(upstream_alias + " " + slot)
    server.boot(f"copying it from {upstream_alias}",
                before=f'echo {marker} > "$PG_DATA_MOUNT/{SEED_MARKER}" && rm -f "$PG_DATA_MOUNT/{FENCE_MARKER}"',
                timeout=1800, **kw)


def reseed(session, name: str, context=None, **kw) -> None:
    """Throw away `name`'s data and copy it again from its partner, which
    must be a running primary."""
    matrix = session.matrix
    partner = matrix.partner(name)
    if not Server(session, partner.name).state().primary:
        raise AtelierError(f"{partner.name} is not a running primary, so {name} has nothing to be copied from")
    server = Server(session, name, context)
    copy_afresh(server, partner.role, matrix.replication_slot(server.container), **kw)


def replicated_pair(session, names: list[str]) -> tuple[str, str]:
    """(standby, primary) of the one active/standby pair among `names`, by
    what the servers say now."""
    matrix = session.matrix
    pair = [n for n in names if matrix.container(n).role in REPLICATED_ROLES]
    groups = {(matrix.container(n).os, matrix.container(n).major) for n in pair}
    if len(pair) != 2 or len(groups) != 1:
        raise AtelierError(f"a drill runs on one active/standby pair, e.g. -t 'debian12-pg15-*'; "
                           f"{', '.join(names)} holds {len(pair)} replicated servers")
    states = {n: Server(session, n).state() for n in pair}
    standbys = [n for n in pair if states[n].running and states[n].in_recovery]
    primaries = [n for n in pair if states[n].primary]
    if len(standbys) != 1 or len(primaries) != 1:
        raise AtelierError(f"{' and '.join(pair)} are not one primary and one standby right now "
                           f"(`inv status`; `inv db.rejoin` brings back a fenced old primary)")
    return standbys[0], primaries[0]
