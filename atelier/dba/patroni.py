"""Pairs under Patroni (ATELIER_HA=patroni): Patroni's own view of each
cluster, and role changes asked of Patroni with patronictl in a member (the
tool a DBA runs at work), never done by hand beside it. What PostgreSQL
itself says (pg_is_in_recovery, the WAL receiver) confirms each change."""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass

from atelier.core.errors import AtelierError
from atelier.core.model import Pair as ModelPair
from atelier.dba.replication import Pair
from atelier.dba.server import Server, wait_for
from atelier.engine.containers import existing, start_and_wait_for_sshd

PATRONICTL = "patronictl -c /etc/atelier/patroni.yml"


@dataclass(frozen=True)
class Member:
    name: str
    role: str  # Patroni's word, lower case: leader, replica, sync standby
    state: str  # running, streaming, stopped, starting, ...
    timeline: int | None
    lag_mb: float | None

    @property
    def leader(self) -> bool:
        return self.role == "leader"


@dataclass(frozen=True)
class ClusterView:
    scope: str
    members: tuple[Member, ...]
    asked: str  # the member whose patronictl answered

    @property
    def leader(self) -> Member | None:
        return next((m for m in self.members if m.leader), None)

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


def parse_members(text: str) -> tuple[Member, ...]:
    """`patronictl list -f json` (3.0 to 4.x) -> its members. Pure."""
    members = []
    for row in json.loads(text or "[]"):
        lag = row.get("Lag in MB")
        tl = row.get("TL")
        members.append(Member(row["Member"], str(row.get("Role", "")).lower(), str(row.get("State", "")),
                              int(tl) if str(tl).isdigit() else None,
                              float(lag) if isinstance(lag, (int, float)) else None))
    return tuple(members)


VIEW_COLUMNS = ("cluster", "member", "role", "state", "TL", "lag MB")


def view_rows(view: ClusterView) -> list[tuple]:
    return [(view.scope, m.name, m.role, m.state, "-" if m.timeline is None else m.timeline,
             "-" if m.lag_mb is None else f"{m.lag_mb:g}") for m in view.members]


# ---- which pair, asked where -------------------------------------------------------------------

def require_patroni(session, what: str) -> None:
    if not session.matrix.settings.patroni:
        raise AtelierError(f"{what} is a Patroni task and this environment's pairs are plain (ATELIER_HA=plain); "
                           "set ATELIER_HA=patroni in .env and `inv up`, or use the plain tasks")


def pair_of_member(session, name: str) -> ModelPair:
    """The Patroni cluster (pair) `name` is a member of, or one line."""
    matrix = session.matrix
    pair = matrix.pair_of(matrix.container(name))
    if pair is None:
        members = ", ".join(m.name for p in matrix.pairs for m in p.members) or "none in this selection"
        raise AtelierError(f"{name} is not a member of a Patroni cluster; members: {members}")
    return pair


def partner(session, name: str) -> str:
    """The other member of `name`'s cluster."""
    return next(m.name for m in pair_of_member(session, name).members if m.name != name)


def _answers(session, name: str) -> bool:
    found = session.engine.container(session.matrix.project, name)
    if found is None:
        return False
    found.reload()
    return found.status == "running"


def patronictl(session, pair: ModelPair, args: str, hide=True, prefer: str = ""):
    """patronictl in a member that answers (`prefer` first), as postgres."""
    names = [m.name for m in pair.members]
    names.sort(key=lambda n: n != prefer)
    tried = []
    for name in names:
        if not _answers(session, name):
            tried.append(f"{name} (container not running)")
            continue
        result = session.context(name, "postgres").run(f"{PATRONICTL} {args}", hide=hide, warn=True,
                                                       in_stream=False)
        return name, result
    raise AtelierError(f"no member of {pair.name} can run patronictl: {', '.join(tried)}")


def checked(result, what: str):
    """A patronictl run that failed, as one line with the end of its words."""
    if result.exited != 0:
        raise AtelierError(f"{what} failed: {(result.stderr or result.stdout).strip()[-300:]}")
    return result


