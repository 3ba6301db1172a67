"""How every helper runs in a server container: one step at a time in the
container's login environment (where PostgreSQL lives comes from
/etc/atelier/pg.env, written into the image), guarded so that it ends with
the client, secrets on stdin, StepFailed naming the step when it fails.

Helpers are plain functions over a context: anything with `run` and `sudo`,
i.e. a Fabric Connection to a container or, inside one, an Invoke Context."""

from __future__ import annotations

import io
import shlex
import sys

from atelier.core.errors import StepFailed
from atelier.ssh.guard import guarded

# Every step starts from the image's facts (where PostgreSQL lives) and the
# build environment login shells share (pinned locale, ccache first on PATH).
PRELUDE = ('set -a; . /etc/atelier/pg.env; set +a; . /etc/atelier/build.sh; '
           'export PATH="$PG_BINDIR:$PATH"; ')
WORKSPACE = "$PG_HOME/workspace"
SOURCE = "$PG_HOME/workspace/postgres"


def step(c, name: str, command: str, sudo: bool = False, stdin: str | None = None, **kw):
    """Run one step in the login environment; StepFailed if it fails.
    `stdin` feeds the step (secrets go there, never into argv); other steps
    end with the client (see remote.guarded)."""
    line = PRELUDE + command
    if stdin is None:
        line, kw["in_stream"] = guarded(line), False
    else:
        kw["in_stream"] = ChunkedInput(stdin)
    if sudo:
        kw["err_stream"] = WithoutPrompt(kw.get("err_stream") or sys.stderr, c.config.sudo.prompt)
        result = c.sudo("bash -c " + shlex.quote(line), warn=True, **kw)
    else:
        result = c.run(line, warn=True, **kw)
    if result.exited != 0:
        raise StepFailed(name, result.exited)
    return result


class ChunkedInput(io.StringIO):
    """What a step reads on stdin. Invoke reads a stream that is not a
    terminal one byte at a time, sleeping 10 ms between reads (100 bytes/s:
    a 1 kB SQL script took 10 s); this one hands over up to 64 kB a read."""

    def read(self, size: int | None = -1) -> str:
        return super().read(65536 if size is not None and 0 <= size < 65536 else size)


class WithoutPrompt:
    """A stream that leaves out sudo's password prompt: sudo -S writes it to
    stderr, and it is answered for the user, so it would only be noise."""

    def __init__(self, stream, prompt: str):
        self.stream, self.prompt = stream, prompt

    def write(self, text: str) -> int:
        self.stream.write(text.replace(self.prompt, ""))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def need_source(c, **kw) -> None:
    step(c, "finding the source tree", f'test -x "{SOURCE}/configure" || '
         f'{{ echo "no PostgreSQL source tree in {SOURCE}: run inv workspace.get first" >&2; exit 3; }}', **kw)
