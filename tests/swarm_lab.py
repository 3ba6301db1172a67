"""A real multi-node Docker Swarm on this one machine, for tests and by hand.

Each node is a dockerd of its own in a network namespace of its own (no
Docker-in-Docker, nothing privileged). The nodes' links meet on a bridge in
a "hub" namespace, which this machine reaches through one veth; a bridge in
the host's own namespace would not pass traffic here (the main engine turns
on bridge-nf-call-iptables, and the host's FORWARD policy is DROP). The
first node inits the swarm and the others join it as workers, so atelier's
attachable overlay spans them with VXLAN, as it does between machines.

    python3 tests/swarm_lab.py up [--nodes 3]   # prints ATELIER_NODES for .env
    python3 tests/swarm_lab.py down [--wipe]    # --wipe: the image cache too

`down` leaves no namespace, veth, cgroup folder, mount or dockerd, and
never talks to this machine's own engine. Each node's image store is kept
under /var/lib/atelier-lab/ (like the main engine's images), so the next
lab does not need the images streamed again; everything else a node had
(containers, volumes, networks, its swarm) goes with `down`.

Only standard tools: iproute2, nsenter and unshare (util-linux), dockerd
and the docker CLI."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "atl"
HUB = f"{PREFIX}-hub"
HOST_LINK = f"{PREFIX}-host"
LINK_NET = "10.199.0"  # the nodes' link: the host is .1, node i is .(10+i)
RUN = Path("/run/atelier-lab")
CACHE = Path("/var/lib/atelier-lab")
LOGS = Path("/tmp/atelier-lab-logs")


@dataclass(frozen=True)
class Node:
    name: str  # also its netns and its cgroup parent
    address: str  # on the nodes' link: swarm traffic, VXLAN and published ports

    @property
    def run(self) -> Path:
        return RUN / self.name

    @property
    def socket(self) -> Path:
        return self.run / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return CACHE / self.name


def nodes_of(count: int) -> list[Node]:
    return [Node(f"{PREFIX}-n{i}", f"{LINK_NET}.{10 + i}") for i in range(1, count + 1)]


def sh(*argv, check: bool = True, capture: bool = True) -> str:
    run = subprocess.run([str(a) for a in argv], capture_output=capture, text=True)
    if check and run.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({run.returncode}): {run.stderr.strip()}")
    return (run.stdout or "").strip()


def docker(node: Node, *args, check: bool = True) -> str:
    return sh("docker", "-H", node.url, *args, check=check)


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


# ---- up --------------------------------------------------------------------

def make_links(nodes: list[Node]) -> None:
    sh("ip", "netns", "add", HUB)
    sh("ip", "-n", HUB, "link", "set", "lo", "up")
    sh("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", HUB, "link", "set", "br0", "up")
    sh("ip", "link", "add", HOST_LINK, "type", "veth", "peer", "name", "host", "netns", HUB)
    sh("ip", "addr", "add", f"{LINK_NET}.1/24", "dev", HOST_LINK)
    sh("ip", "link", "set", HOST_LINK, "up")
    sh("ip", "-n", HUB, "link", "set", "host", "master", "br0", "up")
    for node in nodes:
        sh("ip", "netns", "add", node.name)
        sh("ip", "-n", node.name, "link", "set", "lo", "up")
        sh("ip", "-n", HUB, "link", "add", node.name, "type", "veth", "peer", "name", "eth0", "netns", node.name)
        sh("ip", "-n", HUB, "link", "set", node.name, "master", "br0", "up")
        sh("ip", "-n", node.name, "addr", "add", f"{node.address}/24", "dev", "eth0")
        sh("ip", "-n", node.name, "link", "set", "eth0", "up")
        sh("ip", "-n", node.name, "route", "add", "default", "via", f"{LINK_NET}.1")


def start_dockerd(node: Node, index: int) -> int:
    node.run.mkdir(parents=True, exist_ok=True)
    node.data_root.mkdir(parents=True, exist_ok=True)
    config = {
        # Without a key path of its own every node reads /etc/docker/key.json
        # and they all get one engine ID.
        "deprecated-key-path": str(node.data_root / "key.json"),
        "bip": f"10.200.{index}.1/24",
        "default-address-pools": [{"base": f"10.{200 + index}.0.0/16", "size": 24}],
        "log-driver": "json-file",
    }
    (node.run / "daemon.json").write_text(json.dumps(config))
    dockerd = " ".join([
        "exec dockerd", f"--config-file={node.run / 'daemon.json'}", f"--data-root={node.data_root}",
        f"--exec-root={node.run / 'exec'}", f"--pidfile={node.run / 'docker.pid'}", f"-H={node.url}",
        f"--cgroup-parent=/{node.name}",
    ])
    # nsenter + unshare, not `ip netns exec`: that mounts a fresh /sys and
    # hides /sys/fs/cgroup. The tmpfs over /run/containerd makes dockerd
    # start a containerd of its own instead of using the host's.
    script = f"mount -t tmpfs tmpfs /run/containerd && hostname {node.name} && {dockerd}"
    with open(node.run / "dockerd.log", "ab") as log:
        process = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{node.name}", "--", "unshare", "--mount", "--uts",
             "--propagation", "slave", "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    return process.pid


def wait_for_engine(node: Node, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if node.socket.exists() and subprocess.run(["docker", "-H", node.url, "version"],
                                                   capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{node.name}'s dockerd did not answer in {seconds:.0f} s; see {node.run / 'dockerd.log'}")


def form_swarm(nodes: list[Node]) -> None:
    first = nodes[0]
    docker(first, "swarm", "init", "--advertise-addr", first.address, "--listen-addr", f"{first.address}:2377",
           "--default-addr-pool", "10.210.0.0/16")
    token = docker(first, "swarm", "join-token", "-q", "worker")
    for node in nodes[1:]:
        docker(node, "swarm", "join", "--token", token, "--advertise-addr", node.address,
               "--listen-addr", f"{node.address}:2377", f"{first.address}:2377")


def up(count: int = 3, joined: int | None = None) -> dict:
    """`count` nodes, the first `joined` of them (all by default) in one
    swarm; returns the lab's description, also kept in /run/atelier-lab."""
    if netns_exists(HUB):
        raise RuntimeError(f"a lab is up already (netns {HUB}); `python3 {sys.argv[0]} down` first")
    nodes = nodes_of(count)
    joined = count if joined is None else joined
    started = time.monotonic()
    RUN.mkdir(parents=True, exist_ok=True)
    lab = {"nodes": [n.__dict__ for n in nodes], "pids": {}, "joined": joined}
    try:
        make_links(nodes)
        for index, node in enumerate(nodes, 1):
            lab["pids"][node.name] = start_dockerd(node, index)
            (RUN / "lab.json").write_text(json.dumps(lab))
        for node in nodes:
            wait_for_engine(node)
        wipe_node_state(nodes)
        form_swarm(nodes[:joined])
    except BaseException:
        down()
        raise
    lab["seconds"] = round(time.monotonic() - started, 1)
    (RUN / "lab.json").write_text(json.dumps(lab))
    return lab


