"""The replication issue's figures, on the default profile (debian12, PG 15):

- switchover: last write accepted by the old primary to first write accepted
  by the new one (aim < 5 s), from `inv db.drill switchover`, both ways;
- failover: primary killed (docker kill) to first write on the new one, and
  to the end of its promotion, from `inv db.drill failover`;
- rejoin of the old primary for a 1 GB database: pg_rewind against a fresh
  base backup (`db.rejoin --fresh`);
- db.backup plus `db.restore --verify` of a 1 GB pgbench database against
  plain pg_dump -Fc and pg_restore of the same, both on the same server
  (aim < 1.3x). atelier's side also carries the dump to this host and back.

Run: python3 bench/db.py [--runs N] [--scale S] (scale 68 is about 1 GB)."""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, compare, env, report

ACTIVE, STANDBY = "debian12-pg15-active", "debian12-pg15-standby"


def inv(*args, check=True) -> subprocess.CompletedProcess:
    run = subprocess.run(["inv", *args], cwd=ROOT, env=env(), capture_output=True, text=True)
    if check and run.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def seconds(*args) -> float:
    started = time.perf_counter()
    inv(*args)
    return time.perf_counter() - started


def in_server(target: str, command: str) -> str:
    return inv("run", "-t", target, "--", command).stdout.strip()


def primary_now() -> str:
    rows = {line.split()[0]: line.split() for line in inv("status").stdout.splitlines()[1:]}
    return ACTIVE if rows[ACTIVE][6] == "primary" else STANDBY


def other(name: str) -> str:
    return STANDBY if name == ACTIVE else ACTIVE


def drill(kind: str) -> dict:
    return json.loads(inv("db.drill", kind, "-t", "debian12-pg15-*", "--json").stdout)


def rejoin_after_failover(fresh: bool) -> float:
    """Fail over (primary killed), change some rows on the new primary, then
    time bringing the old one back."""
    old = primary_now()
    inv("db.failover", "-t", other(old), "--yes")
    in_server(other(old), "pgbench -n -T 5 -c 2 bench >/dev/null 2>&1")
    inv("up")
    return seconds("db.rejoin", "-t", old, *(["--fresh", "--yes"] if fresh else []))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=int, default=68)
    parser.add_argument("--parts", default="drills,rejoin,backup", help="comma list of: drills, rejoin, backup")
    options = parser.parse_args()
    parts = set(options.parts.split(","))

    inv("up")
    if "drills" in parts:
        drills(options.runs)
    primary = primary_now()
    exists = in_server(primary, "psql -XAtqc \"select count(*) from pg_database where datname = 'bench'\"")
    if exists != "1" or in_server(primary, "psql -d bench -XAtqc 'select count(*) from pgbench_branches'") != \
            str(options.scale):
        in_server(primary, f"dropdb --if-exists bench && createdb bench && pgbench -i -q -s {options.scale} bench "
                           ">/dev/null 2>&1")
    size = in_server(primary, "psql -XAtqc \"select pg_size_pretty(pg_database_size('bench'))\"")
    print(f"bench database: {size} (pgbench scale {options.scale})", flush=True)
    if "rejoin" in parts:
        rejoins(options.runs)
    if "backup" in parts:
        backups(options.runs, options.scale)


def drills(runs: int) -> None:
    gaps = []
    for _ in range(runs):
        for _way in ("there", "back"):
            gaps.append(drill("switchover")["write_gap"])
    report("switchover: last write on the old primary to first on the new", gaps, "< 5 s")

    to_write, to_promoted = [], []
    for _ in range(runs):
        result = drill("failover")
        to_write.append(result["killed_to_write"])
        to_promoted.append(result["killed_to_promoted"])
        inv("up")
        inv("db.rejoin", "-t", result["old_primary"])
    report("failover: primary killed to first write on the new primary", to_write)
    report("failover: primary killed to the new primary promoted", to_promoted)
    sys.stdout.flush()


def rejoins(runs: int) -> None:
    rewind, fresh = [], []
    for _ in range(max(1, runs - 1)):
        rewind.append(rejoin_after_failover(fresh=False))
        fresh.append(rejoin_after_failover(fresh=True))
    compare("rejoin with pg_rewind", rewind, "rejoin with a fresh base backup", fresh)


def backups(runs: int, scale: int) -> None:
    primary = primary_now()
    ours, plain = [], []
    for n in range(runs):
        started = time.perf_counter()
        folder = inv("db.backup", "-t", primary, "--db", "bench").stdout.strip()
        inv("db.restore", folder, "-t", primary, "--db", f"ours{n}", "--verify")
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        in_server(primary, f"pg_dump -Fc -d bench -f /tmp/plain.dump && createdb plain{n} && "
                           f"pg_restore -d plain{n} /tmp/plain.dump && rm -f /tmp/plain.dump")
        plain.append(time.perf_counter() - started)
        in_server(primary, f"dropdb ours{n} && dropdb plain{n}")
        subprocess.run(["rm", "-rf", folder], check=True)
    compare("db.backup + db.restore --verify", ours, "pg_dump -Fc + pg_restore", plain, "< 1.3x")
    print(f"(pgbench scale {scale}; backups were under {Path(folder).parent})")


if __name__ == "__main__":
    main()
