"""Bringing a selection up and down: the network, volumes and containers
the model asks for, changed only where what runs differs (plan_up, pure),
then waiting until every container is ready and the SSH entry answers."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from atelier.core.errors import AtelierError
from atelier.core.model import (CACHE_LABEL, DATA_VOLUME, NOFILE, PROJECT_LABEL, Container, Environment,
                                overlay_ip_range, select)
from atelier.core.parallel import parallel_map
from atelier.core.placement import place
from atelier.core.state import (forget_leaders, forget_placements, forget_pool_move, last_leaders, placements,
                                record_host_keys, remember_leaders, remember_placements, short_lock, write_file)
from atelier.engine import host as engine_host
from atelier.engine.containers import Probe, never_started, probe, readiness, stop_and_remove
from atelier.engine.nodes import check_nodes, distribute_images, image_ids_on, swarm_of
from atelier.render.archive import tar_bytes
from atelier.render.runtime import runtime_files
from atelier.render.spec import ContainerSpec, container_spec
from atelier.render.ssh_config import write_ssh_config

CONFIG_LABEL = "atelier.config"


def cgroup_version(info: dict) -> int:
    """From the engine's info (`client.info()`)."""
    return int(info.get("CgroupVersion") or 1)


def nofile_ceiling(client, env: Environment, image: str, engine_id: str) -> int:
    """The highest nofile limit a container of this engine may have: the
    hard limit its containers get by default (the engine's own), read once
    per engine (its info's ID) with a throwaway container and kept in the
    state folder."""
    path = env.settings.state_dir / "engine.json"
    with short_lock(env.settings.state_dir, "engine"):
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
        if engine_id not in known:
            output = client.containers.run(image, ["sh", "-c", "ulimit -Hn"], entrypoint=[], remove=True,
                                           network_mode="none", user="root")
            word = output.decode().strip()
            known[engine_id] = NOFILE[1] if word == "unlimited" else int(word)
            write_file(path, json.dumps(known, indent=1) + "\n")
    return int(known[engine_id])


# ---- up ----------------------------------------------------------------------

def _port_free(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _published_ports(container) -> set[int]:
    bindings = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    return {int(b["HostPort"]) for items in bindings.values() for b in (items or []) if b.get("HostPort")}


def _check_images(env: Environment, ids: dict) -> None:
    """Everything that could make `up` fail half-way, checked before any change."""
    missing = sorted({c.image.name for c in env.containers} - set(ids))
    if missing:
        raise AtelierError(
            f"image(s) not built: {', '.join(missing)}; run `inv build {env.selection.args}` first"
        )


def _check_ports(specs: dict, existing: dict, remote: bool = False) -> None:
    """Ports to publish are free here; on a remote engine's host they are
    the engine's to check (it refuses a taken one when starting)."""
    if remote:
        return
    ours = set()
    for c in existing.values():
        ours |= _published_ports(c)
    for spec in specs.values():
        for _, host_port in spec.ports:
            if host_port not in ours and not _port_free(spec.bind, host_port):
                raise AtelierError(
                    f"port {host_port} on {spec.bind} is already taken (needed by {spec.hostname}); "
                    "free it or choose another in .env (ATELIER_SSH_PORT, ATELIER_HTTP_PORT, ATELIER_SQUID_PORT)"
                )


def check_swarm(info: dict) -> None:
    """An overlay network is made on a swarm manager."""
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        state = swarm.get("LocalNodeState") or "inactive"
        raise AtelierError(f"ATELIER_NETWORK=overlay needs the engine to be a swarm manager, and its swarm is "
                           f"{state}{'' if state != 'active' else ' (a worker)'}: `docker swarm init` on the engine "
                           "host, or ATELIER_NETWORK=bridge")


def ensure_network(client, env: Environment, info: dict | None = None):
    import docker

    try:
        network = client.networks.get(env.network)
    except docker.errors.NotFound:
        overlay = env.settings.network_driver == "overlay"
        if overlay:
            check_swarm(info if info is not None else client.info())
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=env.settings.subnet_cidr, gateway=env.gateway,
            iprange=overlay_ip_range(env.settings.subnet) if overlay else None)])
        try:
            return client.networks.create(env.network, driver=env.settings.network_driver, ipam=ipam,
                                          attachable=overlay or None, labels={PROJECT_LABEL: env.project})
        except docker.errors.APIError as exc:
            raise AtelierError(
                f"cannot create network {env.network} with subnet {env.settings.subnet_cidr}: "
                f"{exc.explanation}; choose another ATELIER_SUBNET"
            ) from None
    driver = network.attrs.get("Driver")
    if driver != env.settings.network_driver:
        raise AtelierError(f"network {env.network} exists as {driver} but ATELIER_NETWORK gives "
                           f"{env.settings.network_driver}; run `inv down` first or change ATELIER_NETWORK")
    configs = (network.attrs.get("IPAM") or {}).get("Config") or []
    subnets = {c.get("Subnet") for c in configs}
    if env.settings.subnet_cidr not in subnets:
        raise AtelierError(
            f"network {env.network} exists with subnet {', '.join(sorted(filter(None, subnets)))} "
            f"but ATELIER_SUBNET gives {env.settings.subnet_cidr}; run `inv down` first or change ATELIER_SUBNET"
        )
    return network


