"""The distribution's PostgreSQL service of a server: what the packaged
server and a build installed over it both run as."""

from __future__ import annotations

from atelier.pg.step import PRELUDE, step


def service(c, action: str, **kw):
    """start, stop, restart or status of the distribution's service."""
    if action == "status":
        return c.run(PRELUDE + 'systemctl status --no-pager "$PG_SERVICE"', warn=True, in_stream=False, **kw)
    return step(c, f"systemctl {action}", f'systemctl {action} "$PG_SERVICE"', sudo=True, **kw)


def kill(c, **kw) -> None:
    step(c, "kill the postmaster", 'kill -9 "$(head -n1 "$PGDATA/postmaster.pid")"', **kw)
