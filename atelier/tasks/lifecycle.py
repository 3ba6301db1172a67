"""The environment's life: render, base, build, up, down, status, hostkeys."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from invoke.exceptions import Exit

from atelier.core.errors import AtelierError
from atelier.core.matrix import end_of_life_line
from atelier.core.state import remember_selection
from atelier.core.table import format_table
from atelier.dba import patroni as dba_patroni, prometheus as dba_prometheus
from atelier.engine import host as engine_host
from atelier.engine.build import build_all, ensure_base, summary_table
from atelier.engine.nodes import node_rows
from atelier.engine.status import reread_host_keys, status as engine_status
from atelier.engine.up import down as engine_down, up as engine_up
from atelier.render.archive import write_tree
from atelier.render.compose import render_all

from .common import (SELECT_HELP, atelier_task, confirm, engine_of, locked, remembered_environment,
                     selected_environment, settings_of)


@atelier_task(help={**SELECT_HELP, "out": "folder to write into (default: rendered/)"})
def render(c, profile=None, os=None, pg=None, out="rendered"):
    """Write every Dockerfile, image file, haproxy.cfg and the compose file, for review."""
    env = selected_environment(c, profile, os, pg)
    files = render_all(env)
    write_tree(files, Path(out))
    print(f"wrote {len(files)} files for {env.selection.label} into {out}/")


@atelier_task(help={"os": SELECT_HELP["os"] + " (default: those of the default profile)"})
def base(c, os=None):
    """Make the base image of an OS (pull, or debootstrap + docker import) unless it exists."""
    env = selected_environment(c, os=os)
    client = engine_of(c).client
    with locked(env.settings, "base"):
        for os_name in (env.selection.oses if os else env.base_oses):
            ensure_base(client, env.settings, os_name)


@atelier_task(help={**SELECT_HELP, "refresh": "build every step again, for new packages "
                                               "(security fixes); by default unchanged images are kept"})
def build(c, profile=None, os=None, pg=None, refresh=False):
    """Build the images of a selection (default: the last one brought up): init before pg, in parallel."""
    env, _ = remembered_environment(c, profile, os, pg)
    for image in env.images:
        if image.build and image.build.major in image.build.os.experimental_majors:
            print(image.build.source_line, file=sys.stderr)
    with locked(env.settings, "build"):
        results = build_all(engine_of(c), env, env.images, refresh=refresh)
    print(summary_table(results))
    failed = [r for r in results if r.outcome == "failed"]
    if failed:
        raise Exit(f"atelier: {len(failed)} image(s) failed: "
                   + "; ".join(f"{r.image}: {r.error}" for r in failed), code=1)


@atelier_task(help={**SELECT_HELP, "timeout": "seconds to wait for readiness (default 600)"})
def up(c, profile=None, os=None, pg=None, timeout=600):
    """Bring a selection up (default: the last one) and wait until servers answer and standbys stream."""
    bring_up(c, profile, os, pg, timeout)


def bring_up(c, profile=None, os=None, pg=None, timeout=600):
    """`inv up`: the selection given, else the last one; remembered when ready."""
    env, options = remembered_environment(c, profile, os, pg)
    with locked(env.settings, "up"):
        engine_up(engine_of(c), env, timeout=float(timeout))
        remember_selection(env.settings.state_dir, options)
    say_end_of_life(m for _, m in env.selection.groups)
    return env


def say_end_of_life(majors) -> None:
    line = end_of_life_line(majors, date.today())
    if line:
        print(line, file=sys.stderr)


@atelier_task(help={"volumes": "also delete workspaces and data volumes (asks first)",
                    "cache": "with --volumes: also delete the compiler caches every project on the engine "
                             "shares (one per OS); kept otherwise, so the next build is warm",
                    "yes": "do not ask before deleting volumes"})
def down(c, volumes=False, cache=False, yes=False):
    """Remove the project's containers and network; volumes stay unless --volumes."""
    env = selected_environment(c)
    if cache and not volumes:
        raise AtelierError("--cache goes with --volumes: `inv down --volumes --cache` deletes the project's "
                           "volumes and the compiler caches")
    if volumes:
        what = "every workspace and data volume" + (" and the compiler caches" if cache else "")
        confirm(f"delete {what} of project {env.project}?", yes,
                f"down --volumes deletes {what} of project {env.project}; add --yes to confirm")
    with locked(env.settings, "down"):
        engine_down(engine_of(c), env, remove_volumes=volumes, remove_caches=cache)


