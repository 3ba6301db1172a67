"""Drills that count what a role change lost.

A writer commits numbered rows, one psql per row, the way an application
does: through PgBouncer's entry of the pair (which follows the primary
through HAProxy's health checks) when the pool runs, else to whichever
server of the pair takes writes (libpq's host list with
target_session_attrs=read-write). It prints each commit that returned with
the time and the server that took it (inet_server_addr(), PostgreSQL's own
word). After the role change, the rows the new primary holds are counted
against those commits.

The kinds: switchover and failover (both modes; `auto` under Patroni kills
the leader and lets Patroni promote), zombie (the primary frozen past the
leader lock's TTL, then thawed: what did it accept after the promotion?),
dcs-loss (Patroni: two of three etcd members stopped), partition (the
primary cut off from the network the pair shares, failed over, healed and
rejoined: see Cut)."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

from atelier.core.errors import AtelierError
from atelier.core.model import PATRONI_TIMINGS
from atelier.dba import patroni
from atelier.dba.replication import failover, rejoin, switchover
from atelier.dba.routes import routes
from atelier.dba.server import Server, wait_for
from atelier.engine.containers import disconnect, existing, kill, reconnect
from atelier.ssh.guard import guarded

DRILL_DB = "experdb"
DRILL_TABLE = "atelier_drill"
KINDS = ("switchover", "failover", "zombie", "dcs-loss", "partition")
PATRONI_ONLY = ("dcs-loss",)


# A server cut off mid-query (a partition, not a crash) answers nothing and
# resets nothing: without these the writer's psql waits for TCP to give up,
# minutes. Unacknowledged data fails after 3 s, a silent peer after about 3 s.
DEAD_PEER = {"tcp_user_timeout": "3000", "keepalives_idle": "1", "keepalives_interval": "1", "keepalives_count": "2"}


def pooled_conninfo(env, pair_name: str) -> str:
    """The pair's URL in the pool, as `inv db.url` gives it to applications."""
    return routes(env, pair_name, database=DRILL_DB)[0].url + "?connect_timeout=2&" + "&".join(
        f"{k}={v}" for k, v in DEAD_PEER.items())


def listed_conninfo(hosts: list[str]) -> str:
    return (f"host={','.join(hosts)} port=5432 user=experdba dbname={DRILL_DB} "
            "target_session_attrs=read-write connect_timeout=2 " + " ".join(f"{k}={v}" for k, v in DEAD_PEER.items()))


def writer_script(conninfo: str, run: str, writer: str = "w", table: str = DRILL_TABLE) -> str:
    """Rows numbered from 1 (writer w) or from 1000001 (a second writer)
    into `table` (run, n): each commit that returned is printed, nothing else."""
    first = 0 if writer == "w" else 1000000
    # The server's address and the time it ran the insert, both PostgreSQL's own word.
    insert = (f"INSERT INTO {table} (run, n) VALUES ('{run}', $n) "
              "RETURNING host(inet_server_addr()) || ' ' || extract(epoch FROM clock_timestamp())")
    return (f"stop=/tmp/atelier-drill-{run}.stop; n={first}; "
            'while [ ! -e "$stop" ]; do n=$((n + 1)); '
            f'if at=$(psql {shlex.quote(conninfo)} -XAtq -c "{insert}" 2>/dev/null); then '
            'echo "commit $n $(date +%s.%N) $at"; else sleep 0.02; fi; done')


@dataclass
class Commit:
    n: int
    at: float  # when the commit returned to the writer
    address: str  # the server that ran it
    ran_at: float | None = None  # when that server ran the insert (its clock_timestamp())


def parse_commits(output: str) -> list[Commit]:
    commits = []
    for line in output.splitlines():
        words = line.split()
        if len(words) in (4, 5) and words[0] == "commit" and words[1].isdigit():
            commits.append(Commit(int(words[1]), float(words[2]), words[3],
                                  float(words[4]) if len(words) == 5 else None))
    return commits


