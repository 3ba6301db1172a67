"""A PostgreSQL server of the model, seen from the host: the one object DBA
code goes through. It owns the server's SQL (rows, statements, literals:
psql as postgres on the server's own socket, over SSH), its service
(stop, start, restart, a boot of atelier's set-up), its data directory
(control data, the fence) and its temp folders. The server's own word
decides who is primary (pg_is_in_recovery), never a container's name."""

from __future__ import annotations

import json
import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass

from atelier.core.errors import AtelierError
from atelier.core.matrix import PgBuild
from atelier.core.model import Container
from atelier.core.quote import sql_literal
from atelier.engine.containers import copy_in
from atelier.pg.step import step

FENCE_MARKER = ".atelier-fenced"   # in the data volume: the server stays stopped
SEED_MARKER = ".atelier-seeding"   # in the data volume: copy it again at boot


def psql_local(db: str, script: str = "-", variables: dict | None = None, db_is_shell: bool = False) -> str:
    """psql as postgres on the server's own socket, stopping at the first
    error, notices left out: every SQL step atelier runs in a server.
    `db_is_shell`: `db` is a shell expression ("$db"), not a name."""
    options = "".join(f" -v {shlex.quote(f'{k}={v}')}" for k, v in (variables or {}).items())
    return ('PGOPTIONS="-c client_min_messages=warning" psql -XAtq -v ON_ERROR_STOP=1' + options +
            f' -h "$PG_SOCKET_DIR" -d {db if db_is_shell else shlex.quote(db)} -f {shlex.quote(script)}')