@atelier_task
def hostkeys(c):
    """Read every running container's SSH host key through the engine and record it."""
    env = selected_environment(c, "full")
    with locked(env.settings, "hostkeys"):
        keys = reread_host_keys(engine_of(c), env)
    print(f"recorded the host keys of {len(keys)} container(s)")


@atelier_task
def status(c):
    """A table of the project's containers: role, OS, major, address, state, health, streaming."""
    engine = engine_of(c)
    env = selected_environment(c, "full")
    rows = engine_status(engine, env)
    if not rows:
        print("no containers; `inv up` starts the default profile")
        return
    headers = ("name", "role", "os", "major", "address", "state", "serves", "follows", "health")
    if engine.nodes:
        headers = headers[:5] + ("node",) + headers[5:]
    print(format_table(headers, [tuple(getattr(r, h) for h in headers) for r in rows]))
    # Notes, on stderr: stdout stays the table, for scripts that read it.
    present = {r.name for r in rows}
    pairs = [p for p in env.pairs if any(m.name in present for m in p.members)]
    if pairs:
        if env.settings.patroni:
            for pair in pairs:
                print(dba_patroni.summary(dba_patroni.engine_view(engine, env, pair), pair), file=sys.stderr)
        else:
            print("failover: plain (atelier's db.switchover, db.failover, db.rejoin); ATELIER_HA=patroni hands "
                  "each pair to Patroni", file=sys.stderr)
    if env.settings.monitoring and "prometheus" in present:
        try:
            print(dba_prometheus.summary(dba_prometheus.alerts(engine, env), env.settings.alert_for),
                  file=sys.stderr)
        except AtelierError as error:
            print(f"alerts: unknown ({error})", file=sys.stderr)
    say_end_of_life(c.major for c in env.containers if c.name in present and c.major)
    print(engine_host.reach_line(settings_of(c), engine.entry_host), file=sys.stderr)


@atelier_task
def nodes(c):
    """The nodes of ATELIER_NODES: engine, reachable or not, swarm role, the project's containers, images present."""
    engine = engine_of(c)
    if not engine.nodes:
        print(f"one engine ({engine.host.describe()}); ATELIER_NODES names the engines of a swarm to spread over")
        return
    env, _ = remembered_environment(c)
    rows = node_rows(engine, env.project, {c.image.name for c in env.containers})
    headers = ("node", "engine", "reachable", "swarm", "images", "containers")
    print(format_table(headers, [tuple(getattr(r, h) for h in headers) for r in rows]))
    print(f"placement: {env.settings.placement}; images of {env.selection.label}", file=sys.stderr)


@atelier_task(help={"http": "apache2's port (reports, coverage); on unless --no-http",
                    "pgbouncer": "PgBouncer's port, when ATELIER_PGBOUNCER_PORT publishes it",
                    "ssh": "HAProxy's SSH port (for your own ssh without the generated config)"})
def forward(c, http=True, pgbouncer=False, ssh=False):
    """Hold this machine's 127.0.0.1 ports open to a remote engine's published ports until Ctrl-C."""
    settings = settings_of(c)
    chosen = engine_of(c).entry_host
    if not chosen.is_remote:
        print(f"the engine is local ({chosen.url}): " + engine_host.reach_line(settings, chosen))
        return
    ports = engine_host.published_ports(settings, http=http, pgbouncer=pgbouncer, ssh=ssh)
    if not ports:
        raise AtelierError("nothing to forward; choose --http, --ssh or --pgbouncer "
                           "(PgBouncer needs ATELIER_PGBOUNCER=1 and ATELIER_PGBOUNCER_PORT)")
    engine_host.hold_forwards(chosen.ssh, ports)
