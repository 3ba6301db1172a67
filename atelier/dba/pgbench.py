"""db.bench: pgbench in a server's container, direct or through PgBouncer,
at several client counts; results as CSV and a chart on this host.

pgbench runs beside the server (no network between them for `direct`);
through PgBouncer it crosses the atelier network to the pgbouncer service.
Latency p99 comes from pgbench's own per-transaction log; the most server
connections in use from sampling pg_stat_activity while it runs."""

from __future__ import annotations

import csv
import re
import shlex
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from atelier.core.errors import AtelierError, choice_error
from atelier.core.matrix import PGBOUNCER_PORT
from atelier.dba.server import Server

VIAS = ("direct", "pgbouncer")
SCRIPTS = ("tpcb-like", "select-only", "simple-update")
WORK = "/tmp/atelier-bench"


def parse_clients(text) -> list[int]:
    words = [w.strip() for w in str(text).split(",") if w.strip()]
    try:
        counts = [int(w) for w in words]
    except ValueError:
        counts = []
    if not counts or any(n < 1 or n > 5000 for n in counts):
        raise AtelierError(f"--clients {text} is not a list of client counts from 1 to 5000, like 10,50,500")
    return sorted(set(counts))


def parse_vias(text: str) -> list[str]:
    vias = [w.strip() for w in text.split(",") if w.strip()]
    for via in vias:
        if via not in VIAS:
            raise choice_error("--via", via, VIAS)
    if not vias:
        raise AtelierError(f"--via is empty; valid: {', '.join(VIAS)}")
    return vias


@dataclass
class Run:
    server: str
    via: str
    script: str
    clients: int
    seconds: int
    tps: float | None
    latency_avg_ms: float | None
    p99_ms: float | None
    transactions: int
    failed: int
    max_server_connections: int
    error: str


def connection_args(via: str, server: str, db: str) -> str:
    if via == "pgbouncer":
        return f"-h pgbouncer -p {PGBOUNCER_PORT} -U experdba {shlex.quote(f'{server}.{db}')}"
    return f"-h 127.0.0.1 -p 5432 -U experdba {shlex.quote(db)}"


def pgbench_scale(server: Server, db: str, **kw) -> int | None:
    """pgbench's scale in `db` (its branches), or None before `pgbench -i`."""
    exists = server.rows("SELECT to_regclass('pgbench_branches') IS NOT NULL AS found", db=db,
                         what="looking for pgbench's tables", **kw)[0]["found"]
    if not exists:
        return None
    return server.rows("SELECT count(*) AS scale FROM pgbench_branches", db=db, **kw)[0]["scale"]


def initialise(server: Server, db: str, scale: int, **kw) -> str:
    server.step(f"pgbench -i -s {scale}", f"pgbench -i -q -s {int(scale)} {connection_args('direct', '', db)}",
                hide=True, **kw)
    return server.rows("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) AS size FROM pg_class c "
                       "WHERE relname LIKE 'pgbench_%' AND relkind = 'r'", db=db, **kw)[0]["size"]


def run_command(via: str, server: str, db: str, script: str, clients: int, seconds: int,
                pgbouncer_address: str = "") -> str:
    """pgbench at `clients`, a connection sampler beside it; what they found
    in @@-marked sections (see `sections`)."""
    prefix = f"{WORK}/{via}-{clients}"
    threads = min(clients, 4)
    # The server connections this run opened: from pgbench itself (loopback),
    # or from PgBouncer's address (its pool, busy or idle).
    source = (f"client_addr = '{pgbouncer_address}'" if via == "pgbouncer" else "client_addr = '127.0.0.1'")
    return f"""
mkdir -p {WORK} && rm -f {prefix}.* {prefix}-*
( while :; do psql -XAtq -h "$PG_SOCKET_DIR" -d postgres -c "SELECT count(*) FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND {source}" 2>/dev/null; sleep 0.2; done ) > {prefix}-sampled &
sampler=$!
pgbench -n -b {script} -c {clients} -j {threads} -T {seconds} -l --log-prefix={prefix} \
  {connection_args(via, server, db)} > {prefix}-out 2> {prefix}-err
code=$?
kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
p99=$(cat {prefix}.* 2>/dev/null | awk '{{print $3}}' | sort -n | awk '{{a[NR]=$1}} END {{ if (NR) {{ i = int(NR * 0.99); if (i < 1) i = 1; print a[i] }} }}')
peak=$(sort -n {prefix}-sampled | tail -1)
echo "@@code $code"; echo "@@p99 ${{p99:-}}"; echo "@@peak ${{peak:-0}}"
echo "@@out"; cat {prefix}-out; echo "@@err"; tail -c 2000 {prefix}-err
rm -f {prefix}.*
"""