def bring_over_legacy_data(client, env: Environment, container: Container, say) -> bool:
    """A cluster made before the data volume was shared across majors lives
    in a volume of its own: copy it into its major's folder of the shared
    volume, once (not when that folder exists), and keep the old volume."""
    import docker

    legacy = env.legacy_data_volume(container)
    try:
        client.volumes.get(legacy)
    except docker.errors.NotFound:
        return False
    shared = env.volume_name(container, DATA_VOLUME)
    folder = str(container.major)
    script = (f'if [ -e "/to/{folder}" ]; then exit 3; fi; '
              f'cp -a /from "/to/.{folder}.copying" && mv "/to/.{folder}.copying" "/to/{folder}"')
    try:
        client.containers.run(container.image.name, ["bash", "-c", script], entrypoint=[], remove=True,
                              volumes={legacy: {"bind": "/from", "mode": "ro"}, shared: {"bind": "/to", "mode": "rw"}})
    except docker.errors.ContainerError as exc:
        if exc.exit_status == 3:
            return False
        raise AtelierError(f"{container.name}: copying its cluster from volume {legacy} into {shared} failed: "
                           f"{(exc.stderr or b'').decode(errors='replace').strip()}") from None
    say(f"{container.name}: its cluster was copied from volume {legacy} (one per container, as atelier kept "
        f"them before) into {shared}/{folder}; {legacy} is kept until you remove it")
    return True


def _create(client, env: Environment, container: Container, spec: ContainerSpec, config_hash: str, say=print):
    import docker
    from docker.types import EndpointConfig, Ulimit

    owner = {env.volume_name(container, DATA_VOLUME): env.data_volume_owner(container)}
    wanted = [(v, {PROJECT_LABEL: env.project, "atelier.name": owner.get(v, container.name)}) for v, _ in spec.volumes]
    wanted += [(v, {CACHE_LABEL: "ccache", "atelier.os": container.os}) for v, _ in spec.caches]
    for volume, labels in wanted:
        try:
            client.volumes.get(volume)
        except docker.errors.NotFound:
            client.volumes.create(volume, labels=labels)
    if container.is_server:
        bring_over_legacy_data(client, env, container, say)
    mounts = {v: {"bind": m, "mode": "rw"} for v, m in spec.volumes + spec.caches}
    mounts.update({h: {"bind": m, "mode": mode} for h, m, mode in spec.binds})
    kwargs = dict(
        name=spec.name,
        hostname=spec.hostname,
        domainname="atelier",
        labels={**spec.labels, CONFIG_LABEL: config_hash},
        detach=True,
        network=env.network,
        networking_config={env.network: EndpointConfig(
            client.api._version, ipv4_address=spec.address, aliases=[container.name])},
        extra_hosts=dict(spec.extra_hosts),
        ports={f"{port}/tcp": (spec.bind, host) for port, host in spec.ports},
        volumes=mounts,
        tmpfs={path: "" for path in spec.tmpfs},
        cap_add=list(spec.cap_add) or None,
        privileged=spec.privileged,
        ulimits=[Ulimit(name=n, soft=s, hard=h) for n, (s, h) in spec.ulimits.items()] or None,
        stop_signal=spec.stop_signal or None,
    )
    if spec.cgroupns:
        kwargs["cgroupns"] = spec.cgroupns
    created = client.containers.create(spec.image, **kwargs)
    try:
        files = runtime_files(env, container)
        if files:
            created.put_archive("/", tar_bytes(files, folders=False))
    except BaseException:
        # Without its files (keys, secrets, haproxy.cfg) the container is not
        # what its config label says: never leave it for the next `up`.
        created.remove(force=True)
        raise
    return created


