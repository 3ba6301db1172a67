"""atelier on a remote engine (DOCKER_HOST=ssh://), for real, on one machine.

The engine host is this machine, through a real OpenSSH server that listens
only on the gateway address of a bridge network of its own. The client is a
container on that network with atelier installed from the wheel, OpenSSH's
client, a key the engine host accepts, and no docker.sock: its 127.0.0.1 is
not the engine's, so every command that reaches a container proves the
tunnel (engine API over `ssh ... docker system dial-stdio`; SSH through the
engine host to HAProxy on that host's loopback). It also stands for the
installed package: build, up, status, run, put/get, down from the wheel."""

from __future__ import annotations

import shlex
import subprocess

import pytest

import engine_sshd
from atelier.engine.host import engine_socket_name, parse_ssh_url
from helpers import ENGINE, project_settings

pytestmark = pytest.mark.engine

PROJECT = "ateliertest-remote"
CLIENT_NET = "ateliertest-remote-client"
CLIENT_SUBNET, GATEWAY = "172.19.0.0/24", "172.19.0.1"
SELECT = ("--os", "debian12", "--pg", "15")
ACTIVE = "debian12-pg15-active"
HOME = "/root"
WORK = "/root/work"


def _remove(client, kind, name):
    try:
        getattr(client, kind).get(name).remove(force=True) if kind == "containers" else \
            getattr(client, kind).get(name).remove()
    except Exception:
        pass


class Client:
    """The client container: runs the installed `atelier` (or anything) there."""

    def __init__(self, container, environ: dict):
        self.container, self.environ = container, environ

    def sh(self, line: str, environ: dict | None = None, timeout: int = 900):
        done = subprocess.run(["timeout", str(timeout), "docker", "exec", "-w", WORK,
                               *[f"-e{k}={v}" for k, v in {**self.environ, **(environ or {})}.items()],
                               self.container.name, "sh", "-c", line],
                              capture_output=True, text=True, timeout=timeout + 30)
        return done

    def atelier(self, *args, check=True, environ=None):
        done = self.sh("atelier " + shlex.join(args), environ)
        if check and done.returncode != 0:
            raise AssertionError(f"atelier {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    why = engine_sshd.available()
    if why:
        pytest.skip(why)
    client = ENGINE.client
    _remove(client, "containers", CLIENT_NET)
    _remove(client, "networks", CLIENT_NET)
    import docker

    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=CLIENT_SUBNET, gateway=GATEWAY)])
    network = client.networks.create(CLIENT_NET, driver="bridge", ipam=ipam)
    server = engine_sshd.start(tmp_path_factory.mktemp("engine-sshd"), GATEWAY)
    yield server
    server.stop()
    network.remove()


@pytest.fixture(scope="module")
def remote(sshd, tmp_path_factory):
    client = ENGINE.client
    files = engine_sshd.client_image_and_files(client, sshd, tmp_path_factory.mktemp("wheels"))
    container = client.containers.run(engine_sshd.CLIENT_IMAGE, name=CLIENT_NET, network=CLIENT_NET, detach=True)
    container.put_archive("/", files)
    environ = {**project_settings(PROJECT, "172.21", 24000), "DOCKER_HOST": sshd.url(),
               "ATELIER_STATE_DIR": f"{WORK}/.state", "HOME": HOME}
    remote = Client(container, environ)
    done = remote.sh(engine_sshd.INSTALL)
    assert done.returncode == 0, done.stderr
    assert remote.sh("test -S /var/run/docker.sock || command -v docker").returncode != 0  # no engine of its own
    yield remote
    remote.atelier("down", "--volumes", "--yes", check=False)
    container.remove(force=True)


def test_build_up_status_and_run_on_three_targets_over_the_ssh_engine(remote, sshd):
    remote.atelier("build", *SELECT)  # the images are cached on the engine: nothing is rebuilt
    up = remote.atelier("up", *SELECT)
    assert "ready:" in up.stdout
    status = remote.atelier("status")
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:]}
    assert rows["debian12-pg15-standby"][6:9] == ["standby", ACTIVE, "ready"], status.stdout
    notes = status.stderr.strip().splitlines()
    assert notes[0].startswith("failover: plain (atelier's db.switchover"), status.stderr
    assert notes[-1] == (f"engine {sshd.url()}; ports on {GATEWAY}'s loopback: ssh 24022, "
                         "http 24080, squid 24128; `inv forward` brings them to this machine's 127.0.0.1")
    run = remote.atelier("run", "-t", f"{ACTIVE},debian12-pg15-standby,debian12-init", "--", "hostname")
    assert sorted(line.split()[-1] for line in run.stdout.splitlines()) == sorted(
        [ACTIVE, "debian12-pg15-standby", "debian12-init"])
    assert remote.atelier("run", "-t", ACTIVE, "--", "psql", "-XAtc", "select 6 * 7").stdout.strip() == "42"