@dataclass
class DrillReport:
    kind: str
    old_primary: str
    new_primary: str
    synchronous: bool
    committed: int
    present: int
    lost: list[int] = field(default_factory=list)
    mode: str = "plain"  # plain | patroni
    path: str = ""  # how the writer reached the pair
    run: str = ""  # the drill table's run: its rows are `WHERE run = '<run>'`
    # Last commit the old primary took to first the new one took (seconds).
    write_gap: float | None = None
    # failover: primary killed to first commit on the new one (seconds), and
    # to the end of the promotion (the writer's own connect timeout is the rest).
    killed_to_write: float | None = None
    killed_to_promoted: float | None = None
    # zombie: inserts the old primary ran after the new one was promoted,
    # from the pool's client and from a client that kept its address.
    zombie_writes: int | None = None
    zombie_writes_pooled: int | None = None
    # Which member each client reached: client -> member -> commits.
    reached: dict = field(default_factory=dict)
    # dcs-loss: how long writes went on after etcd lost its quorum, and how
    # long after it came back they resumed.
    writes_after_dcs_loss: float | None = None
    dcs_back_to_write: float | None = None
    # partition: how the primary was cut off, cut to the promotion and to the
    # first commit on the new primary, and healed to the old one streaming.
    cut: str = ""
    cut_to_promoted: float | None = None
    cut_to_write: float | None = None
    healed_to_streaming: float | None = None
    rejoined: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def lost_count(self) -> int:
        return len(self.lost)

    def lines(self) -> list[str]:
        mode = "synchronous" if self.synchronous else "asynchronous"
        change = (f"leader {self.old_primary}" if self.old_primary == self.new_primary
                  else f"{self.old_primary} -> {self.new_primary}")
        out = [f"drill {self.kind} ({self.mode}): {change} ({mode} replication)",
               f"writer: {self.path}",
               f"commits that returned: {self.committed}",
               f"of them on {self.new_primary} now: {self.present}",
               f"lost: {self.lost_count}" + (f" (rows {', '.join(map(str, self.lost[:20]))}"
                                             f"{' ...' if self.lost_count > 20 else ''})" if self.lost else "")]
        if self.write_gap is not None:
            out.append(f"writes stopped for {self.write_gap:.3f} s: last commit on {self.old_primary} "
                       f"to first on {self.new_primary}")
        if self.cut:
            out.append(f"cut: {self.cut}")
        if self.cut_to_promoted is not None:
            out.append(f"cut to {self.new_primary} promoted: {self.cut_to_promoted:.3f} s")
        if self.cut_to_write is not None:
            out.append(f"cut to first commit on {self.new_primary}: {self.cut_to_write:.3f} s")
        if self.rejoined:
            out.append(self.rejoined + (f" ({self.healed_to_streaming:.1f} s after the heal)"
                                        if self.healed_to_streaming is not None else ""))
        if self.killed_to_write is not None:
            out.append(f"primary killed to first commit on {self.new_primary}: {self.killed_to_write:.3f} s")
        if self.killed_to_promoted is not None:
            out.append(f"primary killed to {self.new_primary} promoted: {self.killed_to_promoted:.3f} s")
        if self.zombie_writes is not None:
            out.append(f"writes {self.old_primary} accepted after {self.new_primary} was promoted: "
                       f"{self.zombie_writes} ({self.zombie_writes_pooled} through the pool)")
        for client, members in self.reached.items():
            out.append(f"{client} reached: " + ", ".join(f"{m} {n}" for m, n in members.items()))
        if self.writes_after_dcs_loss is not None:
            out.append(f"writes went on for {self.writes_after_dcs_loss:.3f} s after etcd lost its quorum")
        if self.dcs_back_to_write is not None:
            out.append(f"etcd back to the first write: {self.dcs_back_to_write:.3f} s")
        return out + self.notes

    @property
    def failed(self) -> bool:
        """A switchover, a synchronous failover and a DCS loss must lose
        nothing; under Patroni a zombie must take no write."""
        if self.lost and (self.kind in ("switchover", "dcs-loss") or
                          (self.kind in ("failover", "partition") and self.synchronous)):
            return True
        # The application's path (the pool) must never reach a zombie under Patroni.
        return self.kind == "zombie" and self.mode == "patroni" and bool(self.zombie_writes_pooled)


