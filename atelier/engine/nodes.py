"""Several engines in one swarm (ATELIER_NODES): checking that they form
one, and bringing each node the images its containers need without a
registry, streamed from the engine that built them."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

from atelier.core.errors import AtelierError
from atelier.core.model import PROJECT_LABEL
from atelier.core.parallel import parallel_map


def swarm_of(info: dict) -> dict:
    return info.get("Swarm") or {}


def check_swarm_nodes(nodes: dict, infos: dict[str, dict], members: set[str] | None = None) -> str:
    """The node atelier makes the overlay on (the one manager among the
    nodes), after checking that every node is in its swarm: `infos` is each
    node's engine info, `members` the node IDs its manager lists. Pure."""
    outside = [n for n, i in infos.items() if swarm_of(i).get("LocalNodeState") != "active"]
    if outside:
        name = outside[0]
        state = swarm_of(infos[name]).get("LocalNodeState") or "inactive"
        raise AtelierError(f"node {name} ({nodes[name].host.url}) is not in a swarm (its swarm is {state}): join it "
                           f"to the others' swarm (`docker swarm join-token worker` on the manager), or leave it "
                           "out of ATELIER_NODES")
    managers = [n for n, i in infos.items() if swarm_of(i).get("ControlAvailable")]
    if not managers:
        raise AtelierError("no node of ATELIER_NODES is a swarm manager; name the manager among them "
                           f"({', '.join(infos)} are all workers)")
    if len(managers) == 2:
        raise AtelierError(f"ATELIER_NODES names two managers ({', '.join(managers)}); a swarm of two managers "
                           "stops when either fails: demote one (`docker node demote`) or promote a third")
    manager = managers[0]
    if members is not None:
        strangers = [n for n, i in infos.items() if swarm_of(i).get("NodeID") not in members]
        if strangers:
            raise AtelierError(f"node {strangers[0]} ({nodes[strangers[0]].host.url}) is in another swarm than "
                               f"{manager}'s: join it to {manager}'s swarm, or leave it out of ATELIER_NODES")
    return manager


def check_nodes(engine) -> str:
    """Every node answers and all are in one swarm; the manager's name.
    Nothing is made before this passes."""
    infos = dict(zip(engine.nodes, parallel_map(lambda e: e.info(), engine.nodes.values())))
    manager = check_swarm_nodes(engine.nodes, infos)
    members = {n.id for n in engine.nodes[manager].client.nodes.list()}
    check_swarm_nodes(engine.nodes, infos, members)
    return manager


# ---- images without a registry ------------------------------------------------

@dataclass
class Transfer:
    """One `docker save` of `images` from the building engine, fed to a
    `docker load` on each of `nodes` at once."""

    images: tuple[str, ...]
    nodes: tuple[str, ...]
    sent: int = 0  # bytes read from the save, sent to every node
    seconds: float = 0.0
    errors: dict = field(default_factory=dict)


def missing_images(source_ids: dict[str, str], node_ids: dict[str, dict[str, str]],
                   needed: dict[str, set[str]]) -> list[Transfer]:
    """The transfers that give each node the images it needs with the ids
    the source has: nodes missing the same images share one save. Pure."""
    by_set: dict[tuple, list[str]] = {}
    for node, names in needed.items():
        lacking = tuple(sorted(n for n in names if node_ids.get(node, {}).get(n) != source_ids[n]))
        if lacking:
            by_set.setdefault(lacking, []).append(node)
    return [Transfer(images, tuple(nodes)) for images, nodes in sorted(by_set.items())]


def _save_stream(client, images: tuple[str, ...], chunk: int = 1 << 20):
    """GET /images/get?names=...: one tar of several images, layers once
    (the SDK's get_image takes one name)."""
    api = client.api
    response = api._get(api._url("/images/get"), params={"names": list(images)}, stream=True)
    api._raise_for_status(response)
    return response.iter_content(chunk_size=chunk)


