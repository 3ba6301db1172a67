"""atelier over an ssh:// engine against the same engine's local socket.

Both sides run in one client container on the host's network, with atelier
installed from the wheel: once with the engine's socket mounted (local),
once with DOCKER_HOST=ssh://root@<docker0 gateway>:<port> to a real OpenSSH
server on this machine (remote). Same Python, same state, same engine: the
difference is the SSH transport and the extra hop. Figures:
- a no-op `inv up` (aim: remote under 2x local);
- `inv run -t X -- hostname` (aim: remote under 1.5x local);
- ssh processes started by one no-op `inv up` over ssh:// (a counting ssh
  first on PATH), and the ControlMaster's part in it: the same `up` with
  multiplexing forced off for comparison.

Run with the debian12/PG 15 images built: python3 bench/remote_engine.py [--runs N]"""

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import BENCH_ENV, ROOT, compare

sys.path.insert(0, str(ROOT / "tests" / "engine"))
import engine_sshd  # noqa: E402

from atelier.engine.client import Engine  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=7)
args = parser.parse_args()

NAME = "atelierbench-remote-client"
SELECT = ["--os", "debian12", "--pg", "15"]
TARGET = "debian12-pg15-active"
COUNTER = """#!/bin/sh
echo "$*" >> /tmp/ssh-invocations
exec /usr/bin/ssh "$@"
"""

client = Engine.chosen().client
folder = Path(tempfile.mkdtemp())
sshd = engine_sshd.start(folder / "sshd", "172.17.0.1")
try:
    client.containers.get(NAME).remove(force=True)
except Exception:
    pass
files = engine_sshd.client_image_and_files(client, sshd, folder / "wheels")
container = client.containers.run(engine_sshd.CLIENT_IMAGE, name=NAME, network_mode="host", detach=True,
                                  volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}})
container.put_archive("/", files)
container.put_archive("/", engine_sshd.tar_of({"usr/local/bin/ssh": (COUNTER.encode(), 0o755)}))
environ = {**BENCH_ENV, "ATELIER_STATE_DIR": "/root/work/.state", "HOME": "/root"}
REMOTE = {"DOCKER_HOST": sshd.url()}


def sh(line: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", "exec", "-w", "/root/work",
                           *[f"-e{k}={v}" for k, v in {**environ, **(extra or {})}.items()], NAME, "sh", "-c", line],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{line} failed: {done.stdout}{done.stderr}")
    return done


def timed(words: list[str], extra: dict | None = None) -> float:
    """Wall time of the atelier command inside the container (not docker exec's own)."""
    line = f"s=$(date +%s.%N); atelier {shlex.join(words)} >/dev/null; e=$(date +%s.%N); echo \"$s $e\""
    start, end = sh(line, extra).stdout.split()
    return float(end) - float(start)


try:
    sh(engine_sshd.INSTALL)
    sh("atelier build " + " ".join(SELECT))
    sh("atelier up " + " ".join(SELECT))
    timed(["up", *SELECT], REMOTE)  # warm: the master connection and the first run's files

    up = [(timed(["up", *SELECT], REMOTE), timed(["up", *SELECT])) for _ in range(args.runs)]
    compare("no-op inv up over ssh://", [r for r, _ in up], "no-op inv up, local socket", [l for _, l in up],
            aim="< 2x")
    run = [(timed(["run", "-t", TARGET, "--", "hostname"], REMOTE), timed(["run", "-t", TARGET, "--", "hostname"]))
           for _ in range(args.runs)]
    compare("inv run -- hostname over ssh://", [r for r, _ in run], "inv run -- hostname, local",
            [l for _, l in run], aim="< 1.5x")

    counts = []
    for _ in range(3):
        sh(": > /tmp/ssh-invocations")
        timed(["up", *SELECT], REMOTE)
        counts.append(len(sh("cat /tmp/ssh-invocations").stdout.splitlines()))
    print(f"ssh processes started by one no-op inv up over ssh://: {statistics.median(counts):.0f} "
          f"(runs: {counts}), each through the one master connection")
    listing = sh("ls /tmp/atelier-ssh-0").stdout.split()
    sockets = [n for n in listing if n.startswith("engine-")]
    masters = [n for n in listing if n != "bin" and n not in sockets]
    print(f"after these runs: {len(masters)} master connection(s), {len(sockets)} forwarded engine socket(s)")
    # What the master saves on each of them: a request's ssh through it, and
    # the same command with a full handshake of its own.
    target = f"-p{sshd.ports['open']} root@{sshd.address}"
    mux = f"/usr/bin/ssh -oBatchMode=yes -oControlMaster=auto -oControlPath=/tmp/atelier-ssh-0/%C {target} true"
    own = f"/usr/bin/ssh -oBatchMode=yes -oControlPath=none {target} true"
    each = sh(f"for c in {shlex.quote(mux)} {shlex.quote(own)}; do s=$(date +%s%N); "
              "for i in 1 2 3 4 5 6 7 8 9 10; do $c; done; echo $(( ($(date +%s%N) - s) / 10000000 )); done"
              ).stdout.split()
    print(f"one ssh command through the master: {each[0]} ms; with its own handshake: {each[1]} ms")
finally:
    container.remove(force=True)
    sshd.stop()
