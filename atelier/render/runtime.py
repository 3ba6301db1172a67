"""What atelier puts into each container before it starts: its identity,
haproxy's and squid's configuration, and the secrets that must stay out of
images (keys, passwords, roles). Pure: model + settings -> file contents."""

from __future__ import annotations

import re
import shlex
from urllib.parse import quote

from atelier.core.matrix import (ALERTMANAGER_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, PGBOUNCER_PORT,
                                 PROMETHEUS_PORT)
from atelier.core.quote import pgpass_field, sql_literal
from atelier.render.archive import File
from atelier.core.model import PATRONI_TIMINGS, ROLE_CHECK_PORT, Container, Environment
from atelier.render.templates import FILES, render_template
from atelier.core.settings import Settings
from atelier.core.state import pool_moves


def haproxy_cfg(env: Environment) -> str:
    inits = [c for c in env.containers if c.role == "init"]
    return render_template("haproxy.cfg.j2", inits=inits, pairs=env.pairs, role_check_port=ROLE_CHECK_PORT)


def squid_conf(env: Environment) -> str:
    return render_template("squid.conf.j2", settings=env.settings, gateway=env.gateway)


POOLED_DATABASES = ("experdb", "postgres")


def pool_entries(env: Environment, moves: dict[str, str]) -> list[tuple[str, str, int, str]]:
    """(entry, host, port, database) of every pool entry: a pair's through
    HAProxy's read-write and read-only ports, a server's to its address; an
    entry db.cutover moved goes to the server it moved to."""
    haproxy = env.service_address("haproxy")
    entries = []
    for pair in env.pairs:
        for db in POOLED_DATABASES:
            entries += [(f"{pair.name}.{db}", haproxy, pair.rw_port, db),
                        (f"{pair.name}-ro.{db}", haproxy, pair.ro_port, db)]
    for server in env.pooled_servers:
        entries += [(f"{server.name}.{db}", server.address, 5432, db) for db in POOLED_DATABASES]
    return [(name, env.container(moves[name]).address, 5432, db) if name in moves else (name, host, port, db)
            for name, host, port, db in entries]


def pgbouncer_files(env: Environment, moves: dict[str, str] | None = None) -> dict[str, File]:
    moves = pool_moves(env.settings.state_dir) if moves is None else moves
    ini = render_template("pgbouncer.ini.j2", entries=pool_entries(env, moves), moved=sorted(moves.items()),
                          example=(env.pairs[0].name + ".experdb") if env.pairs else "debian12-pg15.experdb",
                          port=PGBOUNCER_PORT)
    hba = render_template("pgbouncer_hba.conf.j2", subnet=env.settings.subnet_cidr)
    password = env.settings.pgbouncer_auth_password.replace('"', '""')
    return {"etc/pgbouncer/pgbouncer.ini": (ini.encode(), 0o644),
            "etc/pgbouncer/pg_hba.conf": (hba.encode(), 0o644),
            # The one password PgBouncer must hold in plain text (it logs in as
            # pgbouncer_auth with no client to answer for it): 0600, handed to
            # postgres at start, in the container only.
            # postgres is listed, with no password, only so that the admin console
            # knows it (peer on the socket); hba rejects it everywhere else.
            "etc/pgbouncer/userlist.txt": (f'"pgbouncer_auth" "{password}"\n"postgres" ""\n'.encode(), 0o600)}


# PgBouncer's auth_query runs in the database a client asks for, as
# pgbouncer_auth: a function that returns one role's SCRAM secret (never the
# postgres superuser's), which pgbouncer_auth may call and nothing more.
PGBOUNCER_AUTH_SQL = """\
CREATE SCHEMA IF NOT EXISTS pgbouncer;
REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_usename text, OUT usename name, OUT passwd text)
  RETURNS SETOF record LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS
  $$ SELECT usename, passwd FROM pg_shadow WHERE usename = p_usename AND usename <> 'postgres' $$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer_auth;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer_auth;
"""


