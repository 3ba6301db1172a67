"""db.report: a server's health in lines of value and level (ok, warn,
crit), with the expert note's targets (seed 003) as the defaults.

One SSH round trip per server: a shell script runs the cluster-wide query,
then the per-database one in each database, and prints one JSON object per
line. Turning those facts into report lines is pure (`report_lines`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from atelier.dba.replication import REPLICATION_SQL, human_bytes, lag_level
from atelier.dba.server import Server, psql_local

# The note's targets.
HIT_OK, HIT_CRIT = 99.0, 95.0               # cache hit ratio, %
CONN_OK, CONN_CRIT = 70.0, 85.0             # connection use, % of max_connections
LONG_QUERY_SECONDS = 300                    # queries running longer than this
HIT_MIN_BLOCKS = 100_000                   # fewer block accesses than this: too few to judge
DEAD_WARN, DEAD_CRIT = 0.2, 0.5             # dead / live tuples (autovacuum's 0.2 scale factor)
XID_WARN, XID_CRIT = 1_000_000_000, 1_600_000_000  # of the 2^31 before wraparound
TOP = 5


@dataclass(frozen=True)
class Line:
    server: str
    check: str
    subject: str
    value: str
    level: str      # ok | warn | crit | - (a fact, not judged)
    detail: str = ""


CLUSTER_SQL = f"""
SELECT json_build_object(
  'kind', 'cluster',
  'version', current_setting('server_version_num')::int,
  'in_recovery', pg_is_in_recovery(),
  'max_connections', current_setting('max_connections')::int,
  'connections', (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
  'databases', (SELECT json_agg(json_build_object(
       'db', datname, 'hit', blks_hit, 'read', blks_read) ORDER BY datname)
     FROM pg_stat_database WHERE datname IS NOT NULL AND datname NOT IN ('template0', 'template1')),
  'xid_age', (SELECT json_agg(json_build_object('db', datname, 'age', age(datfrozenxid)) ORDER BY datname)
     FROM pg_database WHERE datallowconn),
  'long', (SELECT json_agg(json_build_object(
       'pid', pid, 'db', datname, 'user', usename, 'seconds', extract(epoch FROM now() - query_start)::int,
       'query', left(regexp_replace(query, '\\s+', ' ', 'g'), 100)) ORDER BY query_start)
     FROM pg_stat_activity
     WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'
       AND now() - query_start > make_interval(secs => :long)),
  'blocked', (SELECT json_agg(json_build_object(
       'pid', w.pid, 'db', w.datname, 'user', w.usename,
       'seconds', extract(epoch FROM now() - coalesce(w.state_change, w.query_start))::int,
       'query', left(regexp_replace(w.query, '\\s+', ' ', 'g'), 100),
       'blockers', (SELECT json_agg(json_build_object(
            'pid', b.pid, 'user', b.usename, 'state', b.state,
            'query', left(regexp_replace(b.query, '\\s+', ' ', 'g'), 100)))
          FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(w.pid)))))
     FROM pg_stat_activity w WHERE cardinality(pg_blocking_pids(w.pid)) > 0),
  'replication', (SELECT json_agg(r) FROM ({REPLICATION_SQL}) r)
)"""

DATABASE_SQL = f"""
SELECT json_build_object(
  'kind', 'database', 'db', current_database(),
  'unused_indexes', (SELECT json_agg(json_build_object(
       'index', format('%I.%I', i.schemaname, i.indexrelname), 'table', format('%I.%I', i.schemaname, i.relname),
       'size', pg_relation_size(i.indexrelid)) ORDER BY pg_relation_size(i.indexrelid) DESC)
     FROM pg_stat_user_indexes i JOIN pg_index x ON x.indexrelid = i.indexrelid
     WHERE i.idx_scan = 0 AND NOT x.indisunique AND NOT x.indisprimary),
  'tables', (SELECT json_agg(t) FROM (
       SELECT format('%I.%I', schemaname, relname) AS table, pg_total_relation_size(relid) AS size,
              n_live_tup AS live, n_dead_tup AS dead,
              greatest(last_vacuum, last_autovacuum)::timestamptz(0)::text AS vacuumed,
              greatest(last_analyze, last_autoanalyze)::timestamptz(0)::text AS analyzed
         FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC LIMIT {TOP}) t));
-- The view exists only where the extension was created: psql decides before
-- the server parses a query that names it.
SELECT to_regclass('pg_stat_statements') IS NOT NULL AS has_statements \\gset
\\if :has_statements
SELECT json_build_object('kind', 'statements', 'db', current_database(), 'statements', (SELECT json_agg(s) FROM (
        SELECT calls, round(total_exec_time::numeric, 1) AS total_ms, round(mean_exec_time::numeric, 2) AS mean_ms,
               left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query
          FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         ORDER BY total_exec_time DESC LIMIT {TOP}) s));
\\endif
"""

DATABASES_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"


def report_command(long_seconds: int) -> str:
    """One shell script: cluster facts, then each database's, a JSON object per line."""
    def heredoc(sql: str) -> str:
        return f"<<'ATELIER_SQL'\n{sql};\nATELIER_SQL\n"

    return (psql_local("postgres", variables={"long": int(long_seconds)}) + " " + heredoc(CLUSTER_SQL)
            + f"for db in $({psql_local('postgres')} {heredoc(DATABASES_SQL)}); do\n"
            + "  " + psql_local('"$db"', db_is_shell=True) + f" <<'ATELIER_SQL'\n{DATABASE_SQL}\nATELIER_SQL\n"
            + "done\n")


