"""Work on many containers at once: each target's output prefixed with its
name, and each target's outcome kept, whatever the others did."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from atelier.core.errors import AtelierError, StepFailed
from atelier.core.parallel import parallel_map
from atelier.core.table import format_table
from atelier.ssh.guard import guarded
from atelier.ssh.session import Session
from atelier.ssh.targets import LOCAL


class Prefixed:
    """A stream that writes whole lines, each behind `prefix`, under a shared lock."""

    def __init__(self, prefix: str, stream, lock: threading.Lock):
        self.prefix, self.stream, self.lock, self.pending = prefix, stream, lock, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if lines:
            with self.lock:
                self.stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.write("\n")


@dataclass
class Outcome:
    name: str
    exit_code: int
    seconds: float
    error: str = ""


def fan_out(session: Session, names: list[str], work, user: str | None = None,
            out=None, err=None) -> list[Outcome]:
    """Run `work(context, **streams)` on every target at once. It returns an
    exit code (or None for success) or raises; with more than one target,
    output lines are prefixed with the target's name. Whatever one target
    raises becomes its own outcome: the others' results are kept."""
    from invoke.exceptions import AuthFailure

    out, err = out or sys.stdout, err or sys.stderr
    lock = threading.Lock()
    many = len(names) > 1
    if any(n != LOCAL for n in names):
        session.gateway()  # open once, before the threads share it

    def one(name: str) -> Outcome:
        started = time.monotonic()
        streams = {}
        if many:
            width = max(len(n) for n in names)
            streams = {"out_stream": Prefixed(f"{name:<{width}} | ", out, lock),
                       "err_stream": Prefixed(f"{name:<{width}} ! ", err, lock)}
        try:
            result = work(session.context(name, user or session.user_for(name)), **streams)
            code, error = (result if isinstance(result, int) else 0), ""
        except StepFailed as exc:
            code, error = exc.code, f"{name}: {exc}"
        except AtelierError as exc:
            code, error = 255, str(exc)
        except AuthFailure:
            code, error = 1, (f"{name}: sudo refused the environment's sudo password; containers get it at "
                              "start: `inv up` after changing ATELIER_SUDO_PASSWORD")
        except OSError as exc:
            code, error = 1, f"{name}: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        except Exception as exc:
            code, error = 1, f"{name}: {type(exc).__name__}: {exc}"
        for stream in streams.values():
            stream.flush()
        return Outcome(name, code, time.monotonic() - started, error)

    return parallel_map(one, names, workers=32)


def run_on(session: Session, names: list[str], command: str, user: str | None = None,
           out=None, err=None) -> list[Outcome]:
    """A shell command on every target at once."""
    def work(ctx, **streams):
        return ctx.run(guarded(command), warn=True, hide=False, in_stream=False, **streams).exited

    return fan_out(session, names, work, user, out, err)


def summary_table(outcomes: list[Outcome]) -> str:
    return format_table(("container", "exit", "seconds", ""),
                        [(o.name, o.exit_code, f"{o.seconds:.2f}", o.error) for o in outcomes],
                        right=("exit", "seconds"))
