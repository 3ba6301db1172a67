"""What every task shares: the error boundary and building the Environment."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import signal
import sys
from pathlib import Path

from invoke import Task, task
from invoke.exceptions import Exit

from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.core.settings import load_settings
from atelier.core.state import last_selection, project_lock
from atelier.engine.client import Engine
from atelier.ssh.fanout import fan_out, summary_table
from atelier.ssh.session import NO_AGENT, Session, agent_available
from atelier.ssh.targets import LOCAL, recorded_names, resolve_targets


def debugging() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)


# One letter means one thing in every task; other options are long only.
SHORT_FLAGS = {"target": "t", "user": "u", "profile": "p", "os": "o", "yes": "y"}


class AtelierTask(Task):
    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name in SHORT_FLAGS:
            opts["names"].append(SHORT_FLAGS[name])
        return opts


def atelier_task(*args, **kwargs):
    """invoke.task whose AtelierError (and engine, file and sudo errors)
    become one line on stderr and exit code 1; `inv --debug ...` shows the
    traceback instead. Ctrl-C exits 130 at once (see parallel.py)."""

    def wrap(body):
        @functools.wraps(body)
        def run(*a, **kw):
            succeeded = False
            try:
                result = body(*a, **kw)
                succeeded = True
                return result
            except KeyboardInterrupt:
                interrupted()
            except BrokenPipeError:
                raise  # the reader of our output left: quietly (tasks/__init__.py)
            except Exception as exc:
                line = None if debugging() else one_line(exc)
                if line is None:
                    raise
                raise Exit(f"atelier: {line}", code=1) from None
            finally:
                note_outcome(succeeded)

        return task(run, klass=AtelierTask, auto_shortflags=False, **kwargs)

    if args and callable(args[0]):
        return wrap(args[0])
    return wrap


_OUTCOME = {"failed": False, "armed": False}


def running_as_the_command() -> bool:
    """This process is `inv` or `atelier` itself, not a test runner or a
    script that imported the tasks (whose own exit status must stand)."""
    program = sys.argv[0] if sys.argv else ""
    return (os.path.basename(program) in ("inv", "invoke", "atelier")
            or program.endswith(os.path.join("invoke", "__main__.py")))


def note_outcome(succeeded: bool) -> None:
    if not succeeded:
        _OUTCOME["failed"] = True
    elif not _OUTCOME["armed"] and running_as_the_command():
        _OUTCOME["armed"] = True
        atexit.register(leave_without_teardown)


def leave_without_teardown() -> None:
    """After tasks that all succeeded, the command ends without tearing
    down the interpreter: freeing every module of paramiko, cryptography,
    invoke and the engine's SDK took 40-50 ms, a tenth of an `inv run`.
    Every other exit handler still runs first (logging's flush among them);
    a failed task keeps Python's own exit and its status."""
    if _OUTCOME["failed"]:
        return
    atexit.unregister(leave_without_teardown)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left, a closed stream
            pass
    os._exit(0)


def interrupted():
    """Leave at once: worker threads are not waited for, and leaving closes
    every connection, which ends the commands they ran (ssh/guard.py)."""
    print("atelier: interrupted", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(130)


@contextlib.contextmanager
def uninterrupted(what: str):
    """A role change cut half-way would leave a pair with no primary, or
    two: the first Ctrl-C lets it finish (seconds) and then leaves with 130;
    a second one leaves at once."""
    caught = []

    def later(signum, frame):
        if caught:
            interrupted()
        caught.append(signum)
        print(f"atelier: {what} finishes first, then stops (Ctrl-C again to leave at once)",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, later)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            interrupted()


def one_line(exc: Exception) -> str | None:
    """What a user needs to know of an error, or None for a bug (traceback)."""
    if isinstance(exc, AtelierError):
        return str(exc)
    module = type(exc).__module__
    if module.startswith(("docker.", "requests.", "urllib3.")):
        explanation = getattr(exc, "explanation", None) or str(exc).split("(Caused by")[0].strip()
        if module.startswith(("requests.", "urllib3.")) or "Connection" in type(exc).__name__:
            return f"lost the Docker engine: {explanation or type(exc).__name__}; is it running? (`docker info`)"
        return f"the Docker engine said: {explanation} (--debug for details)"
    if type(exc).__name__ == "AuthFailure":
        return ("sudo refused the environment's sudo password; containers get it at start: "
                "`inv up` after changing ATELIER_SUDO_PASSWORD")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


# ---- settings, handed to tasks the Invoke way -----------------------------------------
# tasks.py (or the `atelier` command) sets c.config.atelier.root, the folder
# whose .env and .state/ are used; a test may put Settings of its own in
# c.config.atelier.settings, and a task then runs with them, MockContext included.

CONFIG_DEFAULTS = {"atelier": {"root": None, "settings": None, "engine": None}}


def settings_of(c):
    """The settings of this run, loaded once per process."""
    settings = c.config.atelier.settings
    if settings is None:
        settings = _load(c.config.atelier.root)
        c.config.atelier.settings = settings
    return settings


@functools.lru_cache(maxsize=None)
def _load(root):
    return load_settings(Path(root) if root else None)


def engine_of(c) -> Engine:
    """The engine of this run, chosen once (DOCKER_HOST, a docker context,
    ATELIER_DOCKER_HOST, the local socket); its client connects on first use."""
    engine = c.config.atelier.engine
    if engine is None:
        settings = settings_of(c)
        engine = Engine.chosen(settings.docker_host, nodes=settings.nodes)
        c.config.atelier.engine = engine
    return engine


def remembered_environment(c, profile=None, os=None, pg=None):
    """The selection given, else the one the last `up` used, else the
    default profile; and the options that name it (to remember after up).
    An option given empty (`--profile ''`) is refused, not taken as absent."""
    given = {k: v for k, v in (("profile", profile), ("os", os), ("pg", pg)) if v is not None}
    options = given or last_selection(settings_of(c).state_dir)
    return selected_environment(c, **options), options


def selected_environment(c, profile=None, os=None, pg=None):
    """The model of the selection that --profile/--os/--pg name."""
    settings = settings_of(c)
    return Environment(settings, select(profile=profile, os=os, pg=pg, user_profiles=settings.profiles))


def locked(settings, what: str):
    """The project's lock, for a task that changes the environment."""
    return project_lock(settings.state_dir, what, float(os.environ.get("ATELIER_LOCK_TIMEOUT", "600")))


def confirm(question: str, yes: bool, refusal: str) -> None:
    """Go on if --yes, or if the user says yes on a terminal; else one line."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise AtelierError(refusal)
    answer = input(f"{question} [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise AtelierError("nothing changed")


SELECT_HELP = {
    "profile": "a profile or the start of its name: default, debian, distro, pg14..pg18, an OS name, full, "
               "develop (with no option: the selection the last up used)",
    "os": "OS name(s), comma-separated: rocky8, rocky9, ubuntu22, ubuntu24, debian12, debian13, debian14",
    "pg": "PostgreSQL major(s), comma-separated: 14..18",
}


TARGET_HELP = ("container name, glob (debian12-pg15-*, *-standby) or comma list; "
               "`local` runs here, with an Invoke context")
USER_HELP = "login user (default: postgres on servers, atelier on init containers)"


def session(c, forward_agent: bool = False) -> Session:
    """Connections for this run (a context manager that closes them all);
    with `forward_agent`, the user's SSH agent is forwarded when one runs,
    and a line says so when none does."""
    if forward_agent and not agent_available():
        print(f"atelier: {NO_AGENT}", file=sys.stderr)
        forward_agent = False
    return Session(settings_of(c), engine_of(c), forward_agent)


def targets(current: Session, pattern) -> list[str]:
    if not pattern:
        raise AtelierError("--target is required: a container name, a glob, or a comma list")
    return resolve_targets(pattern, recorded_names(current.settings))


def finish(outcomes) -> None:
    """Summary for many targets; exit non-zero when any failed."""
    failed = [o for o in outcomes if o.exit_code != 0]
    if len(outcomes) > 1:
        print(summary_table(outcomes), file=sys.stderr)
    elif failed and failed[0].error:
        raise Exit(f"atelier: {failed[0].error}", code=1)
    if failed:
        raise Exit(code=max(1, min(255, max(o.exit_code for o in failed))))


def on_targets(c, target, user, work) -> None:
    """Resolve --target, run the helper `work(context, **streams)` on each at once, report."""
    with session(c) as current:
        names = targets(current, target)
        refuse_local_outside_container(names)
        finish(fan_out(current, names, work, user))


def refuse_local_outside_container(names) -> None:
    """Helpers read the container's facts (/etc/atelier); elsewhere they would
    only fail noisily, or make folders in the wrong place."""
    if LOCAL in names and not Path("/etc/atelier/pg.env").exists():
        raise AtelierError("--target local runs a helper inside an atelier server container, and this "
                           "machine is not one (no /etc/atelier/pg.env); name a container instead")


def servers_named_or_up(current: Session, target) -> list[str]:
    """--target's servers, else every server whose host key is recorded (up)."""
    if target:
        return targets(current, target)
    known = {s.name for s in current.matrix.servers}
    return [n for n in recorded_names(current.settings) if n in known]


def report_failures(outcomes, named: bool, exit: bool = True) -> None:
    """A server named with --target that failed is an error (exit 1 when
    `exit`); one found by default (a stopped container) is a note."""
    failed = [o for o in outcomes if o.exit_code]
    for o in failed:
        print(f"atelier: {o.error}" if named else f"· skipped {o.name}: {o.error}", file=sys.stderr)
    if failed and named and exit:
        finish(failed)