def account(kind: str, old: str, new: str, synchronous: bool, commits: list[Commit], present: set[int],
            addresses: dict[str, str], killed_at: float | None = None,
            promoted_at: float | None = None) -> DrillReport:
    """Pure: what the writer saw against what the new primary holds."""
    committed = {c.n for c in commits}
    on_old = [c.at for c in commits if addresses.get(c.address) == old]
    on_new = [c.at for c in commits if addresses.get(c.address) == new]
    gap = (min(on_new) - max(on_old)) if on_old and on_new and old != new else None
    killed = (min(on_new) - killed_at) if killed_at is not None and on_new else None
    promoted = (promoted_at - killed_at) if killed_at is not None and promoted_at is not None else None
    return DrillReport(kind, old, new, synchronous, len(committed), len(committed & present),
                       sorted(committed - present), write_gap=gap, killed_to_write=killed,
                       killed_to_promoted=promoted)


def zombie_writes(commits: list[Commit], old_address: str, promoted_at: float) -> int:
    """Pure: inserts the old primary ran after the promotion (by its own
    clock, the host's: a commit sent before the freeze that returns after
    the thaw is no zombie write)."""
    return sum(1 for c in commits
               if c.address == old_address and (c.ran_at if c.ran_at is not None else c.at) > promoted_at)


def reached(commits: list[Commit], addresses: dict[str, str]) -> dict[str, int]:
    """Pure: member -> how many of these commits it ran."""
    out: dict[str, int] = {}
    for c in commits:
        name = addresses.get(c.address, c.address)
        out[name] = out.get(name, 0) + 1
    return out


def first_after(commits: list[Commit], moment: float) -> float | None:
    later = [c.at for c in commits if c.at > moment]
    return min(later) - moment if later else None


def last_before_gap(commits: list[Commit], moment: float, gap: float = 1.0) -> float | None:
    """Seconds after `moment` the writes went on before their first pause of `gap` s."""
    times = sorted(c.at for c in commits if c.at >= moment)
    if not times:
        return None
    last = moment
    for at in times:
        if at - last > gap:
            break
        last = at
    return last - moment


# ---- the writers -----------------------------------------------------------------------------

class Writers:
    """Writers in a container of the pair that stays up, stopped by a file."""

    def __init__(self, session, host: str, run: str):
        self.session, self.host, self.run = session, host, run
        self.context = session.context(host, "postgres")
        self.running: dict[str, object] = {}

    def start(self, name: str, conninfo: str, table: str = DRILL_TABLE) -> None:
        self.running[name] = self.context.run(guarded(writer_script(conninfo, self.run, name, table)),
                                              asynchronous=True, hide=True, in_stream=False, warn=True)

    def stop(self) -> dict[str, list[Commit]]:
        stop = f"/tmp/atelier-drill-{self.run}.stop"
        self.context.run(f"touch {stop}", warn=True, hide=True, in_stream=False)
        out = {name: parse_commits(promise.join().stdout) for name, promise in self.running.items()}
        self.context.run(f"rm -f {stop}", warn=True, hide=True, in_stream=False)
        return out


def count_rows(server: Server, run: str) -> int:
    if not server.state().primary:
        return 0
    return server.rows(f"SELECT count(*) AS n FROM {DRILL_TABLE} WHERE run = '{run}'", db=DRILL_DB)[0]["n"]


def promoted(server: Server) -> bool:
    try:
        return server.state().primary
    except Exception:  # noqa: BLE001 - a server mid-restart answers nothing; ask again
        return False


@dataclass
class Cut:
    """How a partition drill cuts the primary off and heals it: by default
    its container leaves the pair's network through its own node's engine
    (which works on any engine or swarm); `cut` and `heal` may be replaced,
    say by commands that take a whole node's link down and up."""

    how: str
    cut: object  # () -> None
    heal: object  # () -> None