def json_objects(text: str) -> list[dict]:
    """Every JSON object in psql's output, one after another (json_agg
    breaks lines inside an object)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        value, at = decoder.raw_decode(text, at)
        found.append(value)
    return found


def read_facts(server: Server, long_seconds: int = LONG_QUERY_SECONDS, **kw) -> tuple[dict, list[dict]]:
    kw.pop("out_stream", None)
    out = server.step("reading its statistics", report_command(long_seconds), hide="out", **kw).stdout
    objects = json_objects(out)
    cluster = next(o for o in objects if o["kind"] == "cluster")
    statements = {o["db"]: o["statements"] or [] for o in objects if o["kind"] == "statements"}
    databases = [{**o, "statements": statements.get(o["db"])} for o in objects if o["kind"] == "database"]
    return cluster, databases


# ---- levels ----------------------------------------------------------------------------------

def hit_level(ratio: float, blocks: int) -> str:
    if blocks < HIT_MIN_BLOCKS:
        return "-"
    if ratio > HIT_OK:
        return "ok"
    return "crit" if ratio < HIT_CRIT else "warn"


def connection_level(used_percent: float) -> str:
    if used_percent < CONN_OK:
        return "ok"
    return "crit" if used_percent > CONN_CRIT else "warn"


def dead_level(live: int, dead: int) -> str:
    if dead < 1000:
        return "ok"
    ratio = dead / max(1, live)
    return "crit" if ratio > DEAD_CRIT else "warn" if ratio > DEAD_WARN else "ok"


def xid_level(age: int) -> str:
    return "crit" if age > XID_CRIT else "warn" if age > XID_WARN else "ok"


def report_lines(server: str, cluster: dict, databases: list[dict],
                 long_seconds: int = LONG_QUERY_SECONDS) -> list[Line]:
    """Facts read from one server -> its report. Pure."""
    out: list[Line] = []

    def add(check, subject, value, level, detail=""):
        out.append(Line(server, check, subject, str(value), level, detail))

    role = "standby" if cluster["in_recovery"] else "primary"
    add("server", role, f"PostgreSQL {cluster['version'] // 10000}", "-")
    for d in cluster.get("databases") or []:
        blocks = d["hit"] + d["read"]
        ratio = 100.0 * d["hit"] / blocks if blocks else 100.0
        level = hit_level(ratio, blocks)
        add("cache hit", d["db"], f"{ratio:.2f}%", level,
            f"{blocks} block accesses" + (", too few to judge" if level == "-" else ""))
    used = 100.0 * cluster["connections"] / cluster["max_connections"]
    add("connections", "client backends", f"{cluster['connections']}/{cluster['max_connections']} ({used:.0f}%)",
        connection_level(used))
    if not cluster["in_recovery"]:
        standbys = [r for r in cluster.get("replication") or []]
        for r in standbys:
            who = r["standby"] or f"slot {r['slot']}"
            lag = r["lag_bytes"] if r["standby"] else r["retained_bytes"]
            add("replication", who, human_bytes(lag), lag_level(lag),
                r["state"] + (f", {r['sync_state']}" if r["sync_state"] else ""))
        if not standbys:
            add("replication", "standbys", "none", "-")
    longs = cluster.get("long") or []
    for q in longs:
        add("long query", f"pid {q['pid']} ({q['user']}@{q['db']})", f"{q['seconds']} s", "warn", q["query"])
    if not longs:
        add("long query", f"over {long_seconds} s", "none", "ok")
    blocked = cluster.get("blocked") or []
    for w in blocked:
        blockers = w.get("blockers") or []
        by = ", ".join(f"pid {b['pid']} ({b['user']}, {b['state']}): {b['query']}" for b in blockers)
        add("blocked", f"pid {w['pid']} ({w['user']}@{w['db']})", f"{w['seconds']} s", "warn",
            f"{w['query']}  <- blocked by {by}")
    blockers: dict[int, tuple[dict, list[int]]] = {}
    for w in blocked:
        for b in w.get("blockers") or []:
            blockers.setdefault(b["pid"], (b, []))[1].append(w["pid"])
    for pid, (b, waiting) in sorted(blockers.items()):
        add("blocking", f"pid {pid} ({b['user']}, {b['state']})", f"blocks {len(waiting)}", "warn",
            f"{b['query']}  -> blocks pid {', '.join(map(str, waiting))}")
    if not blocked:
        add("blocked", "sessions", "none", "ok")
    for x in cluster.get("xid_age") or []:
        add("xid age", x["db"], f"{x['age']:,}", xid_level(x["age"]), "of 2,147,483,648 before wraparound")
    for d in databases:
        db = d["db"]
        statements = d.get("statements")
        if statements is None:
            add("top statements", db, "n/a", "-", "CREATE EXTENSION pg_stat_statements to see them")
        for s in statements or []:
            add("top statements", db, f"{s['total_ms']} ms", "-", f"{s['calls']} calls, {s['mean_ms']} ms each: {s['query']}")
        for i in d.get("unused_indexes") or []:
            add("unused index", f"{db}.{i['index']}", human_bytes(i["size"]), "warn", f"on {i['table']}, never scanned")
        for t in d.get("tables") or []:
            add("table", f"{db}.{t['table']}", f"{t['dead']} dead / {t['live']} live", dead_level(t["live"], t["dead"]),
                f"{human_bytes(t['size'])}; vacuumed {t['vacuumed'] or 'never'}; analyzed {t['analyzed'] or 'never'}")
    return out


def worst(lines: list[Line]) -> str:
    levels = {line.level for line in lines}
    return "crit" if "crit" in levels else "warn" if "warn" in levels else "ok"


def as_json(lines: list[Line]) -> list[dict]:
    return [asdict(line) for line in lines]
