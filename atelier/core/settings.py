"""Settings: `.env` and the process environment, validated once.

The process environment wins over `.env`, as with docker compose. Parsing is
pure (`parse_settings`); `load_settings` then completes the result with what
the state folder keeps (generated passwords, SSH keys: see state.py), so
that no secret needs to be written into a tracked file or an image.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from atelier.core.errors import AtelierError
from atelier.core.matrix import HA_MODES, MAJORS, OSES
from atelier.core.state import Keys, ensure_keys, ensure_secrets

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
PROJECT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")
# A mirror URL goes into a Dockerfile's RUN line and into debootstrap's argv:
# letters, digits and URL punctuation only; no quotes, spaces, $ or backslashes.
MIRROR_PATTERN = re.compile(r"^(https?|ftp|file)://[A-Za-z0-9._~:/@%+,=-]+$")


@dataclass(frozen=True)
class Settings:
    project: str = "atelier"
    subnet: str = "172.30"
    ssh_port: int = 8022
    http_port: int = 8080
    squid_port: int | None = None  # published only when set
    pgbouncer: bool = False  # the pgbouncer service runs
    pgbouncer_port: int | None = None  # published only when set
    bind_address: str = "127.0.0.1"
    superuser_password: str = ""
    replication_password: str = ""
    sudo_password: str = ""
    pgbouncer_auth_password: str = ""  # PgBouncer's auth_query role, pgbouncer_auth
    patroni_api_password: str = ""  # Patroni's REST API, for what changes a cluster (POST)
    monitor_password: str = ""  # postgres_exporter's role, atelier_monitor (pg_monitor only)
    monitoring: bool = False  # Prometheus, Alertmanager and a postgres_exporter in every server
    prometheus_port: int | None = None  # Prometheus's UI, published only when set
    alert_for: str = ""  # every alert rule's `for:` in the running copy; "" keeps the note's
    ha: str = "plain"  # who runs each active/standby pair's failover: atelier's tasks, or Patroni
    etcd_members: int = 3  # Patroni's etcd: 3 (a real quorum) or 1
    privileged: bool = False
    # OS name -> "debootstrap" or an image reference to pull.
    base_images: dict[str, str] = field(default_factory=dict)
    debian_mirror: str = "http://deb.debian.org/debian"
    debian_security_mirror: str = "http://deb.debian.org/debian-security"
    ubuntu_mirror: str = "http://archive.ubuntu.com/ubuntu"
    debian_snapshot: bool = False  # the Debian mirror is a frozen snapshot: expired Release files are used
    # Majors that Debian carries only in experimental (19 on debian14) come from
    # there instead of PGDG: a release candidate, beside the release's own major.
    debian_experimental: bool = False
    build_tries: int = 10
    build_jobs: int = 2
    tmux_socket: str = ""  # a tmux -L socket name; "" for the user's own server
    state_dir: Path = Path(".state/atelier")
    backup_dir: Path = Path("backups")  # db.backup and db.basebackup write here, on this host
    bench_dir: Path = Path("bench-results")  # db.bench's CSV and charts, on this host
    profiles: dict = field(default_factory=dict)  # the user's own: name -> ((OS, major), ...)
    locales: tuple = ("C.UTF-8", "en_US.UTF-8")  # generated in images
    initdb_locale: str = "C.UTF-8"  # the locale new clusters are made with
    timezone: str = "UTC"  # of containers and of PostgreSQL
    git_identity_given: tuple = ("", "")  # ATELIER_GIT_NAME, ATELIER_GIT_EMAIL
    docker_host: str = ""  # ATELIER_DOCKER_HOST: the engine when neither DOCKER_HOST nor a docker context names one
    network_driver: str = "bridge"  # or "overlay" (attachable, on a swarm manager)
    # The engines of a swarm the containers are spread over: (name, engine URL), the
    # first holding the published ports; () runs everything on the one engine.
    nodes: tuple = ()
    placement: str = "group"  # "group": an OS group per node; "spread": each standby off its primary's node
    # A folder of <extension>.tar.gz that images build git extensions from,
    # instead of cloning (a mirror of your own, or machines with no GitHub).
    extension_sources: Path | None = None
    keys: Keys | None = None

    @functools.cached_property
    def git_identity(self) -> tuple[str, str]:
        """user.name and user.email for the workspace's git config: the
        settings', else this host's git config, asked only when a container
        is set up (two git processes that every other command is spared)."""
        return self.git_identity_given if any(self.git_identity_given) else host_git_identity()

    @property
    def patroni(self) -> bool:
        """Patroni manages the pairs (and etcd runs for it)."""
        return self.ha == "patroni"

    @property
    def subnet_cidr(self) -> str:
        return f"{self.subnet}.0.0/16"

    @property
    def entry_address(self) -> tuple[str, int]:
        """Where this host reaches HAProxy (a wildcard bind is reached on loopback)."""
        host = "127.0.0.1" if self.bind_address in ("0.0.0.0", "::") else self.bind_address
        return host, self.ssh_port

    def address(self, third: int, fourth: int) -> str:
        return f"{self.subnet}.{third}.{fourth}"


def _int(env: dict, key: str, default: int | None, low: int, high: int) -> int | None:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise AtelierError(f"{key}={raw} is not a whole number from {low} to {high}")
    return value


def _bool(env: dict, key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise AtelierError(f"{key}={raw} is not a yes/no value; valid: 1, 0, true, false, yes, no, on, off")


def _subnet(raw: str) -> str:
    parts = raw.split(".")
    if len(parts) != 2 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
        raise AtelierError(
            f"ATELIER_SUBNET={raw} is not two octets 0-255 like 172.30 "
            "(atelier uses SUBNET.0.0/16)"
        )
    return ".".join(str(int(p)) for p in parts)


def _folder(env: dict, key: str) -> Path | None:
    raw = env.get(key) or ""
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise AtelierError(f"{key}={raw} is not a folder; give a folder of <extension>.tar.gz, or leave it empty")
    return path.resolve()


NETWORK_DRIVERS = ("bridge", "overlay")


def _ha(raw: str) -> str:
    if raw not in HA_MODES:
        raise AtelierError(f"ATELIER_HA={raw} is not a failover mode atelier knows; valid: {', '.join(HA_MODES)}")
    return raw


def _etcd_members(env: dict) -> int:
    raw = env.get("ATELIER_ETCD_MEMBERS") or "3"
    if raw not in ("1", "3"):
        raise AtelierError(f"ATELIER_ETCD_MEMBERS={raw} is not a size atelier runs etcd at; valid: 3 (a quorum "
                           "that outlives one member), 1 (no quorum to lose)")
    return int(raw)


# A Prometheus duration, as a rule's `for:` takes it: 0s, 30s, 2m, 1h30m.
DURATION_PATTERN = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def _alert_for(raw: str) -> str:
    if raw and not DURATION_PATTERN.match(raw):
        raise AtelierError(f"ATELIER_ALERT_FOR={raw} is not a Prometheus duration; valid: empty (the rules' own), "
                           "or a number and a unit of ms, s, m, h, d, w, y, like 0s, 30s or 2m")
    return raw


def _network_driver(raw: str) -> str:
    if raw not in NETWORK_DRIVERS:
        raise AtelierError(f"ATELIER_NETWORK={raw} is not a network driver atelier uses; valid: "
                           + ", ".join(NETWORK_DRIVERS))
    return raw


PLACEMENTS = ("group", "spread")
NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def _nodes(raw: str) -> tuple:
    """ATELIER_NODES=n1=ssh://build1,n2=unix:///var/run/docker.sock: each
    a name and an engine address of the kinds DOCKER_HOST takes."""
    nodes: list[tuple[str, str]] = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, _, url = item.partition("=")
        if not NODE_NAME.match(name) or not url.split("://")[0] in ("unix", "ssh", "tcp") or "://" not in url:
            raise AtelierError(f"ATELIER_NODES entry {item!r} is not name=engine; write it like "
                               "n1=ssh://me@build1,n2=unix:///var/run/docker.sock (engines: unix://, ssh://, tcp://)")
        if name in dict(nodes) or url in dict(nodes).values():
            raise AtelierError(f"ATELIER_NODES names {name if name in dict(nodes) else url} twice; "
                               "each node once, with an engine of its own")
        nodes.append((name, url))
    return tuple(nodes)


def _placement(raw: str) -> str:
    if raw not in PLACEMENTS:
        raise AtelierError(f"ATELIER_PLACEMENT={raw} is not a placement; valid: group (an OS group per node, "
                           "the default), spread (each standby on another node than its primary)")
    return raw


def _bind_address(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise AtelierError(
            f"ATELIER_BIND_ADDRESS={raw} is not an IP address; valid: 127.0.0.1 (default), 0.0.0.0, or one of the host's addresses"
        ) from None


SECRET_FIELDS = {"ATELIER_SUPERUSER_PASSWORD": "superuser_password",
                 "ATELIER_REPLICATION_PASSWORD": "replication_password",
                 "ATELIER_SUDO_PASSWORD": "sudo_password",
                 "ATELIER_PGBOUNCER_AUTH_PASSWORD": "pgbouncer_auth_password",
                 "ATELIER_PATRONI_API_PASSWORD": "patroni_api_password",
                 "ATELIER_MONITOR_PASSWORD": "monitor_password"}


def _checked_secret(key: str, value: str) -> str:
    """Passwords reach .pgpass, chpasswd and SQL: one printable line each."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise AtelierError(f"{key} holds a newline or another control character; "
                           "use printable characters only")
    return value