def drill(session, kind: str, standby: str, primary: str, synchronous: bool, say, auto: bool = False,
          pause_seconds: float | None = None, failsafe: bool = False, cut: Cut | None = None) -> DrillReport:
    matrix = session.matrix
    under_patroni = matrix.settings.patroni
    mode = "patroni" if under_patroni else "plain"
    pair = matrix.pair_of(matrix.container(primary))
    old, new = Server(session, primary), Server(session, standby)
    run = time.strftime("%Y%m%d%H%M%S")
    old.run(f"CREATE TABLE IF NOT EXISTS {DRILL_TABLE} (run text, n int, "
            "at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (run, n));",
            db=DRILL_DB, what="making the drill's table")
    if synchronous:
        make_synchronous(session, pair, old, new, say)
    states = old.rows("SELECT sync_state FROM pg_stat_replication")
    is_sync = any(r["sync_state"] in ("sync", "quorum") for r in states)
    if matrix.settings.pgbouncer:
        conninfo = pooled_conninfo(matrix, pair.name)
        path = f"PgBouncer, {conninfo.split('@', 1)[1].split('?')[0]}"
    else:
        hosts = [new.container.role, old.container.role]
        conninfo, path = listed_conninfo(hosts), f"libpq host list {','.join(hosts)} (PgBouncer is not enabled)"
    writers = Writers(session, standby, run)
    say(f"writer: committing numbered rows through {path}, from {standby}'s container")
    writers.start("w", conninfo)
    if kind == "zombie":
        # A client that kept the old primary's address: what a split brain would feed.
        writers.start("z", f"host={old.container.address} port=5432 user=experdba dbname={DRILL_DB} connect_timeout=1")
    killed_at = promoted_at = lost_quorum_at = quorum_back_at = None
    notes: list[str] = []
    try:
        if not wait_for(lambda: count_rows(old, run) >= 50, 30, 0.2):
            raise AtelierError(f"the writer committed fewer than 50 rows on {primary} in 30 s; nothing was "
                               "changed (can experdba log in over the network? `inv db.replication`)")
        if kind == "switchover":
            (patroni.switchover if under_patroni else switchover)(session, standby, say)
        elif kind == "failover" and auto:
            say(f"killing {primary}'s container (docker kill); Patroni promotes on its own")
            killed_at = kill(session.engine, matrix, primary)
            if not wait_for(lambda: promoted(new), PATRONI_TIMINGS["ttl"] * 4, 0.1):
                raise AtelierError(f"Patroni did not promote {standby} in {PATRONI_TIMINGS['ttl'] * 4} s")
            promoted_at = time.time()
        elif kind == "failover":
            say(f"killing {primary}'s container (docker kill)")
            killed_at = kill(session.engine, matrix, primary)
            (patroni.failover if under_patroni else failover)(session, standby, say)
            promoted_at = time.time()
        elif kind == "zombie":
            promoted_at, notes = freeze_and_thaw(session, old, new, pause_seconds, say)
        elif kind == "dcs-loss":
            lost_quorum_at, quorum_back_at, notes = lose_the_dcs(session, pair, failsafe, say)
        elif kind == "partition":
            cut = cut or network_cut(session, primary)
            say(f"cutting {primary} off: {cut.how}")
            killed_at = time.time()
            cut.cut()
            if under_patroni:
                say(f"waiting for Patroni to promote {standby} (the leader lock expires)")
                if not wait_for(lambda: promoted(new), PATRONI_TIMINGS["ttl"] * 4, 0.1):
                    raise AtelierError(f"Patroni did not promote {standby} in {PATRONI_TIMINGS['ttl'] * 4} s")
            else:
                failover(session, standby, say)
            promoted_at = time.time()
        # Let the writer go on against the primary for a while.
        serving = new if promoted(new) else old
        after_change = count_rows(serving, run)
        wait_for(lambda: count_rows(serving, run) >= after_change + 50, 30, 0.2)
    finally:
        seen = writers.stop()
    if synchronous and kind == "switchover" and not under_patroni:
        # The old primary follows now; the name it waited for would mean nothing to it.
        old.run("ALTER SYSTEM RESET synchronous_standby_names;\nSELECT pg_reload_conf();",
                what="resetting synchronous_standby_names")
    if synchronous and under_patroni:
        patroni.set_synchronous(session, pair, False, say)
    commits = seen["w"] + seen.get("z", [])
    now_primary = new if promoted(new) else old
    present = {r["n"] for r in now_primary.rows(f"SELECT n FROM {DRILL_TABLE} WHERE run = '{run}'", db=DRILL_DB,
                                                what="counting the rows")}
    addresses = {matrix.container(n).address: n for n in (standby, primary)}
    if kind == "dcs-loss":
        report = account(kind, primary, now_primary.name, is_sync, commits, present, addresses)
        report.writes_after_dcs_loss = last_before_gap(commits, lost_quorum_at) if lost_quorum_at else None
        report.dcs_back_to_write = first_after(commits, quorum_back_at) if quorum_back_at else None
    else:
        report = account(kind, primary, standby, is_sync, commits, present, addresses, killed_at, promoted_at)
    if kind == "partition" and killed_at is not None:
        report.cut, report.cut_to_write, report.killed_to_write = cut.how, report.killed_to_write, None
        report.cut_to_promoted, report.killed_to_promoted = report.killed_to_promoted, None
        report.healed_to_streaming, report.rejoined = heal_and_rejoin(session, cut, old, new, say)
    if kind == "zombie" and promoted_at is not None:
        report.zombie_writes = zombie_writes(commits, old.container.address, promoted_at)
        report.zombie_writes_pooled = zombie_writes(seen["w"], old.container.address, promoted_at)
    names = {"w": "the pool's client" if matrix.settings.pgbouncer else "the host-list client",
             "z": f"a client that kept {primary}'s address"}
    report.reached = {names[w]: reached(found, addresses) for w, found in seen.items()}
    report.mode, report.path, report.notes, report.run = mode, path, notes, run
    return report


