"""The upgrade issue's figure: pg_upgrade of a 1 GB pgbench database from
PostgreSQL 18 (forky's own) to 19 (Debian's experimental), downtime by
method: from the old server stopped to the new one's first write, as
`inv db.upgrade --json` measures it (aim: --link and --swap < 10 s). Each
method gets a fresh upgrade profile (the standalone servers, so that no
standby rebuild sits in the wall time), pgbench -i at scale 68 (about 1 GB)
on 18, and the extensions 19 lacks dropped, as a DBA does before it.
--clone is tried too and reported as what pg_upgrade said.

Run: python3 bench/upgrade.py [--runs N]"""

import argparse
import json
import statistics
import subprocess
import time

from common import ROOT, env

EXTRA = {"ATELIER_DEBIAN_EXPERIMENTAL": "1"}
OLD, NEW = "debian14-pg18-standalone", "debian14-pg19-standalone"
ONLY_ON_18 = "hypopg, pg_qualstats, pg_stat_kcache, pg_wait_sampling, plpgsql_check, pldbgapi"
SCALE = 68


def inv(*args, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run(["inv", *args], cwd=ROOT, env={**env(), **EXTRA}, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def fresh() -> str:
    inv("down", "--volumes", "--yes")
    inv("up", "--profile", "upgrade")
    started = time.monotonic()
    inv("run", "-t", OLD, "--", f'psql -qd experdb -c "drop extension {ONLY_ON_18}" && '
                                f"pgbench -i -s {SCALE} -q experdb >/dev/null 2>&1")
    size = inv("run", "-t", OLD, "--", "psql -Atd experdb -c "
                                       "\"select pg_size_pretty(pg_database_size('experdb'))\"").stdout.strip()
    return f"{size} made in {time.monotonic() - started:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    runs = parser.parse_args().runs
    inv("build", "--profile", "upgrade")
    results: dict[str, list[dict]] = {}
    for _ in range(runs):
        for method in ("copy", "link", "swap"):
            made = fresh()
            started = time.monotonic()
            shown = json.loads(inv("db.upgrade", "-t", OLD, "--to", "19", "--method", method, "--yes",
                                   "--json").stdout)
            shown["wall_s"] = time.monotonic() - started
            shown["made"] = made
            assert not shown["differences"] and not shown["index_errors"], shown
            results.setdefault(method, []).append(shown)
    made = fresh()
    clone = inv("db.upgrade", "-t", OLD, "--to", "19", "--method", "clone", "--yes", check=False)
    inv("down", "--volumes", "--yes")

    print(f"pg_upgrade 18 -> 19 of a pgbench database at scale {SCALE} ({made}), {runs} run(s) per method:")
    print(f"{'method':8} {'downtime (median)':>18} {'pg_upgrade':>11} {'db.upgrade in all':>18}  proof")
    for method, shown in results.items():
        downtime = statistics.median(s["downtime_ms"] for s in shown) / 1000
        print(f"{method:8} {downtime:>16.1f} s {statistics.median(s['pg_upgrade_s'] for s in shown):>9.1f} s "
              f"{statistics.median(s['wall_s'] for s in shown):>16.1f} s  "
              f"{shown[0]['tables']} tables, {shown[0]['rows']} rows equal; "
              f"{shown[0]['indexes_checked']} indexes amchecked")
    said = [line.strip() for line in clone.stderr.splitlines() if "clon" in line]
    print(f"clone    refused ({clone.returncode}): {said[-1] if said else clone.stderr.strip()[-200:]}")


if __name__ == "__main__":
    main()