def _mirror(env: dict, key: str, default: str) -> str:
    value = env.get(key) or default
    if not MIRROR_PATTERN.match(value):
        raise AtelierError(f"{key}={value!r} is not a plain URL; valid: http(s)://host/path with "
                           "letters, digits and . _ ~ : / @ % + , = - only")
    return value.rstrip("/")


PROFILE_KEY = re.compile(r"^ATELIER_PROFILE_([A-Z0-9_]+)$")
# ll_CC.CHARSET, as localedef makes them (ko_KR.EUC-KR, en_US.UTF-8), or C.UTF-8.
LOCALE_PATTERN = re.compile(r"^(C\.UTF-8|[a-z]{2,3}_[A-Z]{2}\.[A-Za-z0-9-]+)$")
TIMEZONE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")


def parse_locales(env: dict) -> tuple[str, ...]:
    raw = env.get("ATELIER_LOCALES") or "C.UTF-8,en_US.UTF-8"
    found = []
    for word in re.split(r"[\s,]+", raw.strip()):
        if not LOCALE_PATTERN.match(word):
            raise AtelierError(f"ATELIER_LOCALES: {word!r} is not a locale like ko_KR.UTF-8, ko_KR.EUC-KR or C.UTF-8")
        if word not in found:
            found.append(word)
    return tuple(["C.UTF-8"] + [w for w in found if w != "C.UTF-8"])


