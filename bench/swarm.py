"""The multi-node issue's figures, on the lab of tests/swarm_lab.py (three
dockerds in network namespaces, one swarm):

- the lab's set-up and teardown;
- `inv up` of the debian profile (15 containers) from nothing on three nodes
  against one node, images present (aim < 1.5x);
- streaming debian13's init and pg images to two nodes, and the bytes sent;
- the partition drill through the pool (PgBouncer): cut to the first write
  on the new primary, a container cut off and a whole node's link cut.

The images are built on this machine's engine and streamed to the nodes
first (not timed). Run: python3 bench/swarm.py [--runs N]"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from common import ROOT, env

sys.path.insert(0, str(ROOT / "tests"))
import swarm_lab  # noqa: E402

NODES = swarm_lab.nodes_of(3)


def settings(nodes, **extra) -> dict:
    return {"ATELIER_NODES": ",".join(f"{n.name.removeprefix('atl-')}={n.url}" for n in nodes),
            "ATELIER_BIND_ADDRESS": NODES[0].address, **extra}


def inv(values: dict, *args) -> subprocess.CompletedProcess:
    run = subprocess.run(["inv", *args], cwd=ROOT, env={**env(), **values}, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"inv {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def timed_up(values: dict, profile: str) -> float:
    started = time.perf_counter()
    inv(values, "up", "--profile", profile)
    return time.perf_counter() - started


def streaming() -> tuple[float, int]:
    """debian13's init and pg images removed from n2 and n3, then streamed by atelier."""
    from atelier.engine.client import Engine
    from atelier.engine.nodes import distribute_images

    images = {"atelier-debian13-init", "atelier-debian13-pg17"}
    for node in NODES[1:]:
        subprocess.run(["docker", "-H", node.url, "rmi", *images], capture_output=True)
    engine = Engine.chosen(nodes=tuple((n.name, n.url) for n in NODES))
    started = time.perf_counter()
    transfers = distribute_images(engine, {NODES[1].name: images, NODES[2].name: images}, say=lambda _: None)
    seconds = time.perf_counter() - started
    engine.close()
    return seconds, sum(t.sent * len(t.nodes) for t in transfers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    if swarm_lab.netns_exists(swarm_lab.HUB):
        swarm_lab.down()
    lab = swarm_lab.up(3)
    try:
        one, three = settings(NODES[:1]), settings(NODES)
        inv({}, "build", "--profile", "debian")
        for values in (three, one):  # the images onto the nodes, untimed
            inv(values, "up", "--profile", "debian")
            inv(values, "down", "--volumes", "--yes")
        times = {"one node": [], "three nodes": []}
        for _ in range(runs):
            # Each from nothing, and removed with the same nodes listed: a down
            # with fewer nodes refuses (their containers would be left running).
            for label, values in (("three nodes", three), ("one node", one)):
                times[label].append(timed_up(values, "debian"))
                inv(values, "down", "--volumes", "--yes")
        stream_seconds, sent = streaming()

        pooled = settings(NODES, ATELIER_PGBOUNCER="1", ATELIER_PLACEMENT="spread")
        inv(pooled, "up")
        cuts = []
        for _ in range(runs):
            cuts.append(json.loads(inv(pooled, "db.drill", "partition", "-t", "debian12-pg15-*", "--json").stdout))
        placed = json.loads((ROOT / ".state" / "atelierbench" / "placement.json").read_text())
        node = placed[cuts[-1]["new_primary"]]  # the primary now
        link = f"ip -n atl-{node} link set eth0"
        node_cut = json.loads(inv(pooled, "db.drill", "partition", "-t", "debian12-pg15-*", "--json",
                                  "--cut", f"{link} down", "--heal", f"{link} up").stdout)
        inv(pooled, "down", "--volumes", "--yes")
    finally:
        teardown = swarm_lab.down()
    left = swarm_lab.leftovers()

    print(f"lab: set up in {lab['seconds']:.1f} s, torn down in {teardown:.1f} s; left: {left or 'nothing'}")
    one_median, three_median = statistics.median(times["one node"]), statistics.median(times["three nodes"])
    print(f"inv up --profile debian (15 containers) from nothing, images present, {runs} run(s): "
          f"one node median {one_median:.1f} s {[round(t, 1) for t in times['one node']]}, three nodes median "
          f"{three_median:.1f} s {[round(t, 1) for t in times['three nodes']]}: {three_median / one_median:.2f}x")
    print(f"streaming atelier-debian13-init and -pg17 to two nodes: {stream_seconds:.1f} s, "
          f"{sent / 1e9:.2f} GB sent ({sent / 2 / 1e9:.2f} GB read once from the build engine)")
    for report in cuts + [node_cut]:
        print(f"partition ({report['cut']}): cut to first write through the pool "
              f"{report['cut_to_write']:.2f} s, promoted after {report['cut_to_promoted']:.2f} s; "
              f"{report['committed']} commits, {report['lost_count']} lost; {report['rejoined']}")


if __name__ == "__main__":
    main()