def roles_sql(settings: Settings) -> str:
    su, rep = sql_literal(settings.superuser_password), sql_literal(settings.replication_password)
    auth = sql_literal(settings.pgbouncer_auth_password)
    per_db = "".join(f"\\connect {db}\n{PGBOUNCER_AUTH_SQL}" for db in POOLED_DATABASES)
    return f"""\
-- Written by atelier into this container (never an image): the original's roles.
SELECT 'CREATE ROLE experdba' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'experdba') \\gexec
ALTER ROLE experdba WITH LOGIN SUPERUSER PASSWORD {su};
SELECT 'CREATE ROLE repluser' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'repluser') \\gexec
ALTER ROLE repluser WITH LOGIN REPLICATION PASSWORD {rep};
SELECT 'CREATE ROLE pgbouncer_auth' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgbouncer_auth') \\gexec
ALTER ROLE pgbouncer_auth WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION
  NOBYPASSRLS CONNECTION LIMIT 10 PASSWORD {auth};
SELECT 'CREATE DATABASE experdb OWNER experdba' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'experdb') \\gexec
{monitor_role_sql(settings) if settings.monitoring else ""}{per_db}"""


def monitor_role_sql(settings: Settings) -> str:
    """postgres_exporter's role (ATELIER_MONITORING=1): it may read statistics
    (pg_monitor) and nothing else."""
    return f"""\
SELECT 'CREATE ROLE atelier_monitor' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'atelier_monitor') \\gexec
ALTER ROLE atelier_monitor WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION
  NOBYPASSRLS CONNECTION LIMIT 5 PASSWORD {sql_literal(settings.monitor_password)};
GRANT pg_monitor TO atelier_monitor;
"""


def pgpass(settings: Settings) -> str:
    """The postgres user's ~/.pgpass in every server: repluser for streaming,
    experdba for what one server asks of another (pg_rewind, pg_dump of a
    partner, a subscription's connection): no password in argv or conninfo."""
    return (f"*:*:*:repluser:{pgpass_field(settings.replication_password)}\n"
            f"*:*:*:experdba:{pgpass_field(settings.superuser_password)}\n")


def patroni_yml(env: Environment, server: Container) -> str:
    """Patroni's configuration of one member of a pair (ATELIER_HA=patroni)."""
    pair = env.pair_of(server)
    s = env.settings
    return render_template("patroni.yml.j2", server=server, build=server.image.build, project=env.project,
                           scope=env.patroni_scope(pair), api_port=ROLE_CHECK_PORT, etcd_hosts=env.etcd_hosts,
                           timings=PATRONI_TIMINGS, api_password=s.patroni_api_password,
                           replication_password=s.replication_password, superuser_password=s.superuser_password)


def etcd_env(env: Environment, member: Container) -> str:
    """One etcd member's settings (etcd reads ETCD_* variables): who it is,
    where it listens, and the members it forms the cluster with at first
    start (its data volume remembers them afterwards)."""
    peers = ",".join(f"{c.name}=http://{c.address}:{ETCD_PEER_PORT}" for c in env.etcd_members)
    values = {
        "ETCD_NAME": member.name,
        "ETCD_DATA_DIR": "/var/lib/etcd/data",
        "ETCD_LISTEN_CLIENT_URLS": f"http://0.0.0.0:{ETCD_CLIENT_PORT}",
        "ETCD_ADVERTISE_CLIENT_URLS": f"http://{member.address}:{ETCD_CLIENT_PORT}",
        "ETCD_LISTEN_PEER_URLS": f"http://0.0.0.0:{ETCD_PEER_PORT}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"http://{member.address}:{ETCD_PEER_PORT}",
        "ETCD_INITIAL_CLUSTER": peers,
        "ETCD_INITIAL_CLUSTER_TOKEN": f"atelier-{env.project}",
        "ETCD_INITIAL_CLUSTER_STATE": "new",
    }
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