def parse_initdb_locale(env: dict, locales: tuple[str, ...]) -> str:
    value = env.get("ATELIER_INITDB_LOCALE") or "C.UTF-8"
    if value not in locales:
        raise AtelierError(f"ATELIER_INITDB_LOCALE={value} is not among ATELIER_LOCALES; valid: {', '.join(locales)}")
    return value


def parse_timezone(env: dict) -> str:
    value = env.get("ATELIER_TIMEZONE") or "UTC"
    if not TIMEZONE_PATTERN.match(value) or ".." in value:
        raise AtelierError(f"ATELIER_TIMEZONE={value} is not a time zone name like UTC or Asia/Seoul")
    return value


def parse_groups(key: str, text: str) -> tuple[tuple[str, int], ...]:
    """'rocky8:17,ubuntu22:15' -> its (OS, major) groups; an unknown OS or
    major, or an item that is not OS:major, is one line naming the choices."""
    groups: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        os_name, colon, major = item.partition(":")
        if not colon:
            raise AtelierError(f"{key}: {item!r} is not OS:major, like debian12:15")
        if os_name not in OSES:
            raise AtelierError(f"{key}: unknown OS {os_name!r}; valid: {', '.join(OSES)}")
        if not major.isdigit() or int(major) not in MAJORS:
            raise AtelierError(f"{key}: unknown PostgreSQL major {major!r}; valid: {', '.join(map(str, MAJORS))}")
        if (os_name, int(major)) not in groups:
            groups.append((os_name, int(major)))
    if not groups:
        raise AtelierError(f"{key} is empty; give OS:major groups, like debian12:15,debian13:17")
    return tuple(groups)