@dataclass(frozen=True)
class Found:
    """What `up` needs to know of a container the engine has."""

    config_hash: str | None
    status: str
    never_started: bool = False


@dataclass
class UpPlan:
    remove: list[str]  # outside the selection (volumes stay)
    recreate: list[str]  # what it runs changed, or its set-up may not have finished
    create: list[str]  # in the model's order: everything recreated or missing
    start: list[str]  # everything not running after that


def plan_up(wanted: dict[str, str], found: dict[str, Found]) -> UpPlan:
    """The changes that make the engine hold `wanted` (name -> config hash,
    in the model's order), given what it holds. Pure."""
    remove = [n for n in found if n not in wanted]
    recreate = [n for n in found if n in wanted
                and (found[n].config_hash != wanted[n] or found[n].never_started)]
    create = [n for n in wanted if n not in found or n in recreate]
    start = [n for n in wanted if n in create or found[n].status != "running"]
    return UpPlan(remove, recreate, create, start)


@dataclass
class NodeSetup:
    """What `up` needs of one engine that runs containers."""

    client: object
    info: dict
    env: Environment  # with this engine's nofile ceiling


def node_setups(engine, env: Environment, placed: dict[str, str]) -> dict[str, NodeSetup]:
    """Per engine that runs containers: its client, its info, and the
    environment as its limits make it (read once per engine)."""
    def setup(item):
        node, runner = item
        info = runner.info()
        image = next((c.image.name for c in env.containers if placed[c.name] == node), env.containers[0].image.name)
        ceiling = nofile_ceiling(runner.client, env, image, info.get("ID", ""))
        return NodeSetup(runner.client, info, dataclasses.replace(env, nofile_ceiling=ceiling))

    runners = {n: e for n, e in engine.runners.items() if n in set(placed.values())}
    return dict(zip(runners, parallel_map(setup, runners.items())))


def network_engine(engine):
    """The engine that makes and removes the project network: the swarm's
    manager among the nodes, else the one engine."""
    if not engine.nodes:
        return engine
    return next((node for node in engine.nodes.values() if swarm_of(node.info()).get("ControlAvailable")),
                next(iter(engine.nodes.values())))


def check_placed_nodes(engine, recorded: dict[str, str]) -> None:
    """Containers placed on a node ATELIER_NODES no longer names are out of
    reach: placed again elsewhere they would leave their data behind, and
    what still runs there holds their addresses on the overlay (and the
    network, which down could then not remove). One line, before any change."""
    gone = sorted({node for node in recorded.values() if node and node not in engine.nodes})
    if engine.nodes and gone:
        raise AtelierError(f"containers were placed on node(s) {', '.join(gone)}, which ATELIER_NODES no longer "
                           "names; list them again (`inv down --volumes` with them listed starts afresh)")


