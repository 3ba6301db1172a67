"""The one model of the environment.

Every name, address, alias, volume, image and profile is computed here from
the settings; templates, the engine and the tasks only read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .errors import AtelierError, choice_error
from .settings import Settings

MAJORS = (14, 15, 16, 17, 18)
PG_ROLES = ("active", "standby", "standalone")
ROLES = ("init",) + PG_ROLES
SERVICES = ("haproxy", "apache2", "squid")
SERVICE_OCTETS = {"haproxy": 1, "apache2": 2, "squid": 3}
SERVICE_THIRD_OCTET = 200
# The OS that the service images (haproxy, squid, apache2) are built on.
SERVICE_OS = "debian12"
ROLE_PROMPT = {"init": "i", "active": "a", "standby": "s", "standalone": "#"}
IMAGE_PREFIX = "atelier"
PROJECT_LABEL = "atelier.project"


@dataclass(frozen=True)
class OsInfo:
    name: str
    family: str  # debian | ubuntu | rocky
    version: str
    octet: int
    codename: str
    prompt: str  # short tag in the shell prompt, e.g. r08, u22, d12
    default_base: str  # "debootstrap" or an image reference to pull
    archive_majors: frozenset[int] = frozenset()  # majors the OS's own archive carries

    @property
    def package_manager(self) -> str:
        return "dnf" if self.family == "rocky" else "apt"


OSES = {
    o.name: o
    for o in (
        OsInfo("rocky8", "rocky", "8", 8, "8", "r08", "rockylinux/rockylinux:8"),
        OsInfo("rocky9", "rocky", "9", 9, "9", "r09", "rockylinux/rockylinux:9"),
        OsInfo("ubuntu22", "ubuntu", "22.04", 22, "jammy", "u22", "ubuntu:22.04", frozenset({14})),
        OsInfo("ubuntu24", "ubuntu", "24.04", 24, "noble", "u24", "ubuntu:24.04", frozenset({16})),
        OsInfo("debian12", "debian", "12", 12, "bookworm", "d12", "debootstrap", frozenset({15})),
        OsInfo("debian13", "debian", "13", 13, "trixie", "d13", "debootstrap", frozenset({17})),
    )
}


@dataclass(frozen=True)
class Extension:
    """An extension a PostgreSQL image carries."""

    name: str
    package: str = ""  # package name pattern, {major} filled in; empty for git builds
    preload: str = ""  # library for shared_preload_libraries, if it needs one
    git: str = ""  # source repository for extensions no archive packages


# What each source of packages offers. A package that is missing makes the
# image build fail with the package manager's own error: never a silent skip.
PGDG_APT_EXTENSIONS = (
    Extension("pg_hint_plan", "postgresql-{major}-pg-hint-plan", "pg_hint_plan"),
    Extension("pg_show_plans", "postgresql-{major}-show-plans", "pg_show_plans"),
)
PGDG_DNF_EXTENSIONS = (
    Extension("pg_hint_plan", "pg_hint_plan_{major}", "pg_hint_plan"),
    Extension("pg_show_plans", "pg_show_plans_{major}", "pg_show_plans"),
)
GIT_EXTENSIONS = (
    Extension("pg_store_plans", git="https://github.com/ossc-db/pg_store_plans.git", preload="pg_store_plans"),
    Extension("pgsentinel", git="https://github.com/pgsentinel/pgsentinel.git", preload="pgsentinel"),
    Extension("pg_ensure_queryid", git="https://github.com/rjuju/pg_ensure_queryid.git"),
)
DEBIAN_ARCHIVE_EXTENSIONS = (
    Extension("pg_qualstats", "postgresql-{major}-pg-qualstats", "pg_qualstats"),
    Extension("pg_stat_kcache", "postgresql-{major}-pg-stat-kcache", "pg_stat_kcache"),
    Extension("pg_wait_sampling", "postgresql-{major}-pg-wait-sampling", "pg_wait_sampling"),
    Extension("pldebugger", "postgresql-{major}-pldebugger", "plugin_debugger"),
    Extension("plpgsql_check", "postgresql-{major}-plpgsql-check"),
    Extension("hypopg", "postgresql-{major}-hypopg"),
)


@dataclass(frozen=True)
class PgBuild:
    """Where one OS gets one PostgreSQL major, and where the server lives."""

    os: OsInfo
    major: int

    @property
    def source(self) -> str:
        return "distro" if self.major in self.os.archive_majors else "pgdg"

    @property
    def home(self) -> str:
        return "/var/lib/pgsql" if self.os.family == "rocky" else "/var/lib/postgresql"

    @property
    def bindir(self) -> str:
        if self.os.family == "rocky":
            return f"/usr/pgsql-{self.major}/bin"
        return f"/usr/lib/postgresql/{self.major}/bin"

    @property
    def data_mount(self) -> str:
        """The volume mount that keeps the cluster (data and, on apt, config)."""
        return f"{self.home}/{self.major}"

    @property
    def datadir(self) -> str:
        return f"{self.data_mount}/data" if self.os.family == "rocky" else f"{self.data_mount}/main"

    @property
    def socket_dir(self) -> str:
        """Where the packaged server and clients put the Unix socket: Debian's and
        PGDG's packaging both patch upstream's /tmp to this."""
        return "/var/run/postgresql"

    @property
    def confdir(self) -> str:
        if self.os.family == "rocky":
            return self.datadir
        return f"/etc/postgresql/{self.major}/main"

    @property
    def service(self) -> str:
        if self.os.family == "rocky":
            return f"postgresql-{self.major}"
        return f"postgresql@{self.major}-main"

    @property
    def packages(self) -> list[str]:
        m = self.major
        if self.os.family == "rocky":
            base = [f"postgresql{m}-server", f"postgresql{m}-contrib", f"postgresql{m}-devel",
                    f"postgresql{m}-plpython3", f"postgresql{m}-plperl", f"postgresql{m}-llvmjit"]
        else:
            base = [f"postgresql-{m}", f"postgresql-server-dev-{m}", f"postgresql-plpython3-{m}",
                    f"postgresql-plperl-{m}", "postgresql-client"]
        return base + [e.package.format(major=m) for e in self.extensions if e.package]

    @property
    def extensions(self) -> tuple[Extension, ...]:
        if self.source == "distro":
            return DEBIAN_ARCHIVE_EXTENSIONS if self.os.family == "debian" else ()
        packaged = PGDG_DNF_EXTENSIONS if self.os.family == "rocky" else PGDG_APT_EXTENSIONS
        return packaged + GIT_EXTENSIONS

    @property
    def preload_libraries(self) -> list[str]:
        return ["pg_stat_statements"] + [e.preload for e in self.extensions if e.preload]


@dataclass(frozen=True)
class Image:
    name: str  # local tag, e.g. atelier-debian12-pg15
    kind: str  # init | pg | service
    os: str
    major: int | None = None
    service: str | None = None
    parent: str = ""  # the image it is built FROM

    @property
    def build(self) -> PgBuild | None:
        return PgBuild(OSES[self.os], self.major) if self.major else None


def base_image_name(os_name: str) -> str:
    return f"{IMAGE_PREFIX}-base:{os_name}"


def init_image(os_name: str) -> Image:
    return Image(f"{IMAGE_PREFIX}-{os_name}-init", "init", os_name, parent=base_image_name(os_name))


def pg_image(os_name: str, major: int) -> Image:
    return Image(f"{IMAGE_PREFIX}-{os_name}-pg{major}", "pg", os_name, major,
                 parent=init_image(os_name).name)


def service_image(service: str) -> Image:
    return Image(f"{IMAGE_PREFIX}-{service}", "service", SERVICE_OS, service=service,
                 parent=base_image_name(SERVICE_OS))


@dataclass(frozen=True)
class Container:
    name: str  # the model's name: debian12-pg15-active, debian12-init, haproxy
    role: str  # init | active | standby | standalone | haproxy | apache2 | squid
    image: Image
    address: str
    hosts: tuple[tuple[str, str], ...]  # /etc/hosts aliases (name, address)
    volumes: tuple[tuple[str, str], ...] = ()  # (volume key, mount point)
    ports: tuple[tuple[int, int], ...] = ()  # (container port, host port)
    systemd: bool = True

    @property
    def os(self) -> str:
        return self.image.os

    @property
    def major(self) -> int | None:
        return self.image.major

    @property
    def is_server(self) -> bool:
        return self.role in PG_ROLES

    @property
    def login_user(self) -> str:
        """Who atelier logs in as: postgres on servers, atelier elsewhere."""
        return "postgres" if self.is_server else "atelier"

    @property
    def prompt(self) -> str:
        major = f"p{self.major}" if self.major else "init"
        return f"{OSES[self.os].prompt}-{major}-{ROLE_PROMPT.get(self.role, '?')}"


@dataclass(frozen=True)
class Selection:
    """Which (OS, major) groups and which server roles an environment holds."""

    groups: tuple[tuple[str, int], ...]
    roles: tuple[str, ...] = PG_ROLES
    profile: str = ""

    @property
    def oses(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(o for o, _ in self.groups))

    def majors_on(self, os_name: str) -> list[int]:
        return [m for o, m in self.groups if o == os_name]

    @property
    def label(self) -> str:
        if self.profile:
            return self.profile
        return " ".join(f"{o}/pg{m}" for o, m in self.groups)

    @property
    def args(self) -> str:
        """The command-line options that select this again."""
        if self.profile:
            return f"--profile {self.profile}"
        oses = ",".join(self.oses)
        majors = ",".join(str(m) for m in dict.fromkeys(m for _, m in self.groups))
        return f"--os {oses} --pg {majors}"


def _product(oses, majors, **kwargs) -> Selection:
    return Selection(tuple((o, m) for o in oses for m in majors), **kwargs)


def _profiles() -> dict[str, Selection]:
    all_oses = tuple(OSES)
    archive = tuple((o, m) for o in OSES for m in sorted(OSES[o].archive_majors))
    profiles = {
        "default": Selection((("debian12", 15),), profile="default"),
        # Each Debian release with its own PostgreSQL: builds with only Debian's archive.
        "debian": Selection((("debian12", 15), ("debian13", 17)), profile="debian"),
        # Every OS with the major(s) its own archive carries: no PGDG needed.
        "distro": Selection(archive, profile="distro"),
    }
    for m in MAJORS:
        profiles[f"pg{m}"] = _product(all_oses, (m,), profile=f"pg{m}")
    for o in OSES:
        profiles[o] = _product((o,), MAJORS, profile=o)
    profiles["full"] = _product(all_oses, MAJORS, profile="full")
    profiles["develop"] = _product(all_oses, MAJORS, roles=("standalone",), profile="develop")
    return profiles


PROFILES = _profiles()


def _parse_list(value, what: str, choices, convert=str) -> tuple:
    items = []
    for raw in str(value).split(","):
        raw = raw.strip()
        try:
            item = convert(raw)
        except ValueError:
            raise choice_error(what, raw, choices) from None
        if item not in choices:
            raise choice_error(what, raw, choices)
        if item not in items:
            items.append(item)
    return tuple(sorted(items, key=list(choices).index))


def select(profile: str | None = None, os: str | None = None, pg=None) -> Selection:
    """Resolve the user's --profile / --os / --pg into a Selection.

    --pg alone: that major on every OS; --os alone: every major on that OS;
    both: their intersection. A profile stands alone.
    """
    if profile and (os or pg):
        raise AtelierError("give either --profile or --os/--pg, not both")
    if profile:
        if profile not in PROFILES:
            raise choice_error("profile", profile, PROFILES)
        return PROFILES[profile]
    if not os and not pg:
        return PROFILES["default"]
    oses = _parse_list(os, "OS", OSES) if os else tuple(OSES)
    majors = _parse_list(pg, "PostgreSQL major", MAJORS, int) if pg else MAJORS
    return _product(oses, majors)


# The original's nofile limits (soft, hard). A container cannot start with a
# hard limit above the engine's own, so `up` clamps them to what the engine
# allows (engine.nofile_ceiling): a fact of the engine, never of the shell
# that runs atelier, so that the config hash is the same from any terminal.
NOFILE = (65536, 1048576)


@dataclass(frozen=True)
class Environment:
    """One project's environment: settings plus a selection, fully named."""

    settings: Settings
    selection: Selection
    nofile_ceiling: int = NOFILE[1]

    # names on the engine -------------------------------------------------
    @property
    def project(self) -> str:
        return self.settings.project

    @property
    def network(self) -> str:
        return self.project

    def docker_name(self, container: Container) -> str:
        return f"{self.project}-{container.name}"

    def volume_name(self, container: Container, key: str) -> str:
        return f"{self.project}-{container.name}-{key}"

    def labels(self, container: Container) -> dict[str, str]:
        labels = {
            PROJECT_LABEL: self.project,
            "atelier.name": container.name,
            "atelier.role": container.role,
            "atelier.os": container.os,
        }
        if container.major:
            labels["atelier.major"] = str(container.major)
        return labels

    # addresses -------------------------------------------------------------
    @property
    def gateway(self) -> str:
        """The bridge's own address: where the engine's port proxy comes from."""
        return self.settings.address(0, 1)

    def address(self, os_name: str, role: str, major: int | None = None) -> str:
        third = OSES[os_name].octet
        fourth = {"init": 1, "active": major, "standby": 30 + (major or 0),
                  "standalone": 60 + (major or 0)}[role]
        return self.settings.address(third, fourth)

    def service_address(self, service: str) -> str:
        return self.settings.address(SERVICE_THIRD_OCTET, SERVICE_OCTETS[service])

    def hosts_for(self, os_name: str, role: str, major: int) -> tuple[tuple[str, str], ...]:
        """The original's /etc/hosts aliases, from the full matrix (stable
        whichever profile runs, so switching profile recreates nothing)."""
        hosts = [("host", "host-gateway"), ("host.docker.internal", "host-gateway")]
        hosts += [(r, self.address(os_name, r, major)) for r in ROLES]
        hosts += [(other, self.address(other, role, major)) for other in OSES if other != os_name]
        hosts += [(s, self.service_address(s)) for s in SERVICES]
        return tuple(hosts)

    # what runs -------------------------------------------------------------
    @cached_property
    def containers(self) -> tuple[Container, ...]:
        """Services, then inits, then servers: actives before their standbys."""
        s = self.settings
        out = [
            Container("haproxy", "haproxy", service_image("haproxy"), self.service_address("haproxy"),
                      (), ports=((22, s.ssh_port),), systemd=False),
            Container("apache2", "apache2", service_image("apache2"), self.service_address("apache2"),
                      (), volumes=(("html", "/var/www/html"),), ports=((80, s.http_port),), systemd=False),
            Container("squid", "squid", service_image("squid"), self.service_address("squid"),
                      (), volumes=(("cache", "/var/spool/squid"),),
                      ports=((3128, s.squid_port),) if s.squid_port else (), systemd=False),
        ]
        for os_name in self.selection.oses:
            first_major = self.selection.majors_on(os_name)[0]
            out.append(Container(f"{os_name}-init", "init", init_image(os_name),
                                 self.address(os_name, "init"),
                                 self.hosts_for(os_name, "init", first_major)))
        for role in ("active", "standalone", "standby"):
            if role not in self.selection.roles:
                continue
            for os_name, major in self.selection.groups:
                build = PgBuild(OSES[os_name], major)
                out.append(Container(
                    f"{os_name}-pg{major}-{role}", role, pg_image(os_name, major),
                    self.address(os_name, role, major),
                    self.hosts_for(os_name, role, major),
                    volumes=(("data", build.data_mount),
                             ("workspace", f"{build.home}/workspace"),
                             ("vscode-server", f"{build.home}/.vscode-server")),
                ))
        return tuple(out)

    def container(self, name: str) -> Container:
        for c in self.containers:
            if c.name == name:
                return c
        raise choice_error("container", name, [c.name for c in self.containers])

    @property
    def servers(self) -> list[Container]:
        return [c for c in self.containers if c.is_server]

    @property
    def images(self) -> list[Image]:
        """Every image the selection needs, parents before children."""
        needed: list[Image] = [service_image(s) for s in SERVICES]
        for os_name in self.selection.oses:
            needed.append(init_image(os_name))
        for os_name, major in self.selection.groups:
            needed.append(pg_image(os_name, major))
        return needed

    @property
    def base_oses(self) -> list[str]:
        """OSes whose base image the selection's images are built FROM."""
        oses = [SERVICE_OS] + [o for o in self.selection.oses if o != SERVICE_OS]
        return oses

    @property
    def ulimits(self) -> dict[str, tuple[int, int]]:
        """The original's limits, clamped so the container can start here."""
        ceiling = self.nofile_ceiling
        return {"nofile": (min(NOFILE[0], ceiling), min(NOFILE[1], ceiling)), "core": (-1, -1)}

    def replication_slot(self, standby: Container) -> str:
        return standby.name.replace("-", "_")