def _fan_out(transfer: Transfer, source, targets: dict, say) -> None:
    """Read the save once; every node's load reads its own queue of it."""
    started = time.monotonic()
    queues = {n: queue.Queue(maxsize=16) for n in transfer.nodes}
    done = object()

    def chunks(node):
        while True:
            item = queues[node].get()
            if item is done:
                return
            yield item

    def load(node):
        try:
            for line in targets[node].client.api.load_image(chunks(node)):
                if isinstance(line, dict) and line.get("error"):
                    raise AtelierError(line["error"])
        except Exception as exc:  # said per node once the save ends
            transfer.errors[node] = f"{type(exc).__name__}: {exc}"
            while True:  # keep the reader going for the other nodes
                if queues[node].get() is done:
                    return

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in transfer.nodes]
    for thread in threads:
        thread.start()
    last = started
    try:
        for piece in _save_stream(source.client, transfer.images):
            for q in queues.values():
                q.put(piece)
            if not transfer.sent:
                last = time.monotonic()  # the engine prepares the tar before the first byte
            transfer.sent += len(piece)
            if time.monotonic() - last > 10:
                last = time.monotonic()
                say(f"streaming {', '.join(transfer.images)} to {', '.join(transfer.nodes)}: "
                    f"{transfer.sent / 1e6:.0f} MB")
    finally:
        for q in queues.values():
            q.put(done)
    for thread in threads:
        while thread.is_alive():  # interruptible, unlike a plain join
            thread.join(0.2)
    transfer.seconds = time.monotonic() - started


def image_ids_on(client, names) -> dict[str, str]:
    import docker

    out = {}
    for name in names:
        try:
            out[name] = client.images.get(name).id
        except docker.errors.ImageNotFound:
            pass
    return out


def distribute_images(engine, needed: dict[str, set[str]], say=print) -> list[Transfer]:
    """Give every node the images it needs (node -> image names), by id,
    streamed from the engine that built them; only what is missing. One
    line if a node's load fails."""
    names = set().union(*needed.values()) if needed else set()
    source_ids = image_ids_on(engine.client, names)
    absent = sorted(names - set(source_ids))
    if absent:
        raise AtelierError(f"image(s) not built: {', '.join(absent)}; run `inv build` first")
    node_ids = dict(zip(needed, parallel_map(lambda n: image_ids_on(engine.nodes[n].client, needed[n]), needed)))
    transfers = missing_images(source_ids, node_ids, needed)
    for transfer in transfers:
        say(f"streaming {', '.join(transfer.images)} to {', '.join(transfer.nodes)} (docker save | docker load)")
    parallel_map(lambda t: _fan_out(t, engine, engine.nodes, say), transfers)
    for transfer in transfers:
        if transfer.errors:
            node, error = next(iter(transfer.errors.items()))
            raise AtelierError(f"loading {', '.join(transfer.images)} into node {node} failed: {error}")
        say(f"streamed {', '.join(transfer.images)} to {', '.join(transfer.nodes)}: "
            f"{transfer.sent * len(transfer.nodes) / 1e6:.0f} MB sent in {transfer.seconds:.1f}s")
    after = dict(zip(needed, parallel_map(lambda n: image_ids_on(engine.nodes[n].client, needed[n]), needed)))
    for node, names_needed in needed.items():
        for name in names_needed:
            if after[node].get(name) != source_ids[name]:
                raise AtelierError(f"node {node} has {name} as {after[node].get(name, 'nothing')} after loading, "
                                   f"not {source_ids[name]}")
    return transfers


# ---- inv nodes -------------------------------------------------------------------

@dataclass
class NodeRow:
    node: str
    engine: str
    reachable: str  # "yes", or why not
    swarm: str  # manager, worker, or the swarm state
    containers: str  # how many of the project's, and which
    images: str  # how many atelier images it holds


def node_rows(engine, project: str, image_names: set[str]) -> list[NodeRow]:
    """One row per node of ATELIER_NODES: what `inv nodes` prints."""
    def row(item):
        name, node = item
        try:
            info = node.info()
        except AtelierError as error:
            return NodeRow(name, node.host.url, f"no: {error}", "-", "-", "-")
        swarm = swarm_of(info)
        role = ("manager" if swarm.get("ControlAvailable") else "worker") \
            if swarm.get("LocalNodeState") == "active" else swarm.get("LocalNodeState") or "inactive"
        found = node.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
        names = sorted(c.labels.get("atelier.name", c.name) for c in found)
        present = image_ids_on(node.client, image_names)
        return NodeRow(name, node.host.url, "yes", role, f"{len(names)}: {' '.join(names)}" if names else "0",
                       f"{len(present)} of {len(image_names)}")

    return parallel_map(row, engine.nodes.items())