# Prometheus scrapes and evaluates this often: quick enough for a lab whose
# drills last minutes (Prometheus's own default is 1m, the usual setting 15s).
SCRAPE_INTERVAL = "5s"
RULES_FILE = FILES / "prometheus/etc/prometheus/atelier-rules/postgresql-alerts.yml"
FOR_LINE = re.compile(r"^(\s*for:\s*)\S+\s*$", re.MULTILINE)


def shortened_rules(alert_for: str) -> str:
    """The note's rules with every `for:` set to `alert_for` (ATELIER_ALERT_FOR)."""
    header = f"# ATELIER_ALERT_FOR={alert_for}: every `for:` below is shortened from the note's.\n"
    return header + FOR_LINE.sub(lambda m: m.group(1) + alert_for, RULES_FILE.read_text())


def prometheus_files(env: Environment) -> dict[str, File]:
    s = env.settings
    yml = render_template("prometheus.yml.j2", project=env.project, scrape_interval=SCRAPE_INTERVAL,
                          alertmanager=f"{env.service_address('alertmanager')}:{ALERTMANAGER_PORT}",
                          alert_for=s.alert_for, prometheus_port=PROMETHEUS_PORT)
    # What atelier-prometheus-targets labels each server's exporter with.
    servers = "".join(f"{c.name} {c.address} {c.os} {c.major}\n" for c in env.servers)
    files = {"etc/atelier/prometheus.yml": (yml.encode(), 0o644),
             "etc/atelier/prometheus-servers": (servers.encode(), 0o644)}
    if s.alert_for:
        files["etc/atelier/rules/postgresql-alerts.yml"] = (shortened_rules(s.alert_for).encode(), 0o644)
    return files


def exporter_env(settings: Settings) -> str:
    """postgres_exporter's login, as atelier_monitor over TCP on the server
    itself: read by systemd from a 0600 file, never on a command line."""
    password = quote(settings.monitor_password, safe="")
    return f"DATA_SOURCE_NAME=postgresql://atelier_monitor:{password}@127.0.0.1:5432/postgres?sslmode=disable\n"


def atelier_env(env: Environment, container: Container) -> str:
    values = {
        "ATELIER_PROJECT": env.project,
        "ATELIER_NAME": container.name,
        "ATELIER_ROLE": container.role,
        "ATELIER_OS": container.os,
        "ATELIER_PROMPT": container.prompt,
        "ATELIER_SUBNET_CIDR": env.settings.subnet_cidr,
        "ATELIER_TIMEZONE": env.settings.timezone,
        "ATELIER_INITDB_LOCALE": env.settings.initdb_locale,
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
    elif container.role == "pgbouncer":
        files.update(pgbouncer_files(env))
    elif container.role == "prometheus":
        files.update(prometheus_files(env))
    elif container.role == "alertmanager":
        files["etc/atelier/alertmanager.yml"] = (render_template("alertmanager.yml.j2", project=env.project).encode(),
                                                 0o644)
    elif container in env.etcd_members:
        files["etc/atelier/etcd.env"] = (etcd_env(env, container).encode(), 0o644)
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
        name, email = env.settings.git_identity
        files["etc/atelier/git-identity"] = (f"{name}\n{email}\n".encode(), 0o644)
        patroni = env.settings.patroni and env.pair_of(container) is not None
        # Under Patroni either member may be the leader that makes them.
        if container.role != "standby" or patroni:
            files["etc/atelier/roles.sql"] = (roles_sql(env.settings).encode(), 0o600)
        if patroni:
            files["etc/atelier/patroni.yml"] = (patroni_yml(env, container).encode(), 0o600)
        if env.settings.monitoring:
            files["etc/atelier/postgres-exporter.env"] = (exporter_env(env.settings).encode(), 0o600)
    return files