def placement(engine, env: Environment, existing: dict) -> dict[str, str]:
    """Container name -> node name ("" on one engine); recorded for the next `up`."""
    if not engine.nodes:
        return {c.name: "" for c in env.containers}
    found = {name: getattr(c, "atelier_node", "") for name, c in existing.items()}
    recorded = placements(env.settings.state_dir)
    check_placed_nodes(engine, {c.name: recorded[c.name] for c in env.containers if c.name in recorded})
    placed = place(env, list(engine.nodes), env.settings.placement, found, recorded)
    remember_placements(env.settings.state_dir, placed)
    return placed


def up(engine, env: Environment, say=print, timeout: float = 600) -> dict:
    """Make the engine (or the nodes of ATELIER_NODES) match the environment,
    then wait until it is ready. Returns a summary dict (counts and seconds)
    for benchmarks and tests."""
    started = time.monotonic()
    manager = check_nodes(engine) if engine.nodes else ""  # every node answers, before anything is made
    existing = engine.project_containers(env.project)
    placed = placement(engine, env, existing)
    if engine.nodes:
        needed: dict[str, set[str]] = {}
        for container in env.containers:
            needed.setdefault(placed[container.name], set()).add(container.image.name)
        distribute_images(engine, needed, say)
    ids = image_ids_on(engine.client, {c.image.name for c in env.containers})
    _check_images(env, ids)
    setups = node_setups(engine, env, placed)
    specs = {c.name: container_spec(setups[placed[c.name]].env, c, cgroup_version(setups[placed[c.name]].info))
             for c in env.containers}
    _check_ports(specs, existing, remote=engine.is_remote or bool(engine.nodes))
    hashes = {name: spec.config_hash(ids[spec.image]) for name, spec in specs.items()}
    plan = plan_up(hashes, {name: Found(c.labels.get(CONFIG_LABEL), c.status, never_started(c))
                            for name, c in existing.items()})
    changes = plan.create or plan.start or plan.remove or plan.recreate
    if engine.entry_host.is_remote and changes and any(c.role == "init" for c in env.containers):
        # Before anything changes; a no-op up pays no extra handshake for it
        # (wait_ssh_entry asks the same if HAProxy does not answer).
        engine_host.check_forwarding(engine.entry_host.ssh)
    maker = engine.nodes[manager] if manager else engine  # the swarm's manager makes the overlay
    ensure_network(maker.client, env, maker.info())

    parallel_map(stop_and_remove, [existing.pop(n) for n in plan.remove + plan.recreate], workers=8)
    if plan.remove or plan.recreate:
        say(f"removed {len(plan.remove)} container(s) outside the selection, "
            f"{len(plan.recreate)} to recreate (volumes kept)")
    for container in env.containers:
        if container.name in plan.create:
            setup = setups[placed[container.name]]
            existing[container.name] = _create(setup.client, setup.env, container, specs[container.name],
                                               hashes[container.name], say)
    first, after = start_order(env, plan.start, last_leaders(env.settings.state_dir))
    if engine.nodes:  # one engine per node: their starts overlap
        parallel_map(lambda name: existing[name].start(), first, workers=8)
    else:
        for name in first:
            existing[name].start()
    if after:
        wait_for_leaders(env, existing, after, started + timeout, say)
        for name in after:
            existing[name].start()
    if plan.create or plan.start:
        where = f" across {len(set(placed.values()))} node(s)" if engine.nodes else ""
        say(f"created {len(plan.create)}, started {len(plan.start)} container(s) on network {env.network}{where}")

    # Keys of containers that were kept stay recorded; new ones are recorded
    # as soon as they are read, so that a failed `up` can still be looked into.
    record_host_keys(env.settings, {}, keep=set(existing) - set(plan.create))
    write_ssh_config(env, engine.entry_host)
    wait_ready(engine, env, existing, say, timeout, deadline=started + timeout)
    if any(c.role == "init" for c in env.containers):
        wait_ssh_entry(engine, env, deadline=time.monotonic() + 60)
    seconds = time.monotonic() - started
    say(f"ready: {len(env.containers)} container(s) of {env.selection.label} in {seconds:.1f}s")
    return {"created": len(plan.create), "started": len(plan.start),
            "removed": len(plan.remove) + len(plan.recreate), "seconds": seconds, "placement": placed}