def user_profiles(env: dict) -> dict[str, tuple]:
    """ATELIER_PROFILE_MIX=rocky8:17,ubuntu22:15 -> {"mix": (("rocky8", 17), ...)}."""
    found = {}
    for key, value in sorted(env.items()):
        match = PROFILE_KEY.match(key)
        if match:
            found[match.group(1).lower().replace("_", "-")] = parse_groups(key, value)
    return found


def read_env(root: Path, environ: dict | None = None) -> dict:
    """ATELIER_* settings: `.env` in `root`, overridden by the environment."""
    from dotenv import dotenv_values

    # No ${...} expansion: a password may hold a $ and must stay as written.
    env = {k: v for k, v in dotenv_values(root / ".env", interpolate=False).items() if v is not None}
    env.update({k: v for k, v in (os.environ if environ is None else environ).items()
                if k.startswith("ATELIER_")})
    return env


def host_git_identity() -> tuple[str, str]:
    """This host's git user.name and user.email, for the workspace's git
    config when a container first makes it ("" where git or a value is missing)."""
    import subprocess

    def get(key: str) -> str:
        try:
            run = subprocess.run(["git", "config", "--global", "--get", key], capture_output=True, text=True,
                                 timeout=5)
        except (OSError, subprocess.SubprocessError):
            return ""
        value = run.stdout.strip() if run.returncode == 0 else ""
        return value if value.isprintable() else ""

    return get("user.name"), get("user.email")


def load_settings(root: Path | None = None, environ: dict | None = None) -> Settings:
    """The settings of the project in `root` (default: the current folder),
    with its generated passwords and keys."""
    root = Path.cwd() if root is None else Path(root)
    settings = parse_settings(read_env(root, environ), root)
    given = {k: getattr(settings, SECRET_FIELDS[k]) for k in SECRET_FIELDS}
    passwords = ensure_secrets(settings.state_dir, given, tuple(SECRET_FIELDS))
    return dataclasses.replace(
        settings, **{field: _checked_secret(k, passwords[k]) for k, field in SECRET_FIELDS.items()},
        keys=ensure_keys(settings.state_dir, settings.project))


