"""db.tune: settings derived from a server's memory, cpus, storage and
workload, the expert note's rules (seed 003) as the starting point.

`propose` is pure: machine facts in, settings with their reasons out. The
side effects (reading the container's limits and the server's settings,
ALTER SYSTEM, the record that --reset undoes) are in `apply`, `reset` and
`read_machine`, which run in the server (a Server)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from atelier.core.errors import AtelierError, choice_error
from atelier.core.quote import sql_literal
from atelier.dba.server import Server

KB, MB, GB, TB = 1024, 1024 ** 2, 1024 ** 3, 1024 ** 4
UNITS = {"kb": KB, "mb": MB, "gb": GB, "tb": TB, "k": KB, "m": MB, "g": GB, "t": TB, "b": 1, "": 1}
STORAGES = ("ssd", "hdd")
WORKLOADS = ("oltp", "olap", "mixed")
# Where db.tune keeps what it changed, in the data directory: --reset reads it.
RECORD = "atelier-tune.json"


def parse_memory(text: str) -> int:
    """'32GB', '512MB', '32G', '1.5TB' -> bytes; anything else one line."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = found.group(2).lower() if found else None
    if not found or unit not in UNITS:
        raise AtelierError(f"--memory {text} is not a size; valid: a number with kB, MB, GB or TB, like 32GB")
    value = int(float(found.group(1)) * UNITS[unit])
    if value < 64 * MB:
        raise AtelierError(f"--memory {text} is below 64MB; PostgreSQL needs more to be tuned")
    return value