def start_order(env: Environment, names: list[str], leaders: dict[str, str]) -> tuple[list[str], list[str]]:
    """(start first, start after): under Patroni, when both members of a pair
    start, the one that led it when `down` stopped it (else its active)
    starts first, and its partner only once it leads again; started together
    with equal WAL, either may win the leader lock. Pure."""
    if not env.settings.patroni:
        return list(names), []
    after = []
    for pair in env.pairs:
        members = [m.name for m in pair.members]
        if all(m in names for m in members):
            leader = leaders.get(pair.name) if leaders.get(pair.name) in members else members[0]
            after += [m for m in members if m != leader]
    return [n for n in names if n not in after], after


def wait_for_leaders(env: Environment, containers: dict, after: list[str], deadline: float, say) -> None:
    """Until the partner of each of `after` serves as the primary (Patroni
    promotes it once it holds the leader lock), or until `deadline`: then
    the rest start anyway, and the readiness wait says what is missing."""
    leaders = [m.name for pair in env.pairs for m in pair.members
               if m.name not in after and any(o.name in after for o in pair.members)]
    say(f"starting {', '.join(leaders)} first: each led its pair when it stopped")
    while time.monotonic() < deadline:
        if all(probe(containers[name]).get("recovery") == "f" for name in leaders):
            return
        time.sleep(0.5)


def wait_ready(engine, env: Environment, containers: dict, say=print, timeout: float = 600,
               deadline: float | None = None) -> dict[str, Probe]:
    """Poll every container of the model until ready (`containers`: name ->
    container object, the project's), until `deadline` (else `timeout`
    from now); returns each one's last probe."""
    pending = {c.name: c for c in env.containers}
    probes: dict[str, Probe] = {}
    deadline = deadline if deadline is not None else time.monotonic() + timeout
    last_report = 0.0
    waits: dict[str, str] = {}
    recorded: dict[str, str] = {}
    while True:
        names = list(pending)
        for name, p in zip(names, parallel_map(lambda n: probe(containers[n]), names)):
            probes[name] = p
        fresh = {n: probes[n].get("hostkey") for n in names
                 if probes[n].get("hostkey") not in ("-", "") and recorded.get(n) != probes[n].get("hostkey")}
        if fresh:
            record_host_keys(env.settings, fresh, keep=set(containers))
            write_ssh_config(env, engine.entry_host)
            recorded.update(fresh)
        for name in names:
            ready, why = readiness(pending[name], probes[name])
            if ready:
                pending.pop(name)
            elif why.startswith("FAILED"):
                raise AtelierError(f"{env.docker_name(pending[name])}: {why}")
            else:
                waits[name] = why
        if not pending:
            return probes
        now = time.monotonic()
        if now > deadline:
            raise AtelierError("not ready after %ds: %s" % (
                timeout, "; ".join(f"{n}: {waits[n]}" for n in pending)))
        if now - last_report > 10:
            say("waiting: " + ", ".join(f"{n} ({waits[n]})" for n in pending))
            last_report = now
        time.sleep(0.3)


def wait_ssh_entry(engine, env: Environment, deadline: float) -> None:
    """The SSH entry answers: HAProxy on the host port hands over an sshd
    banner (on a remote engine, through a channel from the engine host)."""
    address, port = env.settings.entry_address
    chosen = engine.entry_host
    asked = False
    while True:
        if _banner(chosen, address, port).startswith(b"SSH-"):
            return
        if chosen.is_remote and not asked:
            engine_host.check_forwarding(chosen.ssh)  # one line if the engine host refuses the channel
            asked = True
        if time.monotonic() > deadline:
            where = f" on {chosen.ssh}" if chosen.is_remote else ""
            raise AtelierError(f"no SSH banner through HAProxy at {address}:{port}{where}")
        time.sleep(0.3)