def wipe_node_state(nodes: list[Node]) -> None:
    """A node's cache may hold what an interrupted lab left: only images count."""
    for node in nodes:
        if docker(node, "info", "--format", "{{.Swarm.LocalNodeState}}") != "inactive":
            docker(node, "swarm", "leave", "--force", check=False)
        ids = docker(node, "ps", "-aq").split()
        if ids:
            docker(node, "rm", "-f", *ids, check=False)
        docker(node, "volume", "prune", "-f", "--filter", "all=1", check=False)
        docker(node, "network", "prune", "-f", check=False)


def env_line(nodes: list[Node]) -> str:
    return "ATELIER_NODES=" + ",".join(f"{n.name.removeprefix(PREFIX + '-')}={n.url}" for n in nodes)


# ---- down ------------------------------------------------------------------

def cgroup_folders(name: str) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob(f"*/{name}") if p.is_dir()]


def _pids_in(folder: Path) -> set[int]:
    pids = set()
    for procs in folder.rglob("cgroup.procs"):
        try:
            pids |= {int(p) for p in procs.read_text().split()}
        except OSError:
            pass
    return pids


def _remove_cgroup(folder: Path) -> None:
    for child in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            child.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def processes_naming(folder: Path) -> dict[int, str]:
    """pid -> command line, for every process whose command line names `folder`."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(folder).encode() in cmdline:
                found[int(proc.name)] = cmdline.replace(bytes(1), b" ").decode(errors="replace")
    return found


def stop_node(node: Node, pid: int | None) -> None:
    if node.socket.exists():
        # What the node ran goes with the lab; its images stay as a cache.
        try:
            wipe_node_state([node])
        except RuntimeError:
            pass
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    # Whatever outlived the daemon (shims, containerd, containers' processes
    # after a kill) is in the node's cgroups or in the daemon's mount namespace.
    leftovers = set().union(*(_pids_in(f) for f in cgroup_folders(node.name)))
    leftovers |= set(processes_naming(node.run))
    if pid:
        leftovers.add(pid)
    for p in leftovers:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in leftovers) and time.monotonic() < deadline:
        time.sleep(0.1)
    for folder in cgroup_folders(node.name):
        _remove_cgroup(folder)
    for state in ("swarm", "network", "containers", "volumes"):
        shutil.rmtree(node.data_root / state, ignore_errors=True)
    LOGS.mkdir(parents=True, exist_ok=True)  # the daemon's log outlives the lab, for a failed test
    try:
        shutil.copy(node.run / "dockerd.log", LOGS / f"{node.name}.log")
    except OSError:
        pass
    shutil.rmtree(node.run, ignore_errors=True)


def down(wipe: bool = False) -> float:
    """Tear the lab down, however far `up` got; the seconds it took."""
    started = time.monotonic()
    try:
        lab = json.loads((RUN / "lab.json").read_text())
    except (OSError, ValueError):
        lab = {"nodes": [], "pids": {}}
    nodes = [Node(**n) for n in lab["nodes"]] or [n for n in nodes_of(9) if netns_exists(n.name)]
    for node in nodes:
        stop_node(node, lab["pids"].get(node.name))
    for node in nodes:
        if netns_exists(node.name):
            sh("ip", "netns", "del", node.name, check=False)
    sh("ip", "link", "del", HOST_LINK, check=False)
    if netns_exists(HUB):
        sh("ip", "netns", "del", HUB, check=False)
    shutil.rmtree(RUN, ignore_errors=True)
    if wipe:
        shutil.rmtree(CACHE, ignore_errors=True)
    return time.monotonic() - started


def leftovers() -> list[str]:
    """What a torn-down lab must not leave, as lines (empty: nothing)."""
    found = []
    netns = sh("ip", "netns", "list", check=False)
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith(PREFIX + "-")]
    links = sh("ip", "-o", "link", "show", check=False)
    found += [f"link {line.split(':')[1].strip().split('@')[0]}" for line in links.splitlines()
              if line.split(":")[1].strip().startswith(PREFIX + "-")]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/{PREFIX}-*")]
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount {line.split()[1]}" for line in mounts.splitlines()
              if str(RUN) in line or f"{CACHE}/" in line]
    found += [f"process {pid}: {words[:80]}" for pid, words in processes_naming(RUN).items()]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("up", help="make the lab and print ATELIER_NODES")
    make.add_argument("--nodes", type=int, default=3)
    remove = sub.add_parser("down", help="tear the lab down")
    remove.add_argument("--wipe", action="store_true", help="remove the nodes' image cache too")
    sub.add_parser("check", help="say what a torn-down lab left")
    args = parser.parse_args()
    if args.command == "up":
        lab = up(args.nodes)
        print(f"lab up in {lab['seconds']} s; for .env (and ATELIER_BIND_ADDRESS={LINK_NET}.11):")
        print(env_line(nodes_of(args.nodes)))
    elif args.command == "down":
        print(f"lab down in {down(args.wipe):.1f} s")
    else:
        left = leftovers()
        print("\n".join(left) or "nothing left")
        return 1 if left else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
