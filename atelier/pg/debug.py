"""Debugging a server: valgrind memcheck with the original's options, and
gdb's dump of a core file."""

from __future__ import annotations

import shlex

from atelier.pg.service import service
from atelier.pg.step import SOURCE, step

VALGRIND_LOGS = "$PG_HOME/workspace/valgrind"


def valgrind_start(c, **kw) -> None:
    """pg-valgrind: the server under memcheck with the original's options,
    one log per pid in ~/workspace/valgrind (old logs removed first)."""
    service(c, "stop", **kw)
    options = ("--leak-check=full --num-callers=100 --gen-suppressions=all --time-stamp=yes "
               "--trace-children=yes --suppressions=$PG_HOME/valgrind.supp "
               f'--suppressions={SOURCE}/src/tools/valgrind.supp --log-file={VALGRIND_LOGS}/%p.log')
    step(c, "start under valgrind",
         f'rm -rf "{VALGRIND_LOGS}" && mkdir -p "{VALGRIND_LOGS}" || exit 1; '
         # Only the redirected group goes to the background (`a && b &` would
         # background a subshell still holding the SSH channel's stdout).
         f'( exec setsid valgrind {options} "$PG_BINDIR/postgres" -D "$PGDATA" '
         '-c config_file="$PG_CONFDIR/postgresql.conf" ) < /dev/null '
         f'> "{VALGRIND_LOGS}/postmaster.out" 2>&1 & '
         'for i in $(seq 600); do "$PG_BINDIR/pg_isready" -q -h "$PG_SOCKET_DIR" && exit 0; sleep 0.5; done; '
         'echo "the server under valgrind did not answer in 300 s" >&2; exit 5', **kw)


def valgrind_stop(c, **kw) -> None:
    # Leak checking makes shutdown slow: give it time before the service starts.
    step(c, "stop the server under valgrind",
         '"$PG_BINDIR/pg_ctl" stop -D "$PGDATA" -m fast -w -t 300 >/dev/null 2>&1 || true', **kw)
    service(c, "start", **kw)


def valgrind_trim(c, **kw) -> None:
    """pg-trim-valgrind: drop the logs that hold no error."""
    step(c, "trim valgrind logs", f'cd "{VALGRIND_LOGS}" && for f in *.log; do '
         'grep -q "ERROR SUMMARY: 0 errors" "$f" && rm -f "$f"; done; ls', **kw)


def core(c, core_file: str, **kw):
    """pg-core: gdb's batch dump of a core file against the built postgres."""
    commands = ["thread apply all bt full", "info registers", "info locals", "info sharedlibrary",
                "info proc mappings"]
    ex = " ".join(f"-ex {shlex.quote(x)}" for x in commands)
    step(c, "finding the core file", f'test -r {shlex.quote(core_file)} || '
         f'{{ echo "no readable core file {shlex.quote(core_file)}" >&2; exit 3; }}', **kw)
    return step(c, "gdb", f'gdb -q -batch {ex} "$PG_BINDIR/postgres" {shlex.quote(core_file)}', **kw)