def number(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def first_error(err: str) -> str:
    lines = [line for line in err.splitlines() if "error" in line.lower() or "fatal" in line.lower()]
    if not lines:
        return ""
    text = lines[0]
    for marker in ("FATAL:", "ERROR:"):
        if marker in text:
            text = text[text.index(marker):]
    return text.strip()[:200]


def parse_run(server: str, via: str, script: str, clients: int, seconds: int, raw: dict) -> Run:
    """pgbench's own summary, its log's p99 and the sampled peak -> one Run. Pure."""
    out, err = raw.get("out", ""), raw.get("err", "")
    done = number(r"number of transactions actually processed: (\d+)", out)
    failed = number(r"number of failed transactions: (\d+)", out)
    error = first_error(err) if raw.get("code") else ""
    p99 = raw.get("p99") or ""
    return Run(server, via, script, clients, seconds,
               tps=number(r"tps = ([\d.]+)", out), latency_avg_ms=number(r"latency average = ([\d.]+) ms", out),
               p99_ms=round(int(p99) / 1000, 3) if p99.isdigit() else None,
               transactions=int(done or 0), failed=int(failed or 0),
               max_server_connections=int(raw.get("peak") or 0) if str(raw.get("peak") or "0").isdigit() else 0,
               error=error or (f"pgbench exited {raw.get('code')}" if raw.get("code") else ""))


def bench_one(server: Server, via: str, db: str, script: str, clients: int, seconds: int,
              pgbouncer_address: str = "", **kw) -> Run:
    kw.pop("out_stream", None)
    result = server.step(f"pgbench {via} at {clients} clients",
                         run_command(via, server.name, db, script, clients, seconds, pgbouncer_address),
                         hide=True, **kw)
    return parse_run(server.name, via, script, clients, seconds, sections(result.stdout))


def sections(text: str) -> dict:
    """'@@code 0', '@@out' + lines ... -> {"code": 0, "out": "...", ...}."""
    found: dict = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            key, _, value = line[2:].partition(" ")
            current = key
            found[key] = value
            continue
        if current in ("out", "err"):
            found[current] += line + "\n"
    found["code"] = int(found.get("code") or 0)
    return found


# ---- results on this host ------------------------------------------------------------------

def write_csv(path: Path, runs: list[Run]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[x.name for x in fields(Run)])
        writer.writeheader()
        for r in runs:
            writer.writerow(asdict(r))


def write_chart(path: Path, runs: list[Run], title: str) -> None:
    """tps and p99 against clients, one line per way in (direct, pgbouncer);
    a run that failed is a red cross at zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (tps_axes, p99_axes) = plt.subplots(1, 2, figsize=(11, 4.5))
    for via, style in (("direct", "o-"), ("pgbouncer", "s--")):
        mine = [r for r in runs if r.via == via]
        if not mine:
            continue
        good = [r for r in mine if not r.error and r.tps is not None]
        tps_axes.plot([r.clients for r in good], [r.tps for r in good], style, label=via)
        p99_axes.plot([r.clients for r in good if r.p99_ms is not None],
                      [r.p99_ms for r in good if r.p99_ms is not None], style, label=via)
        bad = [r for r in mine if r.error]
        if bad:
            tps_axes.plot([r.clients for r in bad], [0] * len(bad), "rx", markersize=10,
                          label=f"{via}: failed")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    counts = sorted({r.clients for r in runs})
    for axes, label in ((tps_axes, "transactions per second"), (p99_axes, "latency p99 (ms)")):
        axes.set_xscale("log")
        axes.set_xticks(counts)
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_ylim(bottom=0)
        axes.set_xlabel("clients")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


@dataclass
class BenchResult:
    csv: Path
    chart: Path
    runs: list[Run]


def bench(server: Server, vias: list[str], counts: list[int], seconds: int, scale: int, script: str, db: str,
          results: Path, say) -> BenchResult:
    """db.bench: pgbench's tables made if missing, a run per way in and client
    count, then the CSV and the chart under `results` (<server>/<time>)."""
    found = pgbench_scale(server, db)
    if found is None:
        say(f"no pgbench tables in {db} on {server.name}: making them at scale {scale}")
        size = initialise(server, db, scale)
        say(f"pgbench data: scale {scale}, {size}")
    else:
        say(f"pgbench data in {db}: scale {found}" + (
            f" (kept; --scale {scale} applies when its tables are made: drop pgbench_* to remake them)"
            if found != scale else ""))
    pgbouncer_address = server.session.matrix.service_address("pgbouncer")
    runs = []
    for way in vias:
        for n in counts:
            say(f"{script} {way} at {n} clients for {seconds} s")
            run = bench_one(server, way, db, script, n, seconds, pgbouncer_address)
            if run.error:
                say(f"  {way} at {n} clients: {run.error}")
            runs.append(run)
    base = results / server.name / time.strftime("%Y%m%d-%H%M%S")
    write_csv(base.with_suffix(".csv"), runs)
    write_chart(base.with_suffix(".png"), runs, f"{server.name}: pgbench {script}, {seconds} s per run")
    return BenchResult(base.with_suffix(".csv"), base.with_suffix(".png"), runs)