def pg_size(n: int) -> str:
    """Bytes as PostgreSQL writes them: the largest unit that divides exactly."""
    for unit, size in (("TB", TB), ("GB", GB), ("MB", MB), ("kB", KB)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return f"{max(1, n // KB)}kB"


def nearest_power_of_two_mb(n: int) -> int:
    mb = max(1, n / MB)
    return int(2 ** round(math.log2(mb))) * MB


def setting_bytes(text: str) -> int | None:
    """A memory setting as SHOW prints it ('128MB', '8kB', '4GB') -> bytes."""
    found = re.fullmatch(r"(-?\d+)\s*(kB|MB|GB|TB|B)?", text.strip())
    if not found:
        return None
    return int(found.group(1)) * {"kB": KB, "MB": MB, "GB": GB, "TB": TB, "B": 1, None: 1}[found.group(2)]


@dataclass(frozen=True)
class Machine:
    memory: int          # bytes
    cpus: int
    storage: str = "ssd"
    workload: str = "oltp"
    connections: int = 100


@dataclass(frozen=True)
class Proposal:
    name: str
    value: str
    why: str
    memory: bool = False  # compared by size, not by text


def check_choices(storage: str, workload: str, connections: int | None) -> None:
    if storage not in STORAGES:
        raise choice_error("storage", storage, STORAGES)
    if workload not in WORKLOADS:
        raise choice_error("workload", workload, WORKLOADS)
    if connections is not None and connections < 1:
        raise AtelierError(f"--connections {connections} must be 1 or more")


def propose(m: Machine, set_connections: bool = False) -> list[Proposal]:
    """The note's rules: for 32 GB, 8 cpus, ssd and oltp they give its values."""
    mb = m.memory
    shared = mb // 4
    out = [Proposal("shared_buffers", pg_size(shared - shared % MB), "25% of memory", True),
           Proposal("effective_cache_size", pg_size((mb * 3 // 4) - (mb * 3 // 4) % MB),
                    "75% of memory: the OS cache PostgreSQL can count on", True)]
    # Each connection may sort or hash several times at once: fewer at a time for
    # oltp (many short queries), more for olap (few large ones).
    share = {"oltp": m.connections * 3, "mixed": m.connections * 2, "olap": max(1, m.connections // 2)}[m.workload]
    work = max(4 * MB, nearest_power_of_two_mb((mb - shared) // share))
    out.append(Proposal("work_mem", pg_size(work),
                        f"memory beyond shared_buffers over {share} sorts ({m.connections} connections, {m.workload})",
                        True))
    cap = 4 * GB if m.workload == "olap" else 2 * GB
    out.append(Proposal("maintenance_work_mem", pg_size(min(cap, max(64 * MB, nearest_power_of_two_mb(mb // 16)))),
                        f"1/16 of memory, at most {pg_size(cap)} (VACUUM, CREATE INDEX)", True))
    out.append(Proposal("wal_buffers", pg_size(min(256 * MB, max(MB, nearest_power_of_two_mb(shared // 32)))),
                        "1/32 of shared_buffers, at most 256MB", True))
    out.append(Proposal("checkpoint_completion_target", "0.9", "spread checkpoint writes over 90% of the interval"))
    big = m.workload == "olap"
    out.append(Proposal("max_wal_size", "16GB" if big else "4GB",
                        "fewer forced checkpoints under " + ("bulk loads" if big else "write bursts"), True))
    out.append(Proposal("min_wal_size", "4GB" if big else "1GB", "WAL segments kept for reuse", True))
    cpus = max(1, m.cpus)
    per_gather = max(1, cpus // 2) if big else min(4, max(1, cpus // 2))
    out.append(Proposal("max_worker_processes", str(max(8, cpus)), f"{cpus} cpus (at least the default 8)"))
    out.append(Proposal("max_parallel_workers", str(cpus), f"one per cpu ({cpus})"))
    out.append(Proposal("max_parallel_workers_per_gather", str(per_gather),
                        f"half the cpus{'' if big else ', at most 4 for ' + m.workload}"))
    out.append(Proposal("max_parallel_maintenance_workers", str(min(4, max(1, cpus // 2))), "half the cpus, at most 4"))
    ssd = m.storage == "ssd"
    out.append(Proposal("effective_io_concurrency", "200" if ssd else "2",
                        "SSDs serve many requests at once" if ssd else "one disk head"))
    out.append(Proposal("random_page_cost", "1.1" if ssd else "4.0",
                        "random reads cost about what sequential ones do on SSD" if ssd else "seeks are slow on HDD"))
    if set_connections:
        out.append(Proposal("max_connections", str(m.connections), "--connections"))
    return out


def differs(p: Proposal, current: str) -> bool:
    if p.memory:
        return setting_bytes(current) != setting_bytes(p.value)
    try:
        return float(current) != float(p.value)
    except ValueError:
        return current != p.value


# ---- in the server -------------------------------------------------------------------------------

MACHINE_COMMAND = r"""
mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || echo max)
host=$(awk '/^MemTotal:/ {printf "%.0f\n", $2 * 1024}' /proc/meminfo)
case "$mem" in max|'') mem=$host ;; esac
[ "$mem" -gt "$host" ] 2>/dev/null && mem=$host
cpus=$(nproc)
if read -r quota period < /sys/fs/cgroup/cpu.max 2>/dev/null && [ "$quota" != max ]; then
    cpus=$(( (quota + period - 1) / period ))
fi
echo "$mem $cpus"
"""


def read_machine(server: Server, **kw) -> tuple[int, int]:
    """The container's memory and cpus: its cgroup limits, else the host's."""
    words = server.step("reading the container's limits", MACHINE_COMMAND, hide=True, **kw).stdout.split()
    return int(words[0]), max(1, int(words[1]))


def current_settings(server: Server, names: list[str], **kw) -> dict[str, dict]:
    listed = ", ".join(sql_literal(n) for n in names)
    rows = server.rows(f"SELECT name, current_setting(name) AS value, pending_restart, context "
                       f"FROM pg_settings WHERE name IN ({listed})", what="reading its settings", **kw)
    return {r["name"]: r for r in rows}


def auto_conf_values(server: Server, names: list[str], **kw) -> dict[str, str]:
    """What ALTER SYSTEM has set for `names` (postgresql.auto.conf), before atelier."""
    listed = ", ".join(sql_literal(n) for n in names)
    rows = server.rows(f"SELECT name, setting FROM pg_file_settings WHERE name IN ({listed}) "
                       "AND sourcefile LIKE '%postgresql.auto.conf' AND applied IS NOT NULL ORDER BY seqno",
                       what="reading postgresql.auto.conf", **kw)
    return {r["name"]: r["setting"] for r in rows}


def read_record(server: Server, **kw) -> dict[str, str | None]:
    raw = server.step("reading what db.tune applied", f'cat "$PGDATA/{RECORD}" 2>/dev/null || true',
                      hide=True, **kw).stdout.strip()
    return json.loads(raw) if raw else {}


def write_record(server: Server, record: dict, **kw) -> None:
    server.step("recording what it changes",
                f'cat > "$PGDATA/{RECORD}.new" && mv "$PGDATA/{RECORD}.new" "$PGDATA/{RECORD}"',
                stdin=json.dumps(record, indent=1, sort_keys=True) + "\n", **kw)


def apply(server: Server, changes: list[Proposal], **kw) -> list[str]:
    """ALTER SYSTEM each change and reload. The record keeps, for each
    setting, what postgresql.auto.conf held before atelier first changed
    it (None: nothing), so that --reset puts exactly that back. Returns the
    settings that wait for a restart."""
    names = [p.name for p in changes]
    record = read_record(server, **kw)
    before = auto_conf_values(server, names, **kw)
    for name in names:
        record.setdefault(name, before.get(name))
    write_record(server, record, **kw)
    statements = "".join(f"ALTER SYSTEM SET {p.name} = {sql_literal(p.value)};\n" for p in changes)
    server.run(statements + "SELECT pg_reload_conf();\n", what="ALTER SYSTEM", **kw)
    return pending_restart(server, names, **kw)


# wal_buffers' default (-1) means "1/32 of shared_buffers, within 64kB and
# one WAL segment". Taking an explicit value away flags it pending_restart
# even when the running value is what -1 gives, and a restart changes nothing.
WAL_BUFFERS_AS_DEFAULT_SQL = """
SELECT w.setting::bigint = least(greatest(s.setting::bigint / 32, 8),
                                 pg_size_bytes(current_setting('wal_segment_size')) / 8192)
       AND NOT EXISTS (SELECT FROM pg_file_settings f WHERE f.name = 'wal_buffers' AND f.applied IS NOT NULL)
       AS same
  FROM pg_settings w, pg_settings s WHERE w.name = 'wal_buffers' AND s.name = 'shared_buffers'"""


def pending_restart(server: Server, names: list[str], **kw) -> list[str]:
    if not names:
        return []
    pending = sorted(n for n, r in current_settings(server, names, **kw).items() if r["pending_restart"])
    if "wal_buffers" in pending and server.rows(WAL_BUFFERS_AS_DEFAULT_SQL, **kw)[0]["same"]:
        pending.remove("wal_buffers")
    return pending


def reset(server: Server, **kw) -> tuple[dict[str, str | None], list[str]]:
    """Put back what db.tune's record says postgresql.auto.conf held."""
    record = read_record(server, **kw)
    if not record:
        return {}, []
    statements = "".join(
        f"ALTER SYSTEM RESET {name};\n" if old is None else f"ALTER SYSTEM SET {name} = {sql_literal(old)};\n"
        for name, old in sorted(record.items()))
    server.run(statements + "SELECT pg_reload_conf();\n", what="ALTER SYSTEM RESET", **kw)
    server.step("removing the record", f'rm -f "$PGDATA/{RECORD}"', **kw)
    return record, pending_restart(server, sorted(record), **kw)


def restart(server: Server, **kw) -> None:
    server.restart("restarting PostgreSQL", **kw)


@dataclass
class TunePlan:
    """What db.tune shows for one server: the basis it tuned for, a row per
    setting (current, proposed, whether it changes and needs a restart)."""

    server: str
    basis: str
    rows: list[dict]
    changes: list[Proposal]

    def as_json(self) -> dict:
        return {"server": self.server, "basis": self.basis, "settings": self.rows}


def plan(server: Server, memory: int | None = None, cpus: int | None = None, storage: str = "ssd",
         workload: str = "oltp", connections: int | None = None) -> TunePlan:
    """The proposals for `server`: for the memory and cpus given, else its
    container's own (cgroup limits, else the host's); its max_connections
    unless `connections` is given (and then proposed too)."""
    found_memory, found_cpus = read_machine(server)
    settings = current_settings(server, ["max_connections"])
    machine = Machine(memory or found_memory, cpus or found_cpus, storage, workload,
                      connections or int(settings["max_connections"]["value"]))
    proposals = propose(machine, set_connections=connections is not None)
    now = current_settings(server, [p.name for p in proposals])
    changes = [p for p in proposals if differs(p, now[p.name]["value"])]
    basis = (f"{pg_size(machine.memory - machine.memory % MB)} memory{'' if memory else ' (found)'}, "
             f"{machine.cpus} cpus{'' if cpus else ' (found)'}, {storage}, {workload}, "
             f"{machine.connections} connections")
    rows = [{"setting": p.name, "current": now[p.name]["value"], "proposed": p.value,
             "change": p in changes, "restart": now[p.name]["context"] == "postmaster", "why": p.why}
            for p in proposals]
    return TunePlan(server.name, basis, rows, changes)
