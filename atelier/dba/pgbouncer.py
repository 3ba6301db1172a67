"""The pgbouncer service: where clients reach it, and its admin console.

The console is asked through the engine (docker exec as postgres, peer on
PgBouncer's own socket): it needs no password and no SSH into a container
that has no sshd."""

from __future__ import annotations

from atelier.core.errors import AtelierError
from atelier.core.matrix import PGBOUNCER_PORT
from atelier.core.model import Environment

NOT_ENABLED = "pgbouncer is not enabled: set ATELIER_PGBOUNCER=1 in .env, then `inv up`"


def require(env: Environment) -> None:
    if not env.settings.pgbouncer:
        raise AtelierError(NOT_ENABLED)


def pooled_database(server: str, db: str = "experdb") -> str:
    """The name a client asks PgBouncer for: the model's server name and the database."""
    return f"{server}.{db}"


def address(env: Environment) -> tuple[str, int]:
    return env.service_address("pgbouncer"), PGBOUNCER_PORT


def console(engine, env: Environment, commands: list[str]) -> str:
    """SHOW ... on PgBouncer's admin console, as its aligned psql output."""
    require(env)
    container = engine.container(env.project, "pgbouncer")
    if container is None or container.status != "running":
        raise AtelierError("the pgbouncer container is not running: `inv up`")
    argv = ["psql", "-X", "-h", "/run/postgresql", "-p", str(PGBOUNCER_PORT), "-U", "postgres", "pgbouncer"]
    for command in commands:
        argv += ["-c", command]
    result = container.exec_run(argv, user="postgres", demux=True)
    out, err = (part.decode(errors="replace") if part else "" for part in result.output)
    if result.exit_code:
        raise AtelierError(f"pgbouncer's console refused: {err.strip().splitlines()[-1] if err.strip() else result.exit_code}")
    return out