def parse_settings(env: dict, root: Path) -> Settings:
    """Settings from ATELIER_* values; passwords only as given. Pure."""
    project = env.get("ATELIER_PROJECT", "atelier")
    if not PROJECT_PATTERN.match(project):
        raise AtelierError(
            f"ATELIER_PROJECT={project} is not a valid name; use lowercase letters, digits, - or _, up to 31 characters"
        )
    ports = {
        key: _int(env, key, default, 1, 65535)
        for key, default in (("ATELIER_SSH_PORT", 8022), ("ATELIER_HTTP_PORT", 8080),
                             ("ATELIER_SQUID_PORT", None), ("ATELIER_PGBOUNCER_PORT", None),
                             ("ATELIER_PROMETHEUS_PORT", None))
    }
    published = {k: v for k, v in ports.items() if v is not None}
    if len(set(published.values())) != len(published):
        raise AtelierError(
            "ATELIER_SSH_PORT, ATELIER_HTTP_PORT, ATELIER_SQUID_PORT, ATELIER_PGBOUNCER_PORT and "
            "ATELIER_PROMETHEUS_PORT must differ; got "
            + ", ".join(f"{k}={v}" for k, v in published.items())
        )

    base_images = {}
    for name, os_info in OSES.items():
        value = env.get(f"ATELIER_BASE_{name.upper()}", os_info.default_base)
        if value == "debootstrap" and os_info.family == "rocky":
            raise AtelierError(
                f"ATELIER_BASE_{name.upper()}=debootstrap cannot make a Rocky base; give an image reference like {os_info.default_base}"
            )
        base_images[name] = value

    profiles = user_profiles(env)
    locales = parse_locales(env)
    nodes = _nodes(env.get("ATELIER_NODES", ""))
    network_driver = _network_driver(env.get("ATELIER_NETWORK", "overlay" if nodes else "bridge"))
    if nodes and network_driver != "overlay":
        raise AtelierError(f"ATELIER_NETWORK={network_driver} cannot span the nodes of ATELIER_NODES; valid with "
                           "nodes: overlay (the default then), or leave ATELIER_NODES empty for one engine")
    state_dir = Path(env.get("ATELIER_STATE_DIR") or root / ".state" / project)
    backup_dir = Path(env.get("ATELIER_BACKUP_DIR") or root / "backups")
    bench_dir = Path(env.get("ATELIER_BENCH_DIR") or root / "bench-results")

    return Settings(
        project=project,
        subnet=_subnet(env.get("ATELIER_SUBNET", "172.30")),
        ssh_port=ports["ATELIER_SSH_PORT"],
        http_port=ports["ATELIER_HTTP_PORT"],
        squid_port=ports["ATELIER_SQUID_PORT"],
        pgbouncer=_bool(env, "ATELIER_PGBOUNCER", False),
        pgbouncer_port=ports["ATELIER_PGBOUNCER_PORT"],
        monitoring=_bool(env, "ATELIER_MONITORING", False),
        prometheus_port=ports["ATELIER_PROMETHEUS_PORT"],
        alert_for=_alert_for(env.get("ATELIER_ALERT_FOR", "").strip()),
        ha=_ha(env.get("ATELIER_HA") or "plain"),
        etcd_members=_etcd_members(env),
        bind_address=_bind_address(env.get("ATELIER_BIND_ADDRESS", "127.0.0.1")),
        **{field: _checked_secret(k, env.get(k, "")) for k, field in SECRET_FIELDS.items()},
        privileged=_bool(env, "ATELIER_PRIVILEGED", False),
        base_images=base_images,
        debian_mirror=_mirror(env, "ATELIER_DEBIAN_MIRROR", Settings.debian_mirror),
        debian_security_mirror=_mirror(env, "ATELIER_DEBIAN_SECURITY_MIRROR", Settings.debian_security_mirror),
        ubuntu_mirror=_mirror(env, "ATELIER_UBUNTU_MIRROR", Settings.ubuntu_mirror),
        debian_snapshot=_bool(env, "ATELIER_DEBIAN_SNAPSHOT", False),
        debian_experimental=_bool(env, "ATELIER_DEBIAN_EXPERIMENTAL", False),
        build_tries=_int(env, "ATELIER_BUILD_TRIES", 10, 1, 100),
        # Builds wait on mirrors as much as on cores: two per core, at most four.
        build_jobs=_int(env, "ATELIER_BUILD_JOBS", min(4, 2 * (os.cpu_count() or 1)), 1, 64),
        tmux_socket=env.get("ATELIER_TMUX_SOCKET", ""),
        state_dir=state_dir,
        backup_dir=backup_dir,
        bench_dir=bench_dir,
        profiles=profiles,
        locales=locales,
        initdb_locale=parse_initdb_locale(env, locales),
        timezone=parse_timezone(env),
        git_identity_given=(env.get("ATELIER_GIT_NAME", ""), env.get("ATELIER_GIT_EMAIL", "")),
        docker_host=env.get("ATELIER_DOCKER_HOST", ""),
        network_driver=network_driver,
        nodes=nodes,
        placement=_placement(env.get("ATELIER_PLACEMENT", "group").strip() or "group"),
        extension_sources=_folder(env, "ATELIER_EXTENSION_SOURCES"),
    )