def test_the_published_ports_are_not_reachable_from_the_client_directly(remote):
    probe = ("import socket,sys\n"
             "for host in ('127.0.0.1', '%s'):\n"
             "    try:\n"
             "        socket.create_connection((host, 24022), timeout=3).close(); print('open', host)\n"
             "    except OSError as e: print('closed', host)\n") % GATEWAY
    done = remote.sh(f"python3 -c {shlex.quote(probe)}")
    assert done.stdout.split("\n")[:2] == ["closed 127.0.0.1", f"closed {GATEWAY}"], done.stdout + done.stderr


def test_put_get_and_a_pg_helper_go_through_the_tunnel(remote):
    remote.sh("head -c 300000 /dev/urandom > payload && sha256sum payload > payload.sum")
    remote.atelier("put", "payload", "-t", ACTIVE)
    remote.atelier("get", "payload", "-t", ACTIVE, "--local", "back-{name}")
    same = remote.sh(f"sha256sum < back-{ACTIVE} | cut -d' ' -f1; cut -d' ' -f1 payload.sum")
    first, second = same.stdout.split()
    assert first == second
    status = remote.atelier("pg.status", "-t", ACTIVE)
    assert "Active: active (running)" in status.stdout, status.stdout


def test_the_generated_ssh_config_goes_through_the_engine_host(remote):
    done = remote.sh(f"ssh -F {WORK}/.state/ssh_config -oBatchMode=yes {ACTIVE} hostname")
    assert done.stdout.strip() == ACTIVE, done.stderr


def test_forward_brings_the_http_port_to_the_clients_loopback(remote):
    # Started in the background as Ctrl-C would find it in a terminal: sh
    # would have it ignore SIGINT otherwise.
    launch = ("import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
              "os.execvp('atelier', ['atelier', 'forward', '--http'])")
    remote.sh(f"python3 -c {shlex.quote(launch)} > forward.log 2>&1 & echo $! > forward.pid")
    fetch = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:24080/', timeout=5).status)"
    try:
        # It says so once the port listens here.
        said = remote.sh("for i in $(seq 100); do grep -q 'Ctrl-C stops' forward.log && break; sleep 0.2; done; "
                         "cat forward.log").stdout
        assert f"http: 127.0.0.1:24080 here -> 127.0.0.1:24080 on root@{GATEWAY}" in said, said
        done = remote.sh(f"python3 -c {shlex.quote(fetch)}")
        assert done.stdout.strip() == "200", done.stdout + done.stderr
    finally:
        remote.sh("kill -INT $(cat forward.pid)")
    gone = ("import socket,time\n"
            "for _ in range(50):\n"
            "    try: socket.create_connection(('127.0.0.1', 24080), timeout=1).close(); time.sleep(0.1)\n"
            "    except OSError: print('closed'); break\n")
    assert remote.sh(f"python3 -c {shlex.quote(gone)}").stdout.strip() == "closed"  # Ctrl-C ends the forward


@pytest.mark.parametrize("which, environ, expected", [
    ("closed", {}, "cannot reach the engine host root@172.19.0.1:1 over SSH: ssh: connect to host 172.19.0.1 "
                   "port 1: Connection refused (atelier uses your ssh_config, keys, agent and known_hosts; "
                   "try `ssh -p 1 root@172.19.0.1`)"),
    ("noforward", {}, "refuses TCP forwarding"),
    ("nodocker", {}, "has no docker CLI on its PATH"),
    ("open", {"ATELIER_NETWORK": "overlay", "ATELIER_PROJECT": "ateliertest-overlay", "ATELIER_SUBNET": "172.18",
              "ATELIER_STATE_DIR": f"{WORK}/.state-overlay"},
     "ATELIER_NETWORK=overlay needs the engine to be a swarm manager"),
])
def test_bad_engine_hosts_are_one_line(remote, sshd, which, environ, expected):
    url = f"ssh://root@{GATEWAY}:1" if which == "closed" else sshd.url(which)
    done = remote.atelier("up", *SELECT, check=False, environ={"DOCKER_HOST": url, **environ})
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_the_engine_socket_is_forwarded_through_one_master_and_the_sdks_ssh_mode_is_the_fallback(remote, sshd):
    # An sshd that refuses socket forwarding: the SDK's `ssh ... docker system dial-stdio` instead.
    status = remote.atelier("status", environ={"DOCKER_HOST": sshd.url("nosocket")})
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:]}
    assert rows[ACTIVE][5:7] == ["running", "primary"], status.stdout
    run = remote.atelier("run", "-t", ACTIVE, "--", "hostname", environ={"DOCKER_HOST": sshd.url("nosocket")})
    assert run.stdout.strip() == ACTIVE
    sockets = remote.sh("ls /tmp/atelier-ssh-0").stdout.split()
    assert engine_socket_name(parse_ssh_url(sshd.url())) in sockets, sockets
    assert engine_socket_name(parse_ssh_url(sshd.url("nosocket"))) not in sockets, sockets  # not kept


def test_down_keeps_the_volumes_on_the_engine_host(remote):
    down = remote.atelier("down")
    assert "volumes kept" in down.stdout
    volumes = ENGINE.client.volumes.list(filters={"label": f"atelier.project={PROJECT}"})
    assert volumes
