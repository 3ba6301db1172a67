"""The monitoring issue's figures, on the default profile (debian12, PG 15:
a pair and a standalone) with ATELIER_MONITORING=1 and every `for:` at 0s:

- one scrape of one server: Prometheus's own scrape_duration_seconds of
  each exporter, sampled over a minute (aim < 0.5 s);
- replication lag crossing 100 MB to ReplicationLag firing: replay paused
  on the standby, WAL written on the primary; the crossing is seen by
  polling pg_stat_replication on the primary, the firing by polling
  Prometheus's /api/v1/alerts (aim < 2 scrape intervals, 10 s);
- a switchover's end to both servers' serves labels changed (aim: two
  scrape intervals);
- CPU and memory, idle: the prometheus and alertmanager containers (the
  engine's stats) and every exporter (its process in each server), over a
  minute.

Run: python3 bench/monitoring.py"""

import json
import statistics
import subprocess
import threading
import time
import urllib.parse
import urllib.request

from common import ROOT, env, report

from atelier.core.model import Environment, select
from atelier.core.settings import load_settings
from atelier.engine.client import Engine

PORT = "28090"
EXTRA = {"ATELIER_MONITORING": "1", "ATELIER_ALERT_FOR": "0s", "ATELIER_PROMETHEUS_PORT": PORT}
SCRAPE_INTERVAL = 5.0


def inv(*args) -> None:
    run = subprocess.run(["inv", *args], cwd=ROOT, env={**env(), **EXTRA}, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")


def api(path: str, **params):
    url = f"http://127.0.0.1:{PORT}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())["data"]


def main() -> None:
    inv("build")
    inv("up")
    settings = load_settings(environ={**env(), **EXTRA})
    matrix = Environment(settings, select())
    client = Engine.chosen().client
    container = {c.name: client.containers.get(matrix.docker_name(c)) for c in matrix.containers}

    def psql(name: str, query: str) -> str:
        result = container[name].exec_run(["psql", "-XAtq", "-d", "experdb", "-c", query], user="postgres")
        return result.output.decode().strip()

    while len([r for r in api("query", query='up{job="postgres"} == 1')["result"]]) < len(matrix.servers):
        time.sleep(1)

    # Idle: CPU seconds and memory over a minute.
    def exporter_cpu(name: str) -> tuple[float, int]:
        """The exporter's CPU seconds (user + system, in clock ticks of 1/100 s) and resident bytes."""
        out = container[name].exec_run(["sh", "-c", "pid=$(pgrep -f postgres-exporter | head -n1); "
                                        "cut -d' ' -f14,15 /proc/$pid/stat; grep VmRSS /proc/$pid/status"]).output
        words = out.decode().split()
        return (int(words[0]) + int(words[1])) / 100, int(words[3]) * 1024

    services = ("prometheus", "alertmanager")
    before = {name: exporter_cpu(name) for name in (s.name for s in matrix.servers)}
    stats_before = {s: container[s].stats(stream=False) for s in services}
    time.sleep(60)
    after = {name: exporter_cpu(name) for name in before}
    stats_after = {s: container[s].stats(stream=False) for s in services}
    for name in before:
        print(f"exporter on {name}: {100 * (after[name][0] - before[name][0]) / 60:.2f} % of one core, "
              f"{after[name][1] / 2**20:.0f} MiB resident")
    for s in services:
        used = stats_after[s]["cpu_stats"]["cpu_usage"]["total_usage"] - stats_before[s]["cpu_stats"]["cpu_usage"]["total_usage"]
        print(f"{s}: {100 * used / 1e9 / 60:.1f} % of one core, "
              f"{stats_after[s]['memory_stats']['usage'] / 2**20:.0f} MiB")

    durations = [float(r["value"][1]) for r in api("query", query='scrape_duration_seconds{job="postgres"}')["result"]]
    for _ in range(11):
        time.sleep(SCRAPE_INTERVAL)
        durations += [float(r["value"][1]) for r in
                      api("query", query='scrape_duration_seconds{job="postgres"}')["result"]]
    report("one scrape of one server (exporter's time)", durations, aim="< 0.5 s")

    primary, standby = "debian12-pg15-active", "debian12-pg15-standby"
    delays = []
    for _ in range(3):
        psql(standby, "select pg_wal_replay_pause()")
        crossed: list[float] = []

        def watch() -> None:
            while not crossed:
                lag = psql(primary, "select coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0) "
                                    "from pg_stat_replication")
                if float(lag or 0) > 1e8:
                    crossed.append(time.time())
                time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        psql(primary, "drop table if exists bench_lag; create table bench_lag as "
                      "select g, repeat('x', 400) as pad from generate_series(1, 300000) g")
        watcher.join()
        while not any(a["labels"]["alertname"] == "ReplicationLag" and a["state"] == "firing"
                      for a in api("alerts")["alerts"]):
            time.sleep(0.1)
        delays.append(time.time() - crossed[0])
        psql(standby, "select pg_wal_replay_resume()")
        psql(primary, "drop table bench_lag")
        while any(a["labels"]["alertname"] == "ReplicationLag" for a in api("alerts")["alerts"]):
            time.sleep(0.5)
    report("replication lag over 100 MB to ReplicationLag firing (for: 0s)", delays,
           aim=f"< 2 scrape intervals ({2 * SCRAPE_INTERVAL:.0f} s)")
    print(f"median in scrape intervals: {statistics.median(delays) / SCRAPE_INTERVAL:.2f}")

    def serves_labels() -> set:
        found = api("query", query='up{job="postgres"} == 1')["result"]
        return {(r["metric"]["container"], r["metric"]["serves"]) for r in found}

    relabelled = []
    for new_primary, new_standby in ((standby, primary), (primary, standby)):
        inv("db.switchover", "-t", new_primary)
        done = time.time()
        while not {(new_primary, "primary"), (new_standby, "standby")} <= serves_labels():
            time.sleep(0.1)
        relabelled.append(time.time() - done)
    report("switchover done to both serves labels changed", relabelled,
           aim=f"within 2 scrape intervals ({2 * SCRAPE_INTERVAL:.0f} s)")


if __name__ == "__main__":
    main()