def network_cut(session, name: str) -> Cut:
    engine, env = session.engine, session.matrix
    node = getattr(existing(engine, env, name), "atelier_node", "")
    where = f" through node {node}'s engine" if node else ""
    return Cut(f"{name}'s container disconnected from network {env.network}{where}",
               lambda: disconnect(engine, env, name), lambda: reconnect(engine, env, name))


def answers(server: Server) -> bool:
    try:
        server.state()
        return True
    except Exception:  # noqa: BLE001 - not reachable yet: ask again
        return False


def heal_and_rejoin(session, cut: Cut, old: Server, new: Server, say) -> tuple[float | None, str]:
    """Heal the cut, then bring the old primary back as a standby of the new
    one (pg_rewind; Patroni's own rejoin under Patroni)."""
    say(f"healing the cut ({cut.how})")
    cut.heal()
    healed_at = time.monotonic()
    session.reconnect()  # connections made before the cut may hang on it
    if not wait_for(lambda: answers(old), 90, 0.5):
        return None, f"{old.name} did not answer over SSH within 90 s of the heal; `inv db.rejoin -t {old.name}`"
    if session.matrix.settings.patroni:
        patroni.rejoin(session, old.name, say)
    else:
        def refuse(question, refusal):
            raise AtelierError(refusal)

        rejoin(session, old.name, say, refuse)
    if not wait_for(lambda: old.state().receiver == "streaming", 60, 0.5):
        return None, f"{old.name} rejoined but does not stream from {new.name}"
    return time.monotonic() - healed_at, f"{old.name} streams from {new.name} again"