def _banner(chosen, address: str, port: int) -> bytes:
    if chosen.is_remote:
        argv = engine_host.ssh_argv(chosen.ssh, f"-W{address}:{port}")
        try:
            with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL) as proc:
                timer = threading.Timer(5, proc.kill)  # a banner that never comes ends the read
                timer.start()
                try:
                    return proc.stdout.read(4)
                finally:
                    timer.cancel()
                    proc.kill()
        except OSError:
            return b""
    try:
        with socket.create_connection((address, port), timeout=2) as s:
            return s.recv(64)
    except OSError:
        return b""


def stop_order(env: Environment, found: dict) -> list[list[str]]:
    """Under Patroni, each pair's replica stops first, then its leader (whose
    last WAL is then the newest), then everything else; the leaders are
    recorded for the next `up` to start first. Else everything at once."""
    if not env.settings.patroni:
        return [list(found)]
    pairs = Environment(env.settings, select("full", user_profiles=env.settings.profiles)).pairs
    members = {m.name for pair in pairs for m in pair.members if m.name in found}
    leaders = {}
    for pair in pairs:
        leading = [m.name for m in pair.members if m.name in found and found[m.name].status == "running"
                   and probe(found[m.name]).get("recovery") == "f"]
        if len(leading) == 1:
            leaders[pair.name] = leading[0]
    remember_leaders(env.settings.state_dir, leaders)
    first = set(leaders.values())
    return [[n for n in found if n in members and n not in first], [n for n in found if n in first],
            [n for n in found if n not in members]]


def down(engine, env: Environment, remove_volumes: bool = False, remove_caches: bool = False, say=print) -> dict:
    """Remove the project's containers and network, on every node; with
    `remove_volumes` its volumes too, and with `remove_caches` the compiler
    caches, which every project on the engine shares (those another
    project's containers use stay, and are named)."""
    import docker

    check_placed_nodes(engine, placements(env.settings.state_dir))  # else their containers would be left running
    found = engine.project_containers(env.project)
    for wave in stop_order(env, found):
        parallel_map(stop_and_remove, [found[name] for name in wave], workers=8)
    containers = list(found.values())
    runners = list(engine.runners.values())

    try:  # a swarm's network is the manager's to remove; a worker refuses
        network_engine(engine).client.networks.get(env.network).remove()
    except docker.errors.NotFound:
        pass
    volumes, caches, busy, kept = [], [], [], []
    if remove_volumes:
        for runner in runners:
            for volume in runner.client.volumes.list(filters={"label": f"{PROJECT_LABEL}={env.project}"}):
                volume.remove()
                volumes.append(volume.name)
        forget_leaders(env.settings.state_dir)
        forget_pool_move(env.settings.state_dir)  # the subscriptions a cutover made went with the volumes
        forget_placements(env.settings.state_dir)
        kept = [v for runner in runners for v in runner.client.volumes.list(filters={"label": CACHE_LABEL})]
    if remove_caches:
        for volume in kept:
            try:
                volume.remove()
                caches.append(volume.name)
            except docker.errors.APIError:  # in use by another project's container
                busy.append(volume.name)
        kept = []
    record_host_keys(env.settings, {})  # nothing left to reach but the entry
    write_ssh_config(env, engine.entry_host)
    said = f"removed {len(containers)} container(s)"
    if remove_volumes:
        said += f" and {len(volumes)} volume(s)"
        if len(runners) > 1:
            said += f" on {len(runners)} nodes"
        if caches:
            said += f", and the compiler cache(s) {', '.join(sorted(set(caches)))}"
        if kept:
            said += (f"; the compiler cache(s) {', '.join(sorted({v.name for v in kept}))} are kept for the next "
                     "build (--cache removes them too)")
        if busy:
            said += f"; {', '.join(sorted(set(busy)))} stay: another project's containers use them"
    else:
        said += "; volumes kept" + (f" on their {len(runners)} nodes" if len(runners) > 1 else "")
    say(said)
    return {"containers": len(containers), "volumes": len(volumes), "caches": caches}
