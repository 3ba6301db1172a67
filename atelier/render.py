"""Pure rendering: model + jinja2 templates -> file contents. No side effects
here but `write_tree`; the engine and `inv render` both use these results."""

from __future__ import annotations

import io
import shlex
import tarfile
from functools import lru_cache
from pathlib import Path

from .model import OSES, PROJECT_LABEL, Container, Environment, Image
from .settings import ROOT, Settings

TEMPLATES = ROOT / "dockerfiles"
FILES = ROOT / "files"

# Which folders of files/ each kind of image copies in (folder -> path in context).
IMAGE_FILES = {"init": ("common",), "pg": ("postgres", "home"), "service": ()}

File = tuple[bytes, int]  # content, mode


@lru_cache(maxsize=1)
def _jinja():
    import jinja2

    # Compiling the templates costs ~0.1 s per command; jinja2 keeps compiled
    # ones (checked against the template's mtime) in a git-ignored folder.
    cache = ROOT / ".state" / "jinja-cache"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        bytecode_cache = jinja2.FileSystemBytecodeCache(str(cache))
    except OSError:
        bytecode_cache = None
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(TEMPLATES), str(FILES)]),
        bytecode_cache=bytecode_cache,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )


def render_template(name: str, **context) -> str:
    return _jinja().get_template(name).render(**context)


def dockerfile(image: Image, settings: Settings) -> str:
    os_info = OSES[image.os]
    if image.kind == "service":
        name = f"service/{image.service}.Dockerfile.j2"
    else:
        name = f"{os_info.package_manager}/{image.kind}.Dockerfile.j2"
    return render_template(name, image=image, os=os_info, build=image.build, settings=settings)


def _image_files(image: Image) -> dict[str, File]:
    """The files/ folders an image copies, templates (*.j2) rendered for it."""
    out: dict[str, File] = {}
    for folder in IMAGE_FILES[image.kind]:
        for path in sorted((FILES / folder).rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(FILES).as_posix()
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            if rel.endswith(".j2"):
                text = render_template(rel, build=image.build, os=OSES[image.os], image=image)
                out[rel[:-3]] = (text.encode(), mode)
            else:
                out[rel] = (path.read_bytes(), mode)
    return out


def build_context(image: Image, settings: Settings) -> dict[str, File]:
    """Everything `docker build` needs for one image: Dockerfile and files."""
    files = {"Dockerfile": (dockerfile(image, settings).encode(), 0o644)}
    files.update(_image_files(image))
    return files


def tar_bytes(files: dict[str, File], folders: bool = True) -> bytes:
    """A deterministic tar (sorted, zero times and owners) of path -> (content, mode).

    Parent folders get entries of their own, as in a tar of a real folder:
    the builder's COPY checksum counts them, so with them `inv build` and a
    plain `docker build` of `inv render` output share one layer cache.
    Without `folders`, extracting it leaves existing folders' owners alone."""
    folders = {"/".join(path.split("/")[:i]) for path in files
               for i in range(1, path.count("/") + 1)} if folders else set()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folders | set(files)):
            info = tarfile.TarInfo(path)
            info.mtime = 0
            if path in folders:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                content, info.mode = files[path]
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


# ---- configuration written into containers before they start -------------

def haproxy_cfg(env: Environment) -> str:
    inits = [c for c in env.containers if c.role == "init"]
    return render_template("haproxy.cfg.j2", inits=inits)


def squid_conf(env: Environment) -> str:
    return render_template("squid.conf.j2", settings=env.settings, gateway=env.gateway)


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def roles_sql(settings: Settings) -> str:
    su, rep = sql_literal(settings.superuser_password), sql_literal(settings.replication_password)
    return f"""\
-- Written by atelier into this container (never an image): the original's roles.
SELECT 'CREATE ROLE experdba' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'experdba') \\gexec
ALTER ROLE experdba WITH LOGIN SUPERUSER PASSWORD {su};
SELECT 'CREATE ROLE repluser' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'repluser') \\gexec
ALTER ROLE repluser WITH LOGIN REPLICATION PASSWORD {rep};
SELECT 'CREATE DATABASE experdb OWNER experdba' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'experdb') \\gexec
"""


def pgpass(settings: Settings) -> str:
    return f"*:*:*:repluser:{pgpass_field(settings.replication_password)}\n"


def atelier_env(env: Environment, container: Container) -> str:
    values = {
        "ATELIER_PROJECT": env.project,
        "ATELIER_NAME": container.name,
        "ATELIER_ROLE": container.role,
        "ATELIER_OS": container.os,
        "ATELIER_PROMPT": container.prompt,
        "ATELIER_SUBNET_CIDR": env.settings.subnet_cidr,
    }
    if container.major:
        values["ATELIER_MAJOR"] = str(container.major)
    if container.role == "standby":
        values["ATELIER_ACTIVE_HOST"] = "active"
        values["ATELIER_SLOT"] = env.replication_slot(container)
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def runtime_files(env: Environment, container: Container) -> dict[str, File]:
    """Files atelier puts into a container before its first start: its
    identity, and for servers the secrets that must stay out of images."""
    files: dict[str, File] = {}
    if container.role == "haproxy":
        files["etc/haproxy/haproxy.cfg"] = (haproxy_cfg(env).encode(), 0o644)
    elif container.role == "squid":
        files["etc/squid/conf.d/atelier.conf"] = (squid_conf(env).encode(), 0o644)
    if container.systemd:
        keys = env.settings.keys
        files["etc/atelier/atelier.env"] = (atelier_env(env, container).encode(), 0o644)
        files["etc/ssh/atelier_authorized_keys"] = (f"{keys.client_public}\n".encode(), 0o644)
        files["etc/atelier/sudo-password"] = (f"{env.settings.sudo_password}\n".encode(), 0o600)
        if container.role == "init":
            files["etc/ssh/ssh_host_ed25519_key"] = (keys.bastion_private.encode(), 0o600)
            files["etc/ssh/ssh_host_ed25519_key.pub"] = (f"{keys.bastion_public}\n".encode(), 0o644)
    if container.is_server:
        files["etc/atelier/pgpass"] = (pgpass(env.settings).encode(), 0o600)
        if container.role != "standby":
            files["etc/atelier/roles.sql"] = (roles_sql(env.settings).encode(), 0o600)
    return files


# ---- the compose file: the same container specs, for review and for compose --

def compose_document(env: Environment, cgroup_version: int = 1) -> dict:
    from .spec import container_spec

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
        if spec.volumes:
            service["volumes"] = [f"{v}:{m}" for v, m in spec.volumes]
            for v, _ in spec.volumes:
                volumes[v] = {"name": v, "labels": {PROJECT_LABEL: env.project}}
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
    return {
        "services": services,
        "networks": {env.network: {"name": env.network, "driver": "bridge",
                                   "ipam": {"config": [{"subnet": env.settings.subnet_cidr}]}}},
        "volumes": volumes,
    }


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


def write_tree(files: dict[str, File], out_dir: Path) -> None:
    for path, (content, mode) in files.items():
        target = out_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
