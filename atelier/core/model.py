"""The one model of the environment.

Every name, address, alias, volume, image and profile is computed here from
the settings; templates, the engine and the tasks only read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from atelier.core.errors import AtelierError, choice_error
from atelier.core.matrix import (ETCD_CLIENT_PORT, MAJORS, OSES, PG_ROLES, ROLE_PROMPT, ROLES, SERVICE_BY_NAME, SERVICE_OS,
                                 SERVICE_TABLE, SERVICE_THIRD_OCTET, PgBuild)
from atelier.core.settings import Settings

IMAGE_PREFIX = "atelier"
REPLICATED_ROLES = ("active", "standby")
PROJECT_LABEL = "atelier.project"
CACHE_LABEL = "atelier.cache"


# Patroni's REST API port, and the port of the role check that answers the
# same questions (GET /primary, /replica) on a server Patroni does not manage.
ROLE_CHECK_PORT = 8008

# Patroni's lab timings (README: Patroni): a dead leader's lock expires after
# ttl; each member looks every loop_wait; etcd and PostgreSQL are retried for
# retry_timeout before the leader demotes itself. Patroni asks for
# loop_wait + 2 * retry_timeout <= ttl. Production defaults are 30/10/10.
PATRONI_TIMINGS = {"ttl": 10, "loop_wait": 2, "retry_timeout": 4}


def ccache_volume(os_name: str) -> str:
    """A server's compiler cache: a volume per OS (one compiler per OS),
    shared by every project on the engine and kept by `down --volumes`, so a
    new project or a recreated workspace builds warm."""
    return f"{IMAGE_PREFIX}-ccache-{os_name}"

@dataclass(frozen=True)
class Image:
    name: str  # local tag, e.g. atelier-debian12-pg15
    kind: str  # init | pg | service
    os: str
    major: int | None = None
    service: str | None = None
    parent: str = ""  # the image it is built FROM
    experimental: bool = False  # ATELIER_DEBIAN_EXPERIMENTAL (see PgBuild.source)

    @property
    def build(self) -> PgBuild | None:
        return PgBuild(OSES[self.os], self.major, self.experimental) if self.major else None


# A server's data volume: one per OS and role (see PgBuild.volume_mount).
DATA_VOLUME = "pgdata"


def base_image_name(os_name: str) -> str:
    return f"{IMAGE_PREFIX}-base:{os_name}"


def init_image(os_name: str) -> Image:
    return Image(f"{IMAGE_PREFIX}-{os_name}-init", "init", os_name, parent=base_image_name(os_name))


def pg_image(os_name: str, major: int, experimental: bool = False) -> Image:
    return Image(f"{IMAGE_PREFIX}-{os_name}-pg{major}", "pg", os_name, major,
                 parent=init_image(os_name).name, experimental=experimental)


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
    volumes: tuple[tuple[str, str], ...] = ()  # (volume key, mount point): the project's own
    caches: tuple[tuple[str, str], ...] = ()  # (volume name, mount point): shared by every project
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
class Pair:
    """An active/standby pair of one OS and major, as clients reach it:
    HAProxy's read-write port goes to whichever member is the primary now,
    its read-only port to the members that are in recovery, each as their
    role checks say (not as the container names say: roles change)."""

    name: str  # debian12-pg15
    members: tuple[Container, Container]  # the active, then the standby
    rw_port: int
    ro_port: int


def pair_ports(os_name: str, major: int) -> tuple[int, int]:
    """HAProxy's read-write and read-only ports of a pair, from the matrix:
    16215 and 26215 for debian12/PG 15 (1 or 2, the OS's octet, the major)."""
    base = OSES[os_name].octet * 100 + major
    return 15000 + base, 25000 + base


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
        "debian": Selection((("debian12", 15), ("debian13", 17), ("debian14", 18)), profile="debian"),
        # forky's own 18 and the 19 Debian's experimental carries (with
        # ATELIER_DEBIAN_EXPERIMENTAL=1): the pair `inv db.upgrade` rehearses.
        "upgrade": Selection((("debian14", 18), ("debian14", 19)), profile="upgrade"),
        # Every OS with the major(s) its own archive carries: no PGDG needed.
        "distro": Selection(archive, profile="distro"),
        # The original's default: OSes and majors mixed (its docker-compose.yml).
        "original": Selection((("rocky8", 17), ("rocky9", 18), ("ubuntu22", 15), ("ubuntu24", 16)),
                              profile="original"),
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


def all_profiles(user: dict[str, tuple] | None = None) -> dict[str, Selection]:
    """The built-in profiles, then the user's own (settings.profiles)."""
    mine = {name: Selection(groups, profile=name) for name, groups in (user or {}).items()}
    for name in mine:
        if name in PROFILES:
            raise AtelierError(f"ATELIER_PROFILE_{name.upper().replace('-', '_')}: {name} is a built-in profile; "
                               "give yours another name")
    return {**PROFILES, **mine}


def profile_named(word: str, profiles: dict[str, Selection] | None = None) -> str:
    """A profile by its name, or by the one profile it begins or is part of,
    as the original's docker-reload matched them; several is an error."""
    profiles = PROFILES if profiles is None else profiles
    if word in profiles:
        return word
    matches = [p for p in profiles if p.startswith(word)] or [p for p in profiles if word in p]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AtelierError(f"profile {word!r} matches {', '.join(matches)}; give more of its name")
    raise choice_error("profile", word, profiles)


def select(profile: str | None = None, os: str | None = None, pg=None,
           user_profiles: dict[str, tuple] | None = None) -> Selection:
    """Resolve the user's --profile / --os / --pg into a Selection.

    --pg alone: that major on every OS; --os alone: every major on that OS;
    both: their intersection. A profile stands alone; the user's own
    profiles (ATELIER_PROFILE_<NAME>) are named like the built-in ones.
    """
    if profile is not None and (os is not None or pg is not None):
        raise AtelierError("give either --profile or --os/--pg, not both")
    if profile is not None:
        profiles = all_profiles(user_profiles)
        if not profile.strip():
            raise AtelierError(f"--profile is empty; valid: {', '.join(profiles)}")
        return profiles[profile_named(profile, profiles)]
    if os is None and pg is None:
        return PROFILES["default"]
    oses = _parse_list(os, "OS", OSES) if os is not None else tuple(OSES)
    majors = _parse_list(pg, "PostgreSQL major", MAJORS, int) if pg is not None else MAJORS
    return _product(oses, majors)


def overlay_ip_range(subnet: str) -> str:
    """Where an overlay network may hand out addresses of its own (its
    endpoints and load balancer take some): a block no static address uses,
    since overlay allocation has a history of `address already in use`."""
    return f"{subnet}.254.0/24"


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
        if key == DATA_VOLUME:
            return f"{self.project}-{self.data_volume_owner(container)}-{key}"
        return f"{self.project}-{container.name}-{key}"

    @staticmethod
    def data_volume_owner(container: Container) -> str:
        """Whose the shared data volume is: an OS and a role (debian14-active),
        every major's server of which mounts it."""
        return f"{container.os}-{container.role}"

    def legacy_data_volume(self, container: Container) -> str:
        """The volume a server's cluster lived in before the data volume was
        shared across majors: one per container, mounted at {home}/{major}."""
        return f"{self.project}-{container.name}-data"

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
        return self.settings.address(SERVICE_THIRD_OCTET, SERVICE_BY_NAME[service].octet)

    def hosts_for(self, os_name: str, role: str, major: int) -> tuple[tuple[str, str], ...]:
        """The original's /etc/hosts aliases, from the full matrix (stable
        whichever profile runs, so switching profile recreates nothing)."""
        hosts = [("host", "host-gateway"), ("host.docker.internal", "host-gateway")]
        hosts += [(r, self.address(os_name, r, major)) for r in ROLES]
        hosts += [(other, self.address(other, role, major)) for other in OSES if other != os_name]
        hosts += [(s.name, self.service_address(s.name)) for s in SERVICE_TABLE]
        return tuple(hosts)

    # what runs -------------------------------------------------------------
    @cached_property
    def containers(self) -> tuple[Container, ...]:
        """Services, then inits, then servers: actives before their standbys."""
        s = self.settings
        out = []
        for service in SERVICE_TABLE:
            if service.name not in self.services:
                continue
            published = getattr(s, service.published_by) if service.published_by else None
            out.append(Container(service.name, service.name, service_image(service.image_name),
                                 self.service_address(service.name), (),
                                 volumes=(service.volume,) if service.volume else (),
                                 ports=((service.port, published),) if published else (), systemd=False))
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
                    self.server_name(os_name, major, role), role,
                    pg_image(os_name, major, self.settings.debian_experimental),
                    self.address(os_name, role, major),
                    self.hosts_for(os_name, role, major),
                    volumes=((DATA_VOLUME, build.volume_mount),
                             ("workspace", f"{build.home}/workspace"),
                             ("vscode-server", f"{build.home}/.vscode-server")),
                    caches=((ccache_volume(os_name), build.ccache_dir),),
                ))
        return tuple(out)

    @property
    def services(self) -> tuple[str, ...]:
        """The services this environment runs: every one that is not
        optional, and the optional ones their setting turns on."""
        return tuple(s.name for s in SERVICE_TABLE
                     if (not s.enabled_by or getattr(self.settings, s.enabled_by))
                     and s.member <= self.settings.etcd_members)

    @property
    def etcd_members(self) -> list[Container]:
        """Patroni's DCS, when Patroni runs: etcd1 (.. etcd3)."""
        return [c for c in self.containers if SERVICE_BY_NAME.get(c.name) and SERVICE_BY_NAME[c.name].member]

    @property
    def etcd_hosts(self) -> list[str]:
        return [f"{c.address}:{ETCD_CLIENT_PORT}" for c in self.etcd_members]

    def patroni_scope(self, pair: Pair) -> str:
        """The Patroni cluster a pair is: its name, under the project's namespace in etcd."""
        return pair.name

    def pair_of(self, server: Container) -> Pair | None:
        for pair in self.pairs:
            if server in pair.members:
                return pair
        return None

    @property
    def pooled_servers(self) -> list[Container]:
        """The servers PgBouncer pools in front of: the primaries by role."""
        return [c for c in self.servers if c.role in ("active", "standalone")]

    @property
    def pairs(self) -> list[Pair]:
        """Every active/standby pair the environment runs, in the model's order."""
        out = []
        if all(role in self.selection.roles for role in REPLICATED_ROLES):
            for os_name, major in self.selection.groups:
                members = tuple(self.container(self.server_name(os_name, major, r)) for r in REPLICATED_ROLES)
                out.append(Pair(self.pair_name(os_name, major), members, *pair_ports(os_name, major)))
        return out

    def pair_name(self, os_name: str, major: int) -> str:
        return f"{os_name}-pg{major}"

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
        needed: list[Image] = list(dict.fromkeys(service_image(SERVICE_BY_NAME[s].image_name)
                                                 for s in self.services))
        for os_name in self.selection.oses:
            needed.append(init_image(os_name))
        for os_name, major in self.selection.groups:
            needed.append(pg_image(os_name, major, self.settings.debian_experimental))
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

    def replication_slot(self, server: Container) -> str:
        """The slot a server streams through, and the name it gives its
        primary (cluster_name, so application_name): the same, so that
        pg_stat_replication, the slot and synchronous_standby_names agree."""
        return server.name.replace("-", "_")

    # replication pairs -----------------------------------------------------
    def server_name(self, os_name: str, major: int, role: str) -> str:
        return f"{os_name}-pg{major}-{role}"

    def sibling(self, name: str, role: str) -> Container:
        """The server of `role` in the group (OS and major) of server `name`."""
        server = self.container(name)
        if not server.is_server:
            raise AtelierError(f"{name} is not a PostgreSQL server container; its siblings are the servers "
                               "of one OS and major (<os>-pg<major>-active, -standby, -standalone)")
        return self.container(self.server_name(server.os, server.major, role))

    def partner(self, name: str) -> Container:
        """The other server of an active/standby pair (whichever now serves)."""
        server = self.container(name)
        if server.role not in REPLICATED_ROLES:
            raise AtelierError(f"{name} is the {server.role} server, in no replication pair; "
                               "pairs are <os>-pg<major>-active and -standby")
        return self.sibling(name, "standby" if server.role == "active" else "active")

    def name_at(self, address: str) -> str | None:
        for c in self.containers:
            if c.address == address:
                return c.name
        return None

    def upstream_name(self, name: str, host: str) -> str:
        """The container a server of `name`'s group reaches as `host`: one of
        its own group's aliases (active, standby) or an address."""
        server = self.container(name)
        if host in PG_ROLES and server.major:
            return self.server_name(server.os, server.major, host)
        return self.name_at(host) or host
