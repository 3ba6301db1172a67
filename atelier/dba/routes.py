"""How a client reaches a pair: the libpq URLs of its read-write and
read-only routes, through PgBouncer (the application's path) or straight
to HAProxy, inside the atelier network and, where the user publishes
PgBouncer's port, from this host. Pure: the model in, URLs out. No password
is ever part of a URL: libpq takes it from ~/.pgpass or PGPASSWORD."""

from __future__ import annotations

from dataclasses import dataclass

from atelier.core.errors import AtelierError, choice_error
from atelier.core.matrix import PGBOUNCER_PORT
from atelier.core.model import Environment, Pair

USER = "experdba"
DATABASE = "experdb"


@dataclass(frozen=True)
class Route:
    where: str  # "in the network" | "from this host"
    url: str


def pair_of(env: Environment, name: str) -> Pair:
    """A pair by its name (debian12-pg15) or by either member's name."""
    for pair in env.pairs:
        if name == pair.name or name in (m.name for m in pair.members):
            return pair
    raise choice_error("pair", name, [p.name for p in env.pairs])


def routes(env: Environment, name: str, read_only: bool = False, direct: bool = False,
           database: str = DATABASE) -> list[Route]:
    pair = pair_of(env, name)
    settings = env.settings
    if not direct and not settings.pgbouncer:
        raise AtelierError("PgBouncer is not enabled (ATELIER_PGBOUNCER=1 in .env, then `inv up`); "
                           "--direct gives HAProxy's route, which needs no pool")
    if direct:
        port = pair.ro_port if read_only else pair.rw_port
        return [Route("in the network", f"postgresql://{USER}@haproxy:{port}/{database}")]
    pooled = f"{pair.name}{'-ro' if read_only else ''}.{database}"
    found = [Route("in the network", f"postgresql://{USER}@pgbouncer:{PGBOUNCER_PORT}/{pooled}")]
    if settings.pgbouncer_port:
        host = settings.entry_address[0]  # where this host reaches a published port
        host = f"[{host}]" if ":" in host else host
        found.append(Route("from this host", f"postgresql://{USER}@{host}:{settings.pgbouncer_port}/{pooled}"))
    return found
