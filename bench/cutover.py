"""The upgrade issue's cutover figure: the write gap of `inv db.cutover`
through PgBouncer, PostgreSQL 15 (debian12's pair) to 17 (debian13's
standalone) and back, on the debian profile with the pool (aim < 2 s, 0
lost). The gap is the writer's longest wait between two commits that
returned; the report also says how long the entry was paused and how long
the subscriber took to confirm the last LSN.

Run: python3 bench/cutover.py [--runs N]"""

import argparse
import json
import statistics
import subprocess

from common import ROOT, env

EXTRA = {"ATELIER_PGBOUNCER": "1"}
SOURCE, DESTINATION = "debian12-pg15-active", "debian13-pg17-standalone"


def inv(*args) -> subprocess.CompletedProcess:
    run = subprocess.run(["inv", *args], cwd=ROOT, env={**env(), **EXTRA}, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    inv("build", "--profile", "debian")
    inv("down", "--volumes", "--yes")
    inv("up", "--profile", "debian")
    inv("run", "-t", SOURCE, "--", "pgbench -i -s 5 -q experdb >/dev/null 2>&1")
    inv("db.logical", "--from", SOURCE, "--to", DESTINATION, "--db", "experdb")
    reports = {"forward": [], "back": []}
    for _ in range(runs):
        reports["forward"].append(json.loads(inv("db.cutover", "--from", SOURCE, "--to", DESTINATION,
                                                 "--json").stdout))
        reports["back"].append(json.loads(inv("db.cutover", "--back", "--from", SOURCE, "--to", DESTINATION,
                                              "--json").stdout))
    inv("down", "--volumes", "--yes")
    print(f"db.cutover through PgBouncer, {SOURCE} (15) <-> {DESTINATION} (17), {runs} run(s) each way:")
    for way, shown in reports.items():
        gaps = [r["write_gap_ms"] for r in shown]
        print(f"{way:8} write gap median {statistics.median(gaps):.0f} ms (max {max(gaps)}); paused median "
              f"{statistics.median(r['paused_ms'] for r in shown):.0f} ms; caught up median "
              f"{statistics.median(r['caught_up_ms'] for r in shown):.0f} ms; commits "
              f"{sum(r['committed'] for r in shown)}, lost {sum(len(r['lost']) for r in shown)}, duplicated "
              f"{sum(r['duplicated'] for r in shown)}, ids colliding {sum(r['id_collisions'] for r in shown)}")


if __name__ == "__main__":
    main()
