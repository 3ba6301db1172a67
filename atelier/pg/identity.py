"""Which identity psql takes in a server's login shells."""

from __future__ import annotations

import shlex

from atelier.core.errors import choice_error
from atelier.pg.step import step
from atelier.core.quote import pgpass_field


USERS = ("experdba", "postgres")


def pg_user(c, user: str | None, superuser_password: str, **kw):
    """pg-user: which identity psql uses in login shells (~/.pg_user); with
    no user, show it. experdba's password goes to ~/.pgpass (mode 0600),
    through the step's stdin: never in a process's argv."""
    if user is None:
        return step(c, "show", 'cat "$PG_HOME/.pg_user" 2>/dev/null || echo "PGUSER=postgres (peer)"', **kw)
    if user not in USERS:
        raise choice_error("user", user, USERS + ("show",))
    if user == "postgres":
        return step(c, "pg.user", 'printf "PGHOST=%s\\nPGUSER=postgres\\nPGDATABASE=postgres\\n" "$PG_SOCKET_DIR" '
                    '> "$PG_HOME/.pg_user"', **kw)
    text = "PGHOST=127.0.0.1\nPGUSER=experdba\nPGDATABASE=experdb\n"
    entry = f"*:*:*:experdba:{pgpass_field(superuser_password)}\n"
    return step(c, "pg.user", f'umask 077 && printf %s {shlex.quote(text)} > "$PG_HOME/.pg_user" && '
                'touch "$PG_HOME/.pgpass" && '
                '{ grep -v "^\\*:\\*:\\*:experdba:" "$PG_HOME/.pgpass"; cat; } > "$PG_HOME/.pgpass.new" && '
                'chmod 600 "$PG_HOME/.pgpass.new" && mv "$PG_HOME/.pgpass.new" "$PG_HOME/.pgpass"',
                stdin=entry, hide=True, **kw)
