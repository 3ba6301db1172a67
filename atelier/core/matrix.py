"""The matrix atelier knows: operating systems, PostgreSQL majors, roles,
services, and where each OS gets each major with which extensions.

A leaf: it imports nothing of atelier's, so that settings, the
model and the templates can all read it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

MAJORS = (14, 15, 16, 17, 18, 19)
# Each major's last release, by PostgreSQL's versioning policy (five years,
# ending on November's release day): no fixes after it.
END_OF_LIFE = {14: date(2026, 11, 12), 15: date(2027, 11, 11), 16: date(2028, 11, 9), 17: date(2029, 11, 8),
               18: date(2030, 11, 14), 19: date(2031, 11, 13)}
PG_ROLES = ("active", "standby", "standalone")
ROLES = ("init",) + PG_ROLES
PGBOUNCER_PORT = 6432
SERVICE_THIRD_OCTET = 200


@dataclass(frozen=True)
class Service:
    """A service container beside the servers: its address, the port it
    serves and the setting that publishes it on the host, its volume, and
    the setting that turns it on when it is optional."""

    name: str
    octet: int  # its address is SUBNET.200.octet
    port: int  # the port it serves inside the network
    published_by: str  # the Settings field holding the host port ("": never published)
    volume: tuple[str, str] | None = None  # (volume key, mount point)
    enabled_by: str = ""  # the Settings field that turns it on; "" for always
    image: str = ""  # the image it runs, when several services share one (etcd members)
    member: int = 0  # an etcd member's number: members 1..ATELIER_ETCD_MEMBERS run

    @property
    def image_name(self) -> str:
        return self.image or self.name


ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
SERVICE_TABLE = (
    Service("haproxy", 1, 22, "ssh_port"),
    Service("apache2", 2, 80, "http_port", ("html", "/var/www/html")),
    Service("squid", 3, 3128, "squid_port", ("cache", "/var/spool/squid")),
    Service("pgbouncer", 4, PGBOUNCER_PORT, "pgbouncer_port", enabled_by="pgbouncer"),
    # Patroni's DCS: three members, the smallest quorum that outlives one
    # loss (ATELIER_ETCD_MEMBERS=1 for one). Never published on the host.
    *(Service(f"etcd{n}", 4 + n, ETCD_CLIENT_PORT, "", ("data", "/var/lib/etcd"), enabled_by="patroni",
              image="etcd", member=n) for n in (1, 2, 3)),
    # Monitoring (ATELIER_MONITORING=1): Prometheus, whose UI is published only
    # when ATELIER_PROMETHEUS_PORT says where, and its Alertmanager (same image).
    Service("prometheus", 8, PROMETHEUS_PORT, "prometheus_port", ("data", "/var/lib/prometheus"),
            enabled_by="monitoring"),
    Service("alertmanager", 9, ALERTMANAGER_PORT, "", ("data", "/var/lib/alertmanager"),
            enabled_by="monitoring", image="prometheus"),
)
SERVICE_BY_NAME = {s.name: s for s in SERVICE_TABLE}
SERVICES = tuple(s.name for s in SERVICE_TABLE if not s.enabled_by)
# Services that run only when a setting asks for them (ATELIER_PGBOUNCER, ATELIER_HA=patroni,
# ATELIER_MONITORING).
OPTIONAL_SERVICES = tuple(s.name for s in SERVICE_TABLE if s.enabled_by)
HA_MODES = ("plain", "patroni")
# The OS that the service images (haproxy, squid, apache2) are built on.
SERVICE_OS = "debian12"
ROLE_PROMPT = {"init": "i", "active": "a", "standby": "s", "standalone": "#"}


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
    # Majors Debian carries only in `experimental`, taken from there when
    # ATELIER_DEBIAN_EXPERIMENTAL=1 (else from PGDG, as any other major).
    experimental_majors: frozenset[int] = frozenset()
    testing: bool = False  # a Debian testing release: its Release files expire within days
    cgroup2_only: bool = False  # its systemd (258 and later) boots on cgroup v2 only

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
        # Debian testing today, pinned by its name so that it does not move on
        # at the next release; its own archive carries PostgreSQL 18, and
        # experimental carries 19's release candidate, which installs beside it.
        OsInfo("debian14", "debian", "14", 14, "forky", "d14", "debootstrap", frozenset({18}),
               experimental_majors=frozenset({19}), testing=True, cgroup2_only=True),
    )
}


@dataclass(frozen=True)
class Extension:
    """An extension a PostgreSQL image carries: where it comes from, the
    majors it is known to build on, and what a server does with it."""

    name: str
    source: str  # archive (the OS's own), pgdg, or git
    package: str = ""  # package name pattern, {major} filled in (archive, pgdg)
    preload: str = ""  # library for shared_preload_libraries, if it needs one
    git: str = ""  # the repository a git build clones
    tag: str = ""  # the release the pinned commit is, for people
    commit: str = ""  # what a git build checks out: every build of an image is the same
    builds_on: tuple[int, ...] = MAJORS  # the majors it compiles against (git) or is packaged for
    create: str | None = None  # its CREATE EXTENSION name (default: name; "" for a module with none)

    @property
    def sql_name(self) -> str:
        return self.name if self.create is None else self.create

    def skip_reason(self, major: int) -> str:
        """Why this major goes without it, or "" when it builds there."""
        if major in self.builds_on:
            return ""
        shown = ", ".join(map(str, self.builds_on))
        return f"{self.name} {self.tag or self.commit[:7]} builds on PostgreSQL {shown}, not {major}"


# What each source of packages offers. A package that is missing makes the
# image build fail with the package manager's own error: never a silent skip.
PGDG_APT_EXTENSIONS = (
    Extension("pg_hint_plan", "pgdg", "postgresql-{major}-pg-hint-plan", "pg_hint_plan"),
    Extension("pg_show_plans", "pgdg", "postgresql-{major}-show-plans", "pg_show_plans"),
)
PGDG_DNF_EXTENSIONS = (
    Extension("pg_hint_plan", "pgdg", "pg_hint_plan_{major}", "pg_hint_plan"),
    Extension("pg_show_plans", "pgdg", "pg_show_plans_{major}", "pg_show_plans"),
)
# Debian's experimental carries these for the major it holds (19~rc1 today:
# pg_hint_plan and pgaudit, none of the archive's six above).
EXPERIMENTAL_EXTENSIONS = (
    Extension("pg_hint_plan", "experimental", "postgresql-{major}-pg-hint-plan", "pg_hint_plan"),
)
# Built from git at a pinned commit. `builds_on` is what compiles: PG 15, 17
# and 18 are compiled here against Debian's servers by tests/test_extensions.py
# (from the snapshots in ../shared/ext-src), which fails when the list and the
# compiler disagree; 14 and 16 follow the extensions' own release notes.
# pg_store_plans and pg_ensure_queryid do not compile on 18 (ExplainState moved
# to commands/explain_state.h; ExecutorRun lost its execute_once argument).
# On 19 (19~rc1, compiled here 2026-12-02) pgsentinel v1.4.0 does not either:
# utils/tuplestore.h is no longer included by the headers it uses; and
# pg_store_plans meets ShmemInitHash's new signature and QueryDesc without totaltime.
GIT_EXTENSIONS = (
    # No release since 1.9: the commit after it that the snapshot holds.
    Extension("pg_store_plans", "git", git="https://github.com/ossc-db/pg_store_plans.git",
              commit="443ff6d9ae12c1c5e2f892bdf018d19830560887", builds_on=(14, 15, 16, 17),
              preload="pg_store_plans"),
    Extension("pgsentinel", "git", git="https://github.com/pgsentinel/pgsentinel.git", tag="v1.4.0",
              commit="58dd1e2717fd83a6d11625026d8a7d1657cedf2a", builds_on=(14, 15, 16, 17, 18),
              preload="pgsentinel"),
    # The original's own module (github.com/experdb); its _PG_init works only
    # from shared_preload_libraries, and the original creates it in experdb.
    Extension("pg_ensure_queryid", "git", git="https://github.com/experdb/pg_ensure_queryid.git", tag="1.0.0",
              commit="38913b8106f9f3cc3776abc32476686bd2f7550d", builds_on=(14, 15, 16, 17),
              preload="pg_ensure_queryid"),
)
# The OS's own archive (Debian, Ubuntu) packages these for the major it carries.
ARCHIVE_EXTENSIONS = (
    Extension("pg_qualstats", "archive", "postgresql-{major}-pg-qualstats", "pg_qualstats"),
    Extension("pg_stat_kcache", "archive", "postgresql-{major}-pg-stat-kcache", "pg_stat_kcache"),
    Extension("pg_wait_sampling", "archive", "postgresql-{major}-pg-wait-sampling", "pg_wait_sampling"),
    Extension("pldebugger", "archive", "postgresql-{major}-pldebugger", "plugin_debugger", create="pldbgapi"),
    Extension("plpgsql_check", "archive", "postgresql-{major}-plpgsql-check"),
    Extension("hypopg", "archive", "postgresql-{major}-hypopg"),
)


@dataclass(frozen=True)
class PgBuild:
    """Where one OS gets one PostgreSQL major, and where the server lives."""

    os: OsInfo
    major: int
    experimental: bool = False  # ATELIER_DEBIAN_EXPERIMENTAL: take what only experimental has from there

    @property
    def source(self) -> str:
        if self.major in self.os.archive_majors:
            return "distro"
        if self.experimental and self.major in self.os.experimental_majors:
            return "experimental"
        return "pgdg"

    @property
    def source_line(self) -> str:
        """Where this major comes from, said in one line (for `inv build`)."""
        where = {"distro": f"{self.os.codename}'s own archive",
                 "experimental": "Debian's experimental (a release candidate)",
                 "pgdg": "PGDG (apt.postgresql.org)" if self.os.package_manager == "apt"
                 else "PGDG (download.postgresql.org)"}[self.source]
        line = f"{self.os.name}/pg{self.major}: PostgreSQL {self.major} from {where}"
        if self.source == "pgdg" and self.major in self.os.experimental_majors:
            line += ("; ATELIER_DEBIAN_EXPERIMENTAL=1 takes it from Debian's experimental instead, "
                     f"beside {self.os.codename}'s own {', '.join(map(str, sorted(self.os.archive_majors)))}")
        return line

    @property
    def upgrade_from(self) -> tuple[int, ...]:
        """The older major whose server this image carries too, so that
        pg_upgrade finds both in one container: the one before it, from the
        same source (forky's own 18 in the image of experimental's 19). An
        OS's own archive carries one major only."""
        if self.source == "distro" or self.major - 1 not in MAJORS:
            return ()
        return (self.major - 1,)

    @property
    def home(self) -> str:
        return "/var/lib/pgsql" if self.os.family == "rocky" else "/var/lib/postgresql"

    def bindir_of(self, major: int) -> str:
        if self.os.family == "rocky":
            return f"/usr/pgsql-{major}/bin"
        return f"/usr/lib/postgresql/{major}/bin"

    @property
    def bindir(self) -> str:
        return self.bindir_of(self.major)

    @property
    def include_dir(self) -> str:
        """libpq's headers (pg_config --includedir)."""
        if self.os.family == "rocky":
            return f"/usr/pgsql-{self.major}/include"
        return "/usr/include/postgresql"

    @property
    def include_server(self) -> str:
        """The server's headers (pg_config --includedir-server)."""
        if self.os.family == "rocky":
            return f"/usr/pgsql-{self.major}/include/server"
        return f"/usr/include/postgresql/{self.major}/server"

    @property
    def volume_mount(self) -> str:
        """Where the data volume is mounted: one volume per OS and role, which
        every major's server of that OS and role shares (each in a folder of
        its own), so that two majors' clusters sit on one file system, as on
        a host, for pg_upgrade's --link, --clone and --swap."""
        return f"{self.home}/pgdata"

    def data_mount_of(self, major: int) -> str:
        """A major's folder of the data volume, through the image's symlink
        {home}/{major} -> pgdata/{major}: its cluster (data and, on apt, config)."""
        return f"{self.home}/{major}"

    @property
    def data_mount(self) -> str:
        return self.data_mount_of(self.major)

    @property
    def datadir(self) -> str:
        return f"{self.data_mount}/data" if self.os.family == "rocky" else f"{self.data_mount}/main"

    @property
    def ccache_dir(self) -> str:
        """The compiler cache's mount: a volume per OS, shared by every project."""
        return "/var/cache/atelier/ccache"

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

    def service_of(self, major: int) -> str:
        if self.os.family == "rocky":
            return f"postgresql-{major}"
        return f"postgresql@{major}-main"

    @property
    def service(self) -> str:
        return self.service_of(self.major)

    @property
    def packages(self) -> list[str]:
        m = self.major
        if self.os.family == "rocky":
            base = [f"postgresql{m}-server", f"postgresql{m}-contrib", f"postgresql{m}-devel",
                    f"postgresql{m}-plpython3", f"postgresql{m}-plperl", f"postgresql{m}-llvmjit"]
            base += [f"postgresql{old}-server" for old in self.upgrade_from]
        else:
            base = [f"postgresql-{m}", f"postgresql-server-dev-{m}", f"postgresql-plpython3-{m}",
                    f"postgresql-plperl-{m}", "postgresql-client"]
            if self.source == "experimental":
                # Only these come from experimental: `-t experimental` would pull a
                # newer perl that conflicts with the release's own.
                base += ["libpq5/experimental", "libpq-dev/experimental", f"postgresql-client-{m}/experimental"]
            base += [f"postgresql-{old}" for old in self.upgrade_from]
        return base + [e.package.format(major=m) for e in self.extensions if e.package]

    @property
    def offered(self) -> tuple[Extension, ...]:
        """Every extension this OS's source of this major offers."""
        if self.source == "distro":
            return ARCHIVE_EXTENSIONS
        if self.source == "experimental":
            return EXPERIMENTAL_EXTENSIONS + GIT_EXTENSIONS
        packaged = PGDG_DNF_EXTENSIONS if self.os.family == "rocky" else PGDG_APT_EXTENSIONS
        return packaged + GIT_EXTENSIONS

    @property
    def extensions(self) -> tuple[Extension, ...]:
        """What the image carries: what is offered and builds on this major."""
        return tuple(e for e in self.offered if not e.skip_reason(self.major))

    @property
    def skipped_extensions(self) -> tuple[Extension, ...]:
        return tuple(e for e in self.offered if e.skip_reason(self.major))

    @property
    def sql_extensions(self) -> list[str]:
        """What atelier-pg-roles creates in experdb, as the original's set-up
        did: the preloaded statistics, plpython3u, and every extension the
        image carries (one missing on an OS/major is skipped, and said)."""
        return ["pg_stat_statements", "plpython3u"] + [e.sql_name for e in self.extensions if e.sql_name]

    @property
    def preload_libraries(self) -> list[str]:
        return ["pg_stat_statements"] + [e.preload for e in self.extensions if e.preload]


def end_of_life_line(majors, today: date) -> str:
    """One line naming the majors past their end of life on `today`, or ""."""
    past = sorted({m for m in majors if m in END_OF_LIFE and END_OF_LIFE[m] <= today})
    if not past:
        return ""
    named = ", ".join(f"PostgreSQL {m} (last release {END_OF_LIFE[m].isoformat()})" for m in past)
    runs = "it runs" if len(past) == 1 else "they run"
    return (f"past end of life: {named}: no more fixes from the PostgreSQL project; {runs} as before, "
            "and `inv db.logical` rehearses the move to a newer major")
