"""The compose file: the same container specs `inv up` uses, for review and
for docker compose; and every file of a selection, for `inv render`."""

from __future__ import annotations

from atelier.render.archive import File
from atelier.core.model import CACHE_LABEL, PROJECT_LABEL, Environment, overlay_ip_range
from atelier.render.templates import build_context
from atelier.render.runtime import runtime_files
from atelier.render.spec import container_spec


def compose_document(env: Environment, cgroup_version: int = 1) -> dict:
    services = {}
    volumes = {}
    for c in env.containers:
        spec = container_spec(env, c, cgroup_version)
        service = {
            "image": spec.image,
            "container_name": spec.name,
            "hostname": spec.hostname,
            "domainname": "atelier",
            "labels": spec.labels,
            "networks": {env.network: {"ipv4_address": spec.address, "aliases": [c.name]}},
        }
        if spec.extra_hosts:
            service["extra_hosts"] = [f"{h}:{a}" for h, a in spec.extra_hosts]
        if spec.ports:
            service["ports"] = [f"{spec.bind}:{host}:{port}" for port, host in spec.ports]
        if spec.volumes or spec.caches:
            service["volumes"] = [f"{v}:{m}" for v, m in spec.volumes + spec.caches]
            for v, _ in spec.volumes:
                volumes[v] = {"name": v, "labels": {PROJECT_LABEL: env.project}}
            for v, _ in spec.caches:
                volumes[v] = {"name": v, "labels": {CACHE_LABEL: "ccache", "atelier.os": c.os}}
        if spec.binds:
            service.setdefault("volumes", []).extend(f"{h}:{m}:{mode}" for h, m, mode in spec.binds)
        if spec.tmpfs:
            service["tmpfs"] = list(spec.tmpfs)
        if spec.cap_add:
            service["cap_add"] = list(spec.cap_add)
        if spec.privileged:
            service["privileged"] = True
        if spec.cgroupns:
            service["cgroup"] = spec.cgroupns
        if spec.ulimits:
            service["ulimits"] = {n: {"soft": s, "hard": h} for n, (s, h) in spec.ulimits.items()}
        if spec.stop_signal:
            service["stop_signal"] = spec.stop_signal
        services[c.name] = service
    return {"services": services, "networks": {env.network: network_document(env)}, "volumes": volumes}


def network_document(env: Environment) -> dict:
    """The project network as `up` makes it: a bridge, or an attachable
    overlay whose own allocations stay in a block no static address uses."""
    settings = env.settings
    pool = {"subnet": settings.subnet_cidr, "gateway": env.gateway}
    network = {"name": env.network, "driver": settings.network_driver,
               "labels": {PROJECT_LABEL: env.project}}
    if settings.network_driver == "overlay":
        pool["ip_range"] = overlay_ip_range(settings.subnet)
        network["attachable"] = True
    network["ipam"] = {"config": [pool]}
    return network


def compose_yaml(env: Environment, cgroup_version: int = 1) -> str:
    import yaml

    header = (f"# Rendered by atelier for profile {env.selection.label!r}; `inv up` creates the same\n"
              "# containers through the Docker SDK, and puts each one's runtime files\n"
              "# (haproxy.cfg, roles, ...) in before it starts.\n")
    document = compose_document(env, cgroup_version)
    return header + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def render_all(env: Environment, cgroup_version: int = 1) -> dict[str, File]:
    """Every file atelier would build or start the selection with, by path."""
    out: dict[str, File] = {}
    for image in env.images:
        for path, data in build_context(image, env.settings).items():
            out[f"images/{image.name}/{path}"] = data
    for c in env.containers:
        for path, data in runtime_files(env, c).items():
            if data[1] & 0o077 == 0:  # secrets: left out of a tree meant for review
                continue
            out[f"containers/{c.name}/{path}"] = data
    out["compose.yml"] = (compose_yaml(env, cgroup_version).encode(), 0o644)
    return out
