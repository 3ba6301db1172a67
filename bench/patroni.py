"""The Patroni issue's figures, on the default profile (debian12, PG 15,
Patroni 3.0.2) with PgBouncer, plain mode beside Patroni:

- `inv up` from built images (volumes removed first) to a leader and a
  streaming replica;
- switchover through the pool: last write before to first write after
  (aim < 5 s), from `inv db.drill switchover`;
- failover: leader killed (docker kill) to first write through the pool
  (aim < 15 s under Patroni): plain mode's `db.drill failover` (atelier
  fences and promotes) beside Patroni's `db.drill failover --auto` (Patroni
  promotes on its own), each followed by `db.rejoin`;
- zombie, both modes: writes the old primary ran after the promotion,
  through the pool and from a client that kept its address (aim 0 through
  the pool under Patroni; plain mode has nothing to stop a frozen server).

Run: python3 bench/patroni.py [--runs N] [--os debian12|debian13]"""

import argparse
import json
import subprocess
import sys
import time

from common import ROOT, env, report

MODES = ("plain", "patroni")


def inv(mode: str, *args, check=True) -> subprocess.CompletedProcess:
    extra = {"ATELIER_HA": mode, "ATELIER_PGBOUNCER": "1"}
    run = subprocess.run(["inv", *args], cwd=ROOT, env={**env(), **extra}, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def drill(mode: str, *args) -> dict:
    """The drill's report; a drill that exits 1 (it lost rows, or a zombie
    took writes) still prints it, and that is a figure too."""
    run = inv(mode, "db.drill", *args, "--json", check=False)
    try:
        return json.loads(run.stdout)
    except ValueError:
        raise SystemExit(f"inv db.drill {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}") from None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--os", default="debian12", choices=("debian12", "debian13"))
    args = parser.parse_args()
    major = {"debian12": 15, "debian13": 17}[args.os]
    selection = ("--os", args.os, "--pg", str(major))
    pair = f"{args.os}-pg{major}-*"
    inv("patroni", "build", *selection)
    for mode in MODES:
        inv(mode, "down", "--volumes", "--yes")
        started = time.perf_counter()
        inv(mode, "up", *selection)
        report(f"{mode}: up from built images to a primary and a streaming standby",
               [time.perf_counter() - started])
        gaps, killed = [], []
        for _ in range(args.runs):
            gaps.append(drill(mode, "switchover", "-t", pair)["write_gap"])
        for _ in range(args.runs):
            found = drill(mode, "failover", "-t", pair, *(("--auto",) if mode == "patroni" else ()))
            killed.append(found["killed_to_write"])
            inv(mode, "up", *selection)  # starts the killed container
            inv(mode, "db.rejoin", "-t", found["old_primary"], "--yes")
        report(f"{mode}: switchover through the pool, last write before to first after", gaps, aim="< 5 s")
        report(f"{mode}: failover, leader killed to first write through the pool", killed,
               aim="< 15 s under Patroni")
        found = []
        for _ in range(args.runs):
            found.append(drill(mode, "zombie", "-t", pair))
            if mode == "plain":  # the drill leaves the thawed old primary fenced
                inv(mode, "db.rejoin", "-t", found[-1]["old_primary"], "--yes")
        print(f"{mode}: zombie writes after the promotion, through the pool: "
              f"{[z['zombie_writes_pooled'] for z in found]} (aim 0 under Patroni); from a client that kept "
              f"the old primary's address: {[z['zombie_writes'] for z in found]}")
        inv(mode, "down", "--volumes", "--yes")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
