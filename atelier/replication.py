"""Streaming replication pairs: what they are doing, and changing which one
serves. Everything runs in the servers over SSH (a Fabric context per server,
as postgres): SQL through psql on the local socket, systemctl through sudo.
The servers' own word decides who is primary (pg_is_in_recovery), never a
container's name: after a failover the names no longer tell the truth."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass

from .errors import AtelierError
from .in_container import step
from .model import REPLICATED_ROLES
from .runtime import sql_literal

# The expert note's thresholds (seed 003): under 1 MB is fine, over 100 MB critical.
LAG_OK_BYTES = 1 << 20
LAG_CRIT_BYTES = 100 << 20

FENCE_MARKER = ".atelier-fenced"   # in the data volume: the server stays stopped
SEED_MARKER = ".atelier-seeding"   # in the data volume: copy it again at boot


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


# ---- SQL in a server ---------------------------------------------------------------------

def psql_local(db: str, script: str = "-", variables: dict | None = None, db_is_shell: bool = False) -> str:
    """psql as postgres on the server's own socket, stopping at the first
    error, notices left out: every SQL step atelier runs in a server.
    `db_is_shell`: `db` is a shell expression ("$db"), not a name."""
    options = "".join(f" -v {shlex.quote(f'{k}={v}')}" for k, v in (variables or {}).items())
    return ('PGOPTIONS="-c client_min_messages=warning" psql -XAtq -v ON_ERROR_STOP=1' + options +
            f' -h "$PG_SOCKET_DIR" -d {db if db_is_shell else shlex.quote(db)} -f {shlex.quote(script)}')


def sql_rows(c, query: str, db: str = "postgres", what: str = "asking the server", quiet: bool = False,
             **kw) -> list[dict]:
    """The rows of `query`, run by psql as postgres on the local socket
    (`quiet`: psql's errors are not shown; the caller explains them)."""
    wrapped = f"SELECT coalesce(json_agg(q), '[]'::json) FROM ({query}) q"
    kw.pop("out_stream", None)  # Invoke would show what goes to a stream given (hide or not)
    if quiet:
        kw.pop("err_stream", None)
    result = step(c, what, psql_local(db), stdin=wrapped, hide=True if quiet else "out", **kw)
    return json.loads(result.stdout.strip() or "[]")


def sql_run(c, statements: str, db: str = "postgres", what: str = "changing the server", **kw) -> None:
    kw.pop("out_stream", None)
    step(c, what, psql_local(db), stdin=statements, hide="out", **kw)


@dataclass
class ServerState:
    running: bool
    in_recovery: bool = False
    receiver: str = "-"   # pg_stat_wal_receiver.status
    upstream: str = "-"   # the host it streams from, as it names it
    fenced: bool = False

    @property
    def primary(self) -> bool:
        return self.running and not self.in_recovery


STATE_SQL = """SELECT pg_is_in_recovery() AS in_recovery,
       coalesce((SELECT status FROM pg_stat_wal_receiver), '-') AS receiver,
       coalesce((SELECT sender_host FROM pg_stat_wal_receiver), '-') AS upstream"""


def server_state(c, **kw) -> ServerState:
    result = c.run('. /etc/atelier/pg.env; test -e "$PG_DATA_MOUNT/' + FENCE_MARKER + '" && echo fenced; '
                   '"$PG_BINDIR/pg_isready" -q -h "$PG_SOCKET_DIR" && echo running',
                   warn=True, hide=True, in_stream=False)
    words = result.stdout.split()
    if "running" not in words:
        return ServerState(False, fenced="fenced" in words)
    row = sql_rows(c, STATE_SQL, what="reading its role", **kw)[0]
    return ServerState(True, row["in_recovery"], row["receiver"], row["upstream"], "fenced" in words)


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


def replication_rows(c, model, name: str, **kw) -> list[dict]:
    """What `name` says of its standbys, if it is a primary ([] otherwise)."""
    state = server_state(c, **kw)
    if not state.primary:
        return []
    rows = sql_rows(c, REPLICATION_SQL, what="reading pg_stat_replication", **kw)
    out = [{"primary": name, "standby": (model.name_at(r["address"]) if r["address"] else None) or r["standby"],
            **{k: v for k, v in r.items() if k != "standby"}} for r in rows]
    for row in out:
        # A standby that has caught up and is idle has no replay_lag (NULL).
        if row["lag_seconds"] is None and row["lag_bytes"] == 0:
            row["lag_seconds"] = 0.0
        measured = row["lag_bytes"] if row["state"] != "slot unused" else row["retained_bytes"]
        row["level"] = lag_level(measured)
    if not out:
        out.append({"primary": name, "standby": None, "state": "no standby", "level": "-"})
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

def wait_for(check, seconds: float, every: float = 0.1):
    """`check()` until it returns something true, or None after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def promote(c, **kw) -> None:
    """pg_promote, waiting for it; then forget the primary it followed."""
    sql_run(c, "SELECT pg_promote(true, 120);", what="promoting", **kw)
    sql_run(c, "ALTER SYSTEM RESET primary_conninfo;\nALTER SYSTEM RESET primary_slot_name;\n"
               "SELECT pg_reload_conf();", what="forgetting its old primary", **kw)


def ensure_slot(c, slot: str, **kw) -> None:
    sql_run(c, f"SELECT pg_create_physical_replication_slot({sql_literal(slot)}, true) "
               f"WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = {sql_literal(slot)});",
            what=f"making slot {slot}", **kw)


def follow(c, upstream_alias: str, slot: str, wait_seconds: float = 120, **kw) -> None:
    """Start this stopped server as a standby of `upstream_alias` (a host name
    of its own group) through `slot`, and wait until it streams."""
    step(c, "marking it a standby", 'touch "$PGDATA/standby.signal"', **kw)
    step(c, "starting it", 'systemctl reset-failed atelier-pg-setup.service "$PG_SERVICE" 2>/dev/null; '
         'systemctl restart atelier-pg-setup.service && systemctl start "$PG_SERVICE"', sudo=True, **kw)
    conninfo = f"host={upstream_alias} port=5432 user=repluser application_name={slot}"
    sql_run(c, f"ALTER SYSTEM SET primary_conninfo = {sql_literal(conninfo)};\n"
               f"ALTER SYSTEM SET primary_slot_name = {sql_literal(slot)};\n"
               "SELECT pg_reload_conf();", what=f"following {upstream_alias}", **kw)
    if not wait_for(lambda: server_state(c).receiver == "streaming", wait_seconds, 0.3):
        raise AtelierError(f"{c.host} was started as a standby of {upstream_alias} but does not stream "
                           f"after {wait_seconds:.0f} s; its log: journalctl -u postgresql (inv pg.log)")
    # Slots it kept from when it was a primary would hold WAL back for nobody.
    sql_run(c, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
               "WHERE slot_type = 'physical' AND NOT active;", what="dropping its old slots", **kw)


def shutdown_checkpoint(c, **kw) -> str:
    """The LSN of a cleanly stopped server's last checkpoint."""
    result = step(c, "reading its last checkpoint", 'LC_ALL=C pg_controldata "$PGDATA"', hide=True, **kw)
    facts = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    state = facts.get("Database cluster state", "").strip()
    if state != "shut down":
        raise AtelierError(f"{c.host} did not shut down cleanly (pg_controldata says {state!r})")
    return facts["Latest checkpoint location"].strip()


def replayed_past(c, lsn: str) -> bool:
    rows = sql_rows(c, f"SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), {sql_literal(lsn)}) >= 0 AS done")
    return bool(rows[0]["done"])


@dataclass
class Pair:
    standby: str   # the container that is a standby now
    primary: str   # the container it should follow


def switchover(session, name: str, say) -> Pair:
    """Swap the roles of `name` (a streaming standby) and its primary, losing
    nothing: stop the primary cleanly, check the standby replayed its shutdown
    checkpoint, promote the standby, start the old primary as its standby."""
    model = session.model
    old = model.partner(name).name
    new_ctx, old_ctx = session.context(name, "postgres"), session.context(old, "postgres")
    mine, theirs = server_state(new_ctx), server_state(old_ctx)
    if not mine.running:
        raise AtelierError(f"{name} is not running: db.switchover promotes a running standby")
    if not mine.in_recovery:
        raise AtelierError(f"{name} is a primary, not a standby: db.switchover takes the standby to promote "
                           f"(here {old}, if it streams from {name})")
    if not theirs.primary:
        raise AtelierError(f"{old} is not a running primary, so there is nothing to switch over from; "
                           f"`inv db.failover -t {name}` promotes {name} alone")
    if mine.receiver != "streaming" or model.upstream_name(name, mine.upstream) != old:
        raise AtelierError(f"{name} does not stream from {old} ({mine.receiver}); a switchover needs it to")
    new_role = model.container(name).role
    say(f"stopping {old} cleanly")
    step(old_ctx, "stopping the primary", 'systemctl stop "$PG_SERVICE"', sudo=True)
    checkpoint = shutdown_checkpoint(old_ctx)
    say(f"waiting for {name} to replay up to {checkpoint}")
    if not wait_for(lambda: replayed_past(new_ctx, checkpoint), 60, 0.05):
        step(old_ctx, "starting the old primary again", 'systemctl start "$PG_SERVICE"', sudo=True)
        raise AtelierError(f"{name} did not replay {old}'s shutdown checkpoint {checkpoint} in 60 s; "
                           f"nothing changed: {old} is the primary again")
    say(f"promoting {name}")
    promote(new_ctx)
    ensure_slot(new_ctx, model.replication_slot(model.container(old)))
    say(f"starting {old} as a standby of {name}")
    follow(old_ctx, new_role, model.replication_slot(model.container(old)))
    return Pair(old, name)


def fence_through_engine(model, name: str) -> str:
    """Keep the server `name` from taking writes, whatever state it is in:
    mark its data volume (boot then leaves it stopped) and kill its server.
    Through the engine, since a crashed container answers no SSH. Says what it did."""
    from .archive import tar_bytes
    from .engine import project_container

    mount = model.container(name).image.build.data_mount
    found = project_container(model.project, name)
    if found is None:
        return f"{name} has no container; nothing to fence"
    found.reload()
    if found.status == "running":
        found.exec_run(["bash", "-c", f'. /etc/atelier/pg.env; touch "{mount}/{FENCE_MARKER}"; '
                        'systemctl kill --signal=SIGKILL "$PG_SERVICE"; systemctl stop "$PG_SERVICE"'])
        return f"fenced {name}: its server is killed and stays stopped"
    found.put_archive(mount, tar_bytes({FENCE_MARKER: (b"fenced by inv db.failover\n", 0o644)}))
    return f"fenced {name} (container {found.status}): its server stays stopped when it starts"


def failover(session, name: str, say) -> Pair:
    """Promote the standby `name` whether or not its primary answers, after
    fencing the primary so that two primaries never take writes."""
    model = session.model
    old = model.partner(name).name
    new_ctx = session.context(name, "postgres")
    mine = server_state(new_ctx)
    if not mine.running:
        raise AtelierError(f"{name} is not running: db.failover promotes a running standby")
    if not mine.in_recovery:
        raise AtelierError(f"{name} is a primary already, not a standby: db.failover takes the standby "
                           "to promote")
    say(fence_through_engine(model, old))
    say(f"promoting {name}")
    promote(new_ctx)
    return Pair(old, name)


def start_container(model, name: str, say, seconds: float = 120) -> None:
    """Start a stopped container of the model and wait for its sshd."""
    from .engine import probe, project_container

    found = project_container(model.project, name)
    if found is None:
        raise AtelierError(f"{name} has no container; `inv up` makes it")
    found.reload()
    if found.status == "running":
        return
    say(f"starting container {name}")
    found.start()
    if not wait_for(lambda: probe(found).get("sshd") == "active", seconds, 0.5):
        raise AtelierError(f"{name} started but its sshd did not answer in {seconds:.0f} s")


# pg_rewind needs a cleanly stopped target, and the target's WAL from its last
# checkpoint before the timelines diverged: the end-of-recovery checkpoint
# must not recycle it (wal_keep_size), or a big load before the crash leaves
# nothing to rewind from.
CRASH_RECOVERY = ('state=$(LC_ALL=C pg_controldata "$PGDATA" | sed -n "s/^Database cluster state: *//p"); '
                  'case "$state" in "shut down"|"shut down in recovery") ;; *) '
                  'echo "atelier: $PGDATA was not shut down cleanly ($state): crash recovery first"; '
                  'log=$(mktemp); postgres --single -D "$PGDATA" -c config_file="$PG_CONFDIR/postgresql.conf" '
                  '-c archive_mode=off -c wal_keep_size=1TB template1 </dev/null >"$log" 2>&1 || { cat "$log" >&2; exit 1; }; '
                  'rm -f "$log" ;; esac')


def rejoin(session, name: str, say, ask, fresh: bool = False) -> Pair:
    """Make the old primary `name` a standby of its partner, which serves
    now: pg_rewind, or (after `ask`) a fresh copy with pg_basebackup, at
    once when `fresh`."""
    model = session.model
    server = model.container(name)
    new = model.partner(name).name
    start_container(model, name, say)
    new_ctx, old_ctx = session.context(new, "postgres"), session.context(name, "postgres")
    theirs, mine = server_state(new_ctx), server_state(old_ctx)
    if not theirs.primary:
        raise AtelierError(f"{new} is not a running primary, so {name} has nothing to follow; "
                           f"promote it first (`inv db.failover -t {new}`)")
    if mine.running and mine.in_recovery and mine.receiver == "streaming":
        raise AtelierError(f"{name} already streams from {model.upstream_name(name, mine.upstream)}")
    if mine.running and not mine.in_recovery:
        raise AtelierError(f"{name} is up as a primary beside {new}; stop it first "
                           f"(`inv pg.stop -t {name}`), then db.rejoin rewinds it")
    new_alias, slot = model.container(new).role, model.replication_slot(server)
    if fresh:
        ask(f"replace the data of {name} with a fresh copy of {new} (pg_basebackup)?",
            f"db.rejoin --fresh replaces the data of {name} with a copy of {new}; add --yes to confirm")
    step(old_ctx, "stopping it", 'systemctl stop "$PG_SERVICE"', sudo=True)
    step(old_ctx, "making sure it was shut down cleanly", CRASH_RECOVERY)
    rewound = None
    if not fresh:
        # pg_rewind reads the source's timeline from its control file, which a
        # promotion updates only at the next checkpoint (spread over minutes
        # after a big load); without one it rewinds to the wrong point.
        sql_run(new_ctx, "CHECKPOINT;", what=f"checkpointing {new}")
        say(f"rewinding {name} to {new}'s timeline (pg_rewind)")
        source = f"host={new_alias} port=5432 user=experdba dbname=postgres"
        rewound = old_ctx.run(f'. /etc/atelier/pg.env; "$PG_BINDIR/pg_rewind" --target-pgdata="$PGDATA" '
                              f'--source-server={shlex.quote(source)} 2>&1', warn=True, hide=True, in_stream=False)
        for line in rewound.stdout.strip().splitlines()[-3:]:
            say(line)
    if not fresh and rewound.exited != 0:
        ask(f"pg_rewind could not rewind {name}; copy it afresh from {new} with pg_basebackup, "
            f"replacing its data?",
            f"pg_rewind could not rewind {name}; `inv db.rejoin -t {name} --yes` copies it afresh "
            f"from {new} with pg_basebackup, replacing its data")
    if fresh or rewound.exited != 0:
        say(f"copying {name} afresh from {new} (pg_basebackup)")
        copy_afresh(old_ctx, new_alias, slot)
        if not wait_for(lambda: server_state(old_ctx).receiver == "streaming", 120, 0.3):
            raise AtelierError(f"{name} was copied from {new} but does not stream")
        return Pair(name, new)
    ensure_slot(new_ctx, slot)
    step(old_ctx, "lifting the fence", f'rm -f "$PG_DATA_MOUNT/{FENCE_MARKER}"', sudo=True)
    follow(old_ctx, new_alias, slot)
    return Pair(name, new)


def copy_afresh(c, upstream_alias: str, slot: str, **kw) -> None:
    """Replace this server's data with a pg_basebackup of `upstream_alias`
    (made by atelier-pg-setup beside the data, moved in when complete) and
    start it as a standby through `slot`. Only on the user's word."""
    step(c, "stopping the server", 'systemctl stop "$PG_SERVICE"', sudo=True, **kw)
    step(c, f"copying it from {upstream_alias}",
         f'echo {shlex.quote(upstream_alias + " " + slot)} > "$PG_DATA_MOUNT/{SEED_MARKER}" && '
         f'rm -f "$PG_DATA_MOUNT/{FENCE_MARKER}" && systemctl reset-failed atelier-pg-setup.service; '
         'timeout 1800 systemctl restart atelier-pg-setup.service', sudo=True, **kw)
    step(c, "starting the server", 'systemctl start "$PG_SERVICE"', sudo=True, **kw)


def reseed(session, name: str, **kw) -> None:
    """Throw away `name`'s data and copy it again from its partner, which
    must be a running primary."""
    model = session.model
    partner = model.partner(name)
    if not server_state(session.context(partner.name, "postgres")).primary:
        raise AtelierError(f"{partner.name} is not a running primary, so {name} has nothing to be copied from")
    copy_afresh(session.context(name, "postgres"), partner.role, model.replication_slot(model.container(name)),
                **kw)


def replicated_pair(session, names: list[str]) -> tuple[str, str]:
    """(standby, primary) of the one active/standby pair among `names`, by
    what the servers say now."""
    model = session.model
    pair = [n for n in names if model.container(n).role in REPLICATED_ROLES]
    groups = {(model.container(n).os, model.container(n).major) for n in pair}
    if len(pair) != 2 or len(groups) != 1:
        raise AtelierError(f"a drill runs on one active/standby pair, e.g. -t 'debian12-pg15-*'; "
                           f"{', '.join(names)} holds {len(pair)} replicated servers")
    states = {n: server_state(session.context(n, "postgres")) for n in pair}
    standbys = [n for n in pair if states[n].running and states[n].in_recovery]
    primaries = [n for n in pair if states[n].primary]
    if len(standbys) != 1 or len(primaries) != 1:
        raise AtelierError(f"{' and '.join(pair)} are not one primary and one standby right now "
                           f"(`inv status`; `inv db.rejoin` brings back a fenced old primary)")
    return standbys[0], primaries[0]