def cluster_view(session, pair: ModelPair, prefer: str = "") -> ClusterView:
    asked, result = patronictl(session, pair, f"list -f json {shlex.quote(session.matrix.patroni_scope(pair))}",
                               prefer=prefer)
    checked(result, f"patronictl list in {asked}")
    return ClusterView(session.matrix.patroni_scope(pair), parse_members(result.stdout), asked)


def engine_view(engine, env, pair: ModelPair) -> ClusterView | None:
    """Patroni's view through the engine (no SSH: `inv status`), or None."""
    scope = env.patroni_scope(pair)
    for member in pair.members:
        found = engine.container(env.project, member.name)
        if found is None or found.status != "running":
            continue
        result = found.exec_run(["runuser", "-u", "postgres", "--", "sh", "-c",
                                 f"{PATRONICTL} list -f json {shlex.quote(scope)}"], demux=True)
        if result.exit_code == 0:
            return ClusterView(scope, parse_members((result.output[0] or b"").decode()), member.name)
    return None


def summary(view: ClusterView | None, pair: ModelPair) -> str:
    """One line of a cluster for `inv status`."""
    if view is None:
        return f"patroni {pair.name}: no member answers (`inv up`)"
    parts = [f"{m.role} {m.name} ({m.state}, TL {m.timeline if m.timeline is not None else '-'}"
             + (f", lag {m.lag_mb:g} MB" if m.lag_mb is not None else "") + ")" for m in view.members]
    if view.leader is None:
        parts.insert(0, "NO LEADER")
    return f"patroni {view.scope}: " + "; ".join(parts)


def wait_for_leader(session, pair: ModelPair, name: str, seconds: float) -> ClusterView | None:
    """Until Patroni names `name` leader and PostgreSQL there takes writes."""
    def settled():
        try:
            view = cluster_view(session, pair, prefer=name)
        except AtelierError:
            return None
        leader = view.leader
        if leader and leader.name == name and leader.state == "running" and Server(session, name).state().primary:
            return view
        return None
    return wait_for(settled, seconds, 0.3)


def wait_for_replica(session, pair: ModelPair, name: str, seconds: float) -> bool:
    """Until `name` is in recovery and streams (PostgreSQL's own word)."""
    return bool(wait_for(lambda: Server(session, name).state().receiver == "streaming", seconds, 0.5))


# ---- role changes --------------------------------------------------------------------------------

def _check_candidate(session, name: str, view: ClusterView, what: str) -> Member:
    member = view.member(name)
    if member is None:
        raise AtelierError(f"{name} is not in Patroni's view of {view.scope} (members: "
                           f"{', '.join(m.name for m in view.members) or 'none'}); is atelier-patroni running there?")
    if member.leader:
        raise AtelierError(f"{name} is the leader of {view.scope} already; {what} takes the replica to promote")
    return member


def _hand_over(session, pair: ModelPair, view: ClusterView, action: str, name: str, say) -> None:
    """`patronictl switchover|failover --candidate name`, then wait until
    Patroni and PostgreSQL agree that `name` leads."""
    say(f"patronictl {action} --candidate {name} {view.scope}")
    _, result = patronictl(session, pair, f"{action} --candidate {shlex.quote(name)} --force "
                           f"{shlex.quote(view.scope)}", prefer=name)
    checked(result, f"patronictl {action}")
    if not wait_for_leader(session, pair, name, 60):
        raise AtelierError(f"Patroni did not make {name} the leader of {view.scope} in 60 s (`inv db.replication`)")


def switchover(session, name: str, say) -> Pair:
    """Patroni's switchover to `name`: the leader stops cleanly, `name` is
    promoted, the old leader follows it."""
    pair = pair_of_member(session, name)
    view = cluster_view(session, pair)
    _check_candidate(session, name, view, "db.switchover")
    if view.leader is None:
        raise AtelierError(f"{view.scope} has no leader, so there is nothing to switch over from; "
                           f"`inv db.failover -t {name}` asks Patroni for a failover")
    old = view.leader.name
    _hand_over(session, pair, view, "switchover", name, say)
    say(f"{name} leads {view.scope}; waiting for {old} to stream from it")
    if not wait_for_replica(session, pair, old, 90):
        raise AtelierError(f"{old} does not stream from {name} after 90 s (journalctl -u atelier-patroni there)")
    return Pair(old, name)


