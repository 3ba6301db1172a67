"""One container at a time, through the engine: what it says of itself
(atelier-probe) and whether that makes it ready, and what atelier does to
a single container (start it and wait for sshd, kill it, run a command in
it, copy files into it)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from atelier.core.errors import AtelierError
from atelier.core.model import Container, Environment
from atelier.render.archive import folder_files, tar_bytes


@dataclass
class Probe:
    """What atelier-probe says of one container, plus the engine's state."""

    state: str
    facts: dict

    def get(self, key: str) -> str:
        return self.facts.get(key, "-")


def probe(container) -> Probe:
    container.reload()
    state = container.status
    if state != "running":
        return Probe(state, {})
    result = container.exec_run(["/usr/local/sbin/atelier-probe"], demux=False)
    facts = dict(item.split("=", 1) for item in result.output.decode().split() if "=" in item)
    return Probe(state, facts)


def readiness(container: Container, p: Probe) -> tuple[bool, str]:
    """(ready, what is awaited or wrong) for one container of the model."""
    if p.state != "running":
        return False, f"container {p.state}"
    if not container.systemd:
        if p.get("etcd") == "no-quorum":
            return False, "etcd has no quorum (are its other members up? docker logs)"
        return True, "running"
    system = p.get("system")
    if system in ("initializing", "starting"):
        return False, f"systemd {system}"
    if p.get("sshd") != "active":
        return False, "sshd not active"
    if not container.is_server:
        return True, "ready"
    if p.get("fenced") == "yes":
        return True, f"fenced by a failover: stopped until `inv db.rejoin -t {container.name}`"
    if p.get("setup") == "failed":
        return False, "FAILED: atelier-pg-setup (journalctl -u atelier-pg-setup)"
    if p.get("pg") != "ready":
        return False, "seeding from active" if container.role == "standby" and p.get("setup") == "activating" \
            else "PostgreSQL not answering"
    # The server's own word on its role: after a switchover or failover the
    # container's name no longer says it.
    if p.get("recovery") == "t" or (container.role == "standby" and p.get("recovery") != "f"):
        if p.get("receiver") != "streaming":
            return False, f"standby not streaming ({p.get('receiver')})"
        return True, "streaming"
    if container.role == "standby":
        return True, "promoted: a primary now"
    if p.get("roles") == "failed":
        return False, "FAILED: atelier-pg-roles (journalctl -u atelier-pg-roles)"
    if p.get("roles") != "active":
        return False, "making roles"
    return True, "ready"


def never_started(container) -> bool:
    """Created but never started: its set-up may not have finished (an
    interrupted or killed `up`), so `up` makes it again rather than trust it."""
    state = container.attrs.get("State") or {}
    return container.status == "created" and state.get("StartedAt", "").startswith("0001-")


def stop_and_remove(container, timeout: int = 30) -> None:
    try:
        if container.status == "running":
            container.stop(timeout=timeout)
        container.remove(v=False)
    except Exception as exc:  # already gone is fine
        if "No such container" not in str(exc):
            raise


def existing(engine, env: Environment, name: str):
    """The project's container of the model's `name`, or one line."""
    found = engine.container(env.project, name)
    if found is None:
        raise AtelierError(f"{name} has no container; `inv up` makes it")
    found.reload()
    return found


def start_and_wait_for_sshd(engine, env: Environment, name: str, say, seconds: float = 120) -> None:
    """Start a stopped container of the model and wait for its sshd."""
    found = existing(engine, env, name)
    if found.status == "running":
        return
    say(f"starting container {name}")
    found.start()
    deadline = time.monotonic() + seconds
    while probe(found).get("sshd") != "active":
        if time.monotonic() > deadline:
            raise AtelierError(f"{name} started but its sshd did not answer in {seconds:.0f} s")
        time.sleep(0.5)


def kill(engine, env: Environment, name: str) -> float:
    """`docker kill` (SIGKILL to its init, so to everything in it); the time it was done."""
    existing(engine, env, name).kill()
    return time.time()


def disconnect(engine, env: Environment, name: str) -> None:
    """Take a container off the project network, through its own node's
    engine: the rest of the network no longer reaches it, nor it them."""
    found = existing(engine, env, name)
    found.client.api.disconnect_container_from_network(found.id, env.network, force=True)


def reconnect(engine, env: Environment, name: str) -> None:
    """Put it back on the project network with its static address and name."""
    found = existing(engine, env, name)
    if env.network in ((found.attrs.get("NetworkSettings") or {}).get("Networks") or {}):
        return
    container = env.container(name)
    found.client.api.connect_container_to_network(found.id, env.network, ipv4_address=container.address,
                                                  aliases=[container.name])


def copy_in(container, folder: str, files: dict) -> None:
    """Files (path -> (content, mode)) into a folder of a container, started or not."""
    container.put_archive(folder, tar_bytes(files, folders=False))


def publish_report(engine, env: Environment, path: str, folder: str) -> None:
    """Put a host folder into the apache2 service's html volume, at `path`."""
    apache = existing(engine, env, "apache2")  # on its node's engine, with ATELIER_NODES
    apache.put_archive("/var/www/html", tar_bytes(folder_files(Path(folder), path)))
