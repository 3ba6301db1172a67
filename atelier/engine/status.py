"""What runs: one row per container of the project, with what its server
says of its role, and the host keys read again through the engine."""

from __future__ import annotations

from dataclasses import dataclass

from atelier.core.errors import AtelierError
from atelier.core.model import Environment
from atelier.core.parallel import parallel_map
from atelier.core.state import record_host_keys
from atelier.engine.containers import probe, readiness
from atelier.render.ssh_config import write_ssh_config

@dataclass
class StatusRow:
    name: str
    role: str
    os: str
    major: str
    address: str
    state: str
    serves: str  # primary or standby, as the server itself says (pg_is_in_recovery)
    follows: str  # a standby's primary, by its container name, and whether it streams
    health: str
    node: str = ""  # with ATELIER_NODES: the node whose engine runs it


def reread_host_keys(engine, env: Environment) -> dict[str, str]:
    """Every running container's host key, read through the engine (a trusted
    channel) and recorded in place of what was recorded before."""
    containers = engine.project_containers(env.project)
    probes = dict(zip(containers, parallel_map(probe, containers.values())))
    keys = {n: p.get("hostkey") for n, p in probes.items() if p.get("hostkey") not in ("-", "")}
    record_host_keys(env.settings, keys)
    write_ssh_config(env, engine.entry_host)
    return keys


def status(engine, env: Environment) -> list[StatusRow]:
    """One row per container of the project that exists on the engine."""
    containers = engine.project_containers(env.project)

    def row(item):
        name, container = item
        labels = container.labels
        p = probe(container)
        try:
            c = env.container(name)
            ready, why = readiness(c, p)
            # A fenced server counts as ready (up does not wait for it), and says why it is down.
            health = why if not ready or p.get("fenced") == "yes" else "ready"
        except AtelierError:  # a container of another selection
            health = "outside selection"
        follows = "-"
        if p.get("recovery") == "t":
            upstream = env.upstream_name(name, p.get("upstream"))
            receiver = p.get("receiver")
            follows = upstream if receiver == "streaming" else f"{upstream}(not-streaming:{receiver})"
        nets = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        address = next((n.get("IPAddress") for n in nets.values() if n.get("IPAddress")), "-")
        serves = {"t": "standby", "f": "primary"}.get(p.get("recovery"), "-")
        return StatusRow(name, labels.get("atelier.role", "?"), labels.get("atelier.os", "?"),
                         labels.get("atelier.major", "-"), address, p.state, serves, follows, health,
                         getattr(container, "atelier_node", ""))

    order = {c.name: i for i, c in enumerate(env.containers)}
    rows = parallel_map(row, containers.items())
    return sorted(rows, key=lambda r: (order.get(r.name, len(order)), r.name))