def make_synchronous(session, pair, old: Server, new: Server, say) -> None:
    if session.matrix.settings.patroni:
        patroni.set_synchronous(session, pair, True, say)
        return
    slot = session.matrix.replication_slot(new.container)
    say(f"making {new.name} a synchronous standby of {old.name}")
    old.run(f"ALTER SYSTEM SET synchronous_standby_names = '\"{slot}\"';\nSELECT pg_reload_conf();",
            what="setting synchronous_standby_names")
    if not wait_for(lambda: any(r["sync_state"] == "sync" for r in old.rows(
            "SELECT sync_state FROM pg_stat_replication")), 30, 0.2):
        raise AtelierError(f"{new.name} did not become a synchronous standby of {old.name} in 30 s")


def freeze_and_thaw(session, old: Server, new: Server, pause_seconds: float | None, say) -> tuple[float, list[str]]:
    """`docker pause` the primary past the leader lock's TTL, let the other
    member take over (Patroni on its own; in plain mode atelier's failover,
    which can only mark the frozen server), then thaw it."""
    matrix = session.matrix
    container = existing(session.engine, matrix, old.name)
    seconds = pause_seconds or PATRONI_TIMINGS["ttl"] + 5
    say(f"freezing {old.name} (docker pause) for {seconds:.0f} s")
    container.pause()
    paused_at = time.time()
    notes = []
    try:
        if matrix.settings.patroni:
            if not wait_for(lambda: promoted(new), seconds + PATRONI_TIMINGS["ttl"] * 3, 0.1):
                raise AtelierError(f"Patroni did not promote {new.name} while {old.name} was frozen")
        else:
            failover(session, new.name, say)  # atelier's own: it can mark a frozen server, not stop it
            notes.append(f"plain mode: nothing could stop {old.name}'s server while it was frozen; the fence "
                         "marker only keeps it down at its next boot, so it took writes again when thawed")
        promoted_at = time.time()
        remaining = seconds - (promoted_at - paused_at)
        if remaining > 0:
            time.sleep(remaining)
    finally:
        say(f"thawing {old.name} (docker unpause)")
        container.unpause()
    # Give the thawed server the time a client would: a few seconds of writes.
    time.sleep(5)
    if not matrix.settings.patroni:
        # End the split brain the drill made: the thawed server is killed and
        # stays fenced until `inv db.rejoin` rewinds it.
        say(old.fence_through_engine())
        notes.append(f"{old.name} is fenced now: `inv db.rejoin -t {old.name}` rewinds it")
    return promoted_at, notes


def lose_the_dcs(session, pair, failsafe: bool, say) -> tuple[float, float, list[str]]:
    """Stop all etcd members but one (no quorum), watch, bring them back;
    with `failsafe`, under Patroni's failsafe_mode for the drill's length."""
    matrix = session.matrix
    members = matrix.etcd_members
    if len(members) < 3:
        raise AtelierError("db.drill dcs-loss stops two of three etcd members; ATELIER_ETCD_MEMBERS is 1 here")
    stopped = [existing(session.engine, matrix, m.name) for m in members[1:]]
    if failsafe:
        patroni.set_config(session, pair, "failsafe_mode", True, say)
        time.sleep(PATRONI_TIMINGS["loop_wait"] * 2)  # every member has read it
    try:
        say(f"stopping {', '.join(m.name for m in members[1:])}: etcd has no quorum")
        for container in stopped:
            container.stop(timeout=5)
        lost_at = time.time()
        wait = PATRONI_TIMINGS["ttl"] * 2
        say(f"watching the writer for {wait} s")
        time.sleep(wait)
    finally:
        say(f"starting {', '.join(m.name for m in members[1:])} again")
        for container in stopped:
            container.start()
    back_at = time.time()
    time.sleep(PATRONI_TIMINGS["ttl"])
    if failsafe:
        patroni.set_config(session, pair, "failsafe_mode", False, say)
        notes = ["failsafe_mode was on: the leader, still reaching every member's REST API, kept its role "
                 "without etcd"]
    else:
        notes = ["failsafe_mode is off (Patroni's default): without etcd's quorum the leader cannot renew its "
                 "lock and demotes itself to read-only; --failsafe drills it on (a leader that still reaches "
                 "every member stays primary)"]
    return lost_at, back_at, notes
