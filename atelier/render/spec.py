"""How one container of the model runs: a neutral spec that the engine turns
into Docker SDK arguments and the renderer into a compose service. Pure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from atelier.core.matrix import OSES
from atelier.core.model import Container, Environment
from atelier.render.runtime import runtime_files


@dataclass(frozen=True)
class ContainerSpec:
    name: str  # name on the engine
    hostname: str
    image: str
    address: str
    labels: dict
    bind: str  # host address ports are published on
    ports: tuple[tuple[int, int], ...]  # (container port, host port)
    extra_hosts: tuple[tuple[str, str], ...]
    volumes: tuple[tuple[str, str], ...]  # (volume name, mount point): the project's own
    caches: tuple[tuple[str, str], ...]  # (volume name, mount point): shared across projects
    binds: tuple[tuple[str, str, str], ...]  # (host path, mount point, mode)
    tmpfs: tuple[str, ...]
    cap_add: tuple[str, ...]
    privileged: bool
    cgroupns: str  # "" (engine default) or "private"
    ulimits: dict
    stop_signal: str
    files: tuple[tuple[str, str], ...]  # runtime files: (path, sha256), for the config hash

    def config_hash(self, image_id: str) -> str:
        """Changes whenever recreating the container would change anything."""
        data = {k: v for k, v in asdict(self).items() if k != "labels"}
        data["image_id"] = image_id
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()[:16]


def container_spec(env: Environment, container: Container, cgroup_version: int) -> ContainerSpec:
    settings = env.settings
    systemd_needs = {}
    if container.systemd:
        # systemd as PID 1 without --privileged (see ENGINE.md): its own /run
        # and /tmp, SYS_PTRACE for gdb and valgrind. On cgroup v1 it needs no
        # more (the host's cgroup tree is mounted read-only). On cgroup v2 it
        # gets a cgroup namespace of its own, which it may mount (SYS_ADMIN):
        # never the host's cgroup tree read-write. An OS whose systemd boots
        # on cgroup v2 only gets the same on a v1 host, and mounts its own
        # cgroup2 subtree (the image's atelier-init).
        if cgroup_version == 2 or OSES[container.os].cgroup2_only:
            binds, cgroupns, caps = (), "private", ("SYS_ADMIN", "SYS_PTRACE")
        else:
            binds, cgroupns, caps = (("/sys/fs/cgroup", "/sys/fs/cgroup", "ro"),), "", ("SYS_PTRACE",)
        systemd_needs = dict(
            binds=binds, cgroupns=cgroupns, tmpfs=("/run", "/run/lock", "/tmp"),
            cap_add=caps, stop_signal="SIGRTMIN+3",
        )
    files = runtime_files(env, container)
    return ContainerSpec(
        name=env.docker_name(container),
        hostname=container.name,
        image=container.image.name,
        address=container.address,
        labels=env.labels(container),
        bind=settings.bind_address,
        ports=container.ports,
        extra_hosts=container.hosts,
        volumes=tuple((env.volume_name(container, key), mount) for key, mount in container.volumes),
        caches=container.caches,
        binds=systemd_needs.get("binds", ()),
        tmpfs=systemd_needs.get("tmpfs", ()),
        cap_add=systemd_needs.get("cap_add", ()),
        privileged=settings.privileged and container.systemd,
        cgroupns=systemd_needs.get("cgroupns", ""),
        ulimits=env.ulimits if container.systemd else {},
        stop_signal=systemd_needs.get("stop_signal", ""),
        files=tuple(sorted((p, hashlib.sha256(data).hexdigest()) for p, (data, _) in files.items())),
    )
