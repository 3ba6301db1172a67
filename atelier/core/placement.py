"""Which node of a swarm runs each container (ATELIER_NODES). Pure.

- The services (HAProxy, Apache, Squid, PgBouncer, Prometheus, etcd...)
  stay on the first node: it holds the published ports the user reaches.
- An OS group (its init container and its servers) goes to one node, the
  least loaded when it is first placed, so the init that is the SSH jump
  host of its servers sits beside them.
- With ATELIER_PLACEMENT=spread each pair's standby goes to the next node
  after its primary's, as production HA keeps a primary and its standby
  apart, and Patroni's etcd members go one per node.
- Placement is stable: a container where it runs, or where it was placed
  before (recorded in the state folder, since its volumes stay on that
  node after `down`), stays there, whatever nodes or profiles are added.
"""

from __future__ import annotations

from collections import Counter

from atelier.core.errors import AtelierError
from atelier.core.matrix import PG_ROLES
from atelier.core.model import Environment

GROUP_ROLES = ("init", *PG_ROLES)


def place(env: Environment, nodes: list[str], policy: str, found: dict[str, str],
          recorded: dict[str, str]) -> dict[str, str]:
    """Container name -> node for every container of `env`: `found` says
    where containers run now, `recorded` where they were placed before;
    both win over a fresh choice (found first), on nodes still listed."""
    placed = {}
    for name in (c.name for c in env.containers):
        where = found.get(name) or recorded.get(name)
        if where in nodes:
            placed[name] = where
    load = Counter(placed.values())

    def settle(name: str, node: str) -> None:
        placed[name] = node
        load[node] += 1

    first = nodes[0]
    members = 0
    for container in env.containers:
        if container.role not in GROUP_ROLES and container.name not in placed:
            if policy == "spread" and container.role.startswith("etcd"):
                # Patroni's DCS across failure domains, as in production: one
                # node lost keeps etcd's quorum.
                settle(container.name, nodes[members % len(nodes)])
                members += 1
            else:
                settle(container.name, first)
    groups: dict[str, list] = {}
    for container in env.containers:
        if container.role in GROUP_ROLES:
            groups.setdefault(container.os, []).append(container)
    for members in groups.values():
        homes = [placed[m.name] for m in members if m.name in placed and m.role != "standby"]
        home = homes[0] if homes else min(nodes, key=lambda n: (load[n], nodes.index(n)))
        for member in members:
            if member.name in placed:
                continue
            node = home
            if policy == "spread" and member.role == "standby":
                try:
                    partner = placed.get(env.partner(member.name).name, home)
                except AtelierError:  # its active is outside the selection
                    partner = home
                node = nodes[(nodes.index(partner) + 1) % len(nodes)]
            settle(member.name, node)
    return placed