def wait_for(check, seconds: float, every: float = 0.1):
    """`check()` until it returns something true, or None after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


@dataclass
class ServerState:
    running: bool
    in_recovery: bool = False
    receiver: str = "-"   # pg_stat_wal_receiver.status
    upstream: str = "-"   # the host it streams from, as it names it
    fenced: bool = False

    @property
    def primary(self) -> bool:
        return self.running and not self.in_recovery


STATE_SQL = """SELECT pg_is_in_recovery() AS in_recovery,
       coalesce((SELECT status FROM pg_stat_wal_receiver), '-') AS receiver,
       coalesce((SELECT sender_host FROM pg_stat_wal_receiver), '-') AS upstream"""

DATABASES_SQL = "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname"


class Server:
    """One server of a Session: `name` is the model's container name. Its SSH
    context (as postgres) is opened on first use, or given (a fan-out's)."""

    literal = staticmethod(sql_literal)

    def __init__(self, session, name: str, context=None):
        self.session = session
        self.name = name
        self.container: Container = session.matrix.container(name)
        self._context = context

    def __repr__(self) -> str:
        return f"Server({self.name})"

    @property
    def c(self):
        """The SSH context (a Fabric Connection as postgres)."""
        if self._context is None:
            self._context = self.session.context(self.name, "postgres")
        return self._context

    @property
    def build(self) -> PgBuild:
        return self.container.image.build

    @property
    def major(self) -> int:
        return self.container.major

    def step(self, name: str, command: str, **kw):
        """One shell step in the server's login environment (pg/step.py)."""
        return step(self.c, name, command, **kw)

    # ---- SQL -------------------------------------------------------------------------------

    def rows(self, query: str, db: str = "postgres", what: str = "asking the server", quiet: bool = False,
             **kw) -> list[dict]:
        """The rows of `query` (`quiet`: psql's errors are not shown; the
        caller explains them)."""
        wrapped = f"SELECT coalesce(json_agg(q), '[]'::json) FROM ({query}) q"
        kw.pop("out_stream", None)  # Invoke would show what goes to a stream given (hide or not)
        if quiet:
            kw.pop("err_stream", None)
        result = self.step(what, psql_local(db), stdin=wrapped, hide=True if quiet else "out", **kw)
        return json.loads(result.stdout.strip() or "[]")

    def run(self, statements: str, db: str = "postgres", what: str = "changing the server", **kw) -> None:
        """SQL statements (psql's meta-commands too), stopping at the first error."""
        kw.pop("out_stream", None)
        self.step(what, psql_local(db), stdin=statements, hide="out", **kw)

    def databases(self, **kw) -> list[str]:
        return [r["datname"] for r in self.rows(DATABASES_SQL, what="listing databases", **kw)]

    def setting(self, name: str, **kw) -> str:
        return self.rows(f"SELECT current_setting({sql_literal(name)}) AS v", **kw)[0]["v"]

    # ---- what it is doing -------------------------------------------------------------------

    def state(self, **kw) -> ServerState:
        result = self.c.run('. /etc/atelier/pg.env; test -e "$PG_DATA_MOUNT/' + FENCE_MARKER + '" && echo fenced; '
                            '"$PG_BINDIR/pg_isready" -q -h "$PG_SOCKET_DIR" && echo running',
                            warn=True, hide=True, in_stream=False)
        words = result.stdout.split()
        if "running" not in words:
            return ServerState(False, fenced="fenced" in words)
        row = self.rows(STATE_SQL, what="reading its role", **kw)[0]
        return ServerState(True, row["in_recovery"], row["receiver"], row["upstream"], "fenced" in words)

    # ---- its service ------------------------------------------------------------------------

    def _systemctl(self, action: str, what: str, **kw):
        return self.step(what, f'systemctl {action} "$PG_SERVICE"', sudo=True, **kw)

    def stop(self, what: str = "stopping the server", **kw) -> None:
        self._systemctl("stop", what, **kw)

    def start(self, what: str = "starting the server", **kw) -> None:
        self._systemctl("start", what, **kw)

    def restart(self, what: str = "restarting the server", **kw) -> None:
        self._systemctl("restart", what, **kw)

    def boot(self, what: str = "starting it", before: str = "", timeout: int = 0, **kw) -> None:
        """Run atelier's set-up again (its settings and pg_hba, a seed the
        data volume's marker asks for), then start the service, as at a
        container's boot. `before`: shell run first, as root."""
        setup = f"timeout {timeout} systemctl restart" if timeout else "systemctl restart"
        command = ('systemctl reset-failed atelier-pg-setup.service "$PG_SERVICE" 2>/dev/null; '
                   f'{setup} atelier-pg-setup.service && systemctl start "$PG_SERVICE"')
        self.step(what, f"{before} && {{ {command}; }}" if before else command, sudo=True, **kw)

    def wait_running(self, seconds: float = 60) -> bool:
        return bool(wait_for(lambda: self.state().running, seconds, 0.3))

    # ---- its data directory -------------------------------------------------------------

    def controldata(self, **kw) -> dict[str, str]:
        result = self.step("reading its control data", 'LC_ALL=C pg_controldata "$PGDATA"', hide=True, **kw)
        return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in result.stdout.splitlines()
                                                  if ":" in line)}

    def shutdown_checkpoint(self, **kw) -> str:
        """The LSN of a cleanly stopped server's last checkpoint."""
        facts = self.controldata(**kw)
        state = facts.get("Database cluster state", "")
        if state != "shut down":
            raise AtelierError(f"{self.name} did not shut down cleanly (pg_controldata says {state!r})")
        return facts["Latest checkpoint location"]

    def fence_through_engine(self) -> str:
        """Keep the server from taking writes, whatever state it is in: mark
        its data volume (boot then leaves it stopped) and kill its server.
        Through the engine, since a crashed container answers no SSH."""
        mount = self.build.data_mount
        found = self.session.engine.container(self.session.matrix.project, self.name)
        if found is None:
            return f"{self.name} has no container; nothing to fence"
        found.reload()
        if found.status == "running":
            found.exec_run(["bash", "-c", f'. /etc/atelier/pg.env; touch "{mount}/{FENCE_MARKER}"; '
                            'systemctl kill --signal=SIGKILL "$PG_SERVICE"; systemctl stop "$PG_SERVICE"'])
            return f"fenced {self.name}: its server is killed and stays stopped"
        copy_in(found, mount, {FENCE_MARKER: (b"fenced by inv db.failover\n", 0o644)})
        return f"fenced {self.name} (container {found.status}): its server stays stopped when it starts"

    # ---- its temp folders -----------------------------------------------------------------

    @contextmanager
    def temp_folder(self, what: str):
        """A folder of the server's /tmp for one task, removed afterwards
        whatever happens."""
        folder = self.step("making a work folder", f"mktemp -d /tmp/atelier-{what}-XXXXXX", hide=True).stdout.strip()
        try:
            yield folder
        finally:
            try:
                self.c.run(f"rm -rf {shlex.quote(folder)}", warn=True, hide=True, in_stream=False)
            except Exception:  # noqa: BLE001 - a connection Ctrl-C broke: what it stopped matters, not /tmp
                pass