def failover(session, name: str, say) -> Pair:
    """Patroni's manual failover to `name`, whether or not the leader answers."""
    pair = pair_of_member(session, name)
    view = cluster_view(session, pair, prefer=name)
    _check_candidate(session, name, view, "db.failover")
    _hand_over(session, pair, view, "failover", name, say)
    return Pair(partner(session, name), name)


REWIND_LINES = ("journalctl -u atelier-patroni --since {since} --no-pager -o cat 2>/dev/null "
                "| grep -E 'running pg_rewind from [a-z]|pg_rewind exit code|^pg_rewind: |reinitializ' | tail -6")


def rejoin(session, name: str, say, seconds: float = 180) -> Pair:
    """A stopped or killed member comes back: start its container, and wait
    while Patroni rewinds it (pg_rewind) and makes it follow the leader."""
    pair = pair_of_member(session, name)
    since = int(time.time()) - 5
    start_and_wait_for_sshd(session.engine, session.matrix, name, say)
    view = cluster_view(session, pair)
    leader = view.leader
    if leader is None:
        raise AtelierError(f"{view.scope} has no leader for {name} to follow; `inv db.replication` shows Patroni's view")
    if leader.name == name:
        raise AtelierError(f"{name} is the leader of {view.scope}; db.rejoin brings back a member that is not")
    say(f"waiting for Patroni to bring {name} back as a replica of {leader.name}")
    if not wait_for_replica(session, pair, name, seconds):
        raise AtelierError(f"{name} does not stream from {leader.name} after {seconds:.0f} s; if pg_rewind could "
                           f"not rewind it, `inv db.reseed -t {name}` asks Patroni to copy it afresh")
    # The system journal is root's to read: asked through the engine.
    found = existing(session.engine, session.matrix, name).exec_run(
        ["sh", "-c", REWIND_LINES.format(since=f"@{since}")])
    lines = found.output.decode(errors="replace").strip().splitlines()
    for line in lines:
        say("patroni: " + re.sub(r"^\d{4}-\d\d-\d\d [\d:,.]+ [A-Z]+: ", "", line.strip()))
    if not lines:
        say(f"patroni: no rewind: {name} had nothing the leader lacks")
    return Pair(name, leader.name)


def reinit(session, name: str, say) -> None:
    """Patroni's reinit: `name`'s data thrown away and copied from the leader."""
    pair = pair_of_member(session, name)
    view = cluster_view(session, pair)
    _check_candidate(session, name, view, "db.reseed")
    say(f"patronictl reinit {view.scope} {name}")
    _, result = patronictl(session, pair, f"reinit --force --wait {shlex.quote(view.scope)} {shlex.quote(name)}",
                           prefer=name)
    checked(result, "patronictl reinit")
    if not wait_for_replica(session, pair, name, 300):
        raise AtelierError(f"{name} was reinitialized but does not stream after 300 s")


def set_config(session, pair: ModelPair, key: str, on: bool, say) -> None:
    """One of the cluster's switches in Patroni's dynamic configuration."""
    scope = session.matrix.patroni_scope(pair)
    word = "true" if on else "false"
    say(f"patronictl edit-config -s {key}={word} {scope}")
    _, result = patronictl(session, pair, f"edit-config --force -q -s {key}={word} {shlex.quote(scope)}")
    checked(result, "patronictl edit-config")


def set_synchronous(session, pair: ModelPair, on: bool, say) -> None:
    """Patroni's synchronous_mode for the cluster (it names the sync standby)."""
    scope = session.matrix.patroni_scope(pair)
    set_config(session, pair, "synchronous_mode", on, say)
    if on and not wait_for(lambda: any(m.role == "sync standby" for m in cluster_view(session, pair).members),
                           30, 0.5):
        raise AtelierError(f"Patroni named no synchronous standby in {scope} in 30 s")
