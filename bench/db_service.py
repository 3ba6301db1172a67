"""The tuning and pooling issue's figures, on debian12/PG 15 with PgBouncer:

- pgbench select-only at 50 clients, through PgBouncer against direct
  (both, and their ratio);
- pgbench tpcb-like at 200 clients with max_connections 40: transactions
  completed through PgBouncer, and the error direct clients get;
- `inv db.report` on one server, wall time (aim < 1 s);
- `inv db.tune --apply` on one server, wall time (aim < 2 s), each followed
  by `--reset`.

Run: python3 bench/db_service.py [--runs N] [--seconds S]."""

import argparse
import json
import statistics
import subprocess
import time

from common import BENCH_ENV, ROOT, env, report

ACTIVE = "debian12-pg15-active"
POOLED = {"ATELIER_PGBOUNCER": "1"}


def inv(*args, check=True) -> subprocess.CompletedProcess:
    run = subprocess.run(["inv", *args], cwd=ROOT, env={**env(), **POOLED}, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def seconds(*args) -> float:
    started = time.perf_counter()
    inv(*args, check=False)
    return time.perf_counter() - started


def psql(query: str) -> str:
    return inv("run", "-t", ACTIVE, "--", "psql", "-d", "experdb", "-XAtqc", query).stdout.strip()


def bench(clients: str, script: str, secs: int) -> dict:
    out = inv("db.bench", "-t", ACTIVE, "--clients", clients, "--via", "direct,pgbouncer", "--script", script,
              "--seconds", str(secs), "--scale", "10", "--json").stdout
    return {r["via"]: r for r in json.loads(out)["runs"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    print(f"project {BENCH_ENV['ATELIER_PROJECT']}: build and up of debian12/pg15 with pgbouncer")
    inv("build", "--os", "debian12", "--pg", "15")
    inv("up", "--os", "debian12", "--pg", "15")

    ratios = []
    for n in range(args.runs):
        runs = bench("50", "select-only", args.seconds)
        d, p = runs["direct"], runs["pgbouncer"]
        ratios.append(p["tps"] / d["tps"])
        print(f"select-only, 50 clients, run {n + 1}: direct {d['tps']:.0f} tps (p99 {d['p99_ms']} ms), "
              f"pgbouncer {p['tps']:.0f} tps (p99 {p['p99_ms']} ms), ratio {ratios[-1]:.2f}")
    print(f"select-only at 50 clients, pgbouncer / direct tps (median of {args.runs}): {statistics.median(ratios):.2f}")

    psql("alter system set max_connections = 40")
    inv("pg.restart", "-t", ACTIVE)
    time.sleep(2)
    try:
        runs = bench("200", "tpcb-like", args.seconds)
    finally:
        psql("alter system reset max_connections")
        inv("pg.restart", "-t", ACTIVE)
    d, p = runs["direct"], runs["pgbouncer"]
    print(f"tpcb-like, 200 clients, max_connections 40: pgbouncer {p['transactions']} transactions, "
          f"{p['failed']} failed, {p['tps']:.0f} tps, p99 {p['p99_ms']} ms, error {p['error'] or 'none'}; "
          f"direct {d['transactions']} transactions, error: {d['error'] or 'none'}")

    time.sleep(2)
    report("inv db.report -t one server", [seconds("db.report", "-t", ACTIVE) for _ in range(args.runs * 3)],
           aim="< 1 s")
    applied = []
    for _ in range(args.runs * 3):
        applied.append(seconds("db.tune", "-t", ACTIVE, "--memory", "4GB", "--apply"))
        inv("db.tune", "-t", ACTIVE, "--reset")
    report("inv db.tune --apply -t one server", applied, aim="< 2 s")


if __name__ == "__main__":
    main()
