"""What every task shares: the error boundary and building the Environment."""

from __future__ import annotations

import contextlib
import functools
import logging

from invoke import Task, task
from invoke.exceptions import Exit

from ..errors import AtelierError


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
            try:
                return body(*a, **kw)
            except KeyboardInterrupt:
                interrupted()
            except Exception as exc:
                line = None if debugging() else one_line(exc)
                if line is None:
                    raise
                raise Exit(f"atelier: {line}", code=1) from None

        return task(run, klass=AtelierTask, auto_shortflags=False, **kwargs)

    if args and callable(args[0]):
        return wrap(args[0])
    return wrap


def interrupted():
    """Leave at once: worker threads are not waited for, and leaving closes
    every connection, which ends the commands they ran (remote.guarded)."""
    import os
    import sys

    print("atelier: interrupted", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(130)


@contextlib.contextmanager
def uninterrupted(what: str):
    """A role change cut half-way would leave a pair with no primary, or
    two: the first Ctrl-C lets it finish (seconds) and then leaves with 130;
    a second one leaves at once."""
    import signal
    import sys

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

CONFIG_DEFAULTS = {"atelier": {"root": None, "settings": None}}


def settings_of(c):
    """The settings of this run, loaded once per process."""
    settings = c.config.atelier.settings
    if settings is None:
        settings = _load(c.config.atelier.root)
        c.config.atelier.settings = settings
    from .. import engine_host

    engine_host.use(settings.docker_host)
    return settings


@functools.lru_cache(maxsize=None)
def _load(root):
    from pathlib import Path

    from ..settings import load_settings

    return load_settings(Path(root) if root else None)


def remembered_environment(c, profile=None, os=None, pg=None):
    """The selection given, else the one the last `up` used, else the
    default profile; and the options that name it (to remember after up)."""
    from ..state import last_selection

    given = {k: v for k, v in (("profile", profile), ("os", os), ("pg", pg)) if v}
    options = given or last_selection(settings_of(c).state_dir)
    return selected_environment(c, **options), options


def selected_environment(c, profile=None, os=None, pg=None):
    """The model of the selection that --profile/--os/--pg name."""
    from ..model import Environment, select

    settings = settings_of(c)
    return Environment(settings, select(profile=profile, os=os, pg=pg, user_profiles=settings.profiles))


def locked(settings, what: str):
    """The project's lock, for a task that changes the environment."""
    import os

    from ..state import project_lock

    return project_lock(settings.state_dir, what, float(os.environ.get("ATELIER_LOCK_TIMEOUT", "600")))


def confirm(question: str, yes: bool, refusal: str) -> None:
    """Go on if --yes, or if the user says yes on a terminal; else one line."""
    import sys

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


def session(c, forward_agent: bool = False):
    """Connections for this run (a context manager that closes them all);
    with `forward_agent`, the user's SSH agent is forwarded when one runs,
    and a line says so when none does."""
    import sys

    from ..remote import NO_AGENT, Session, agent_available

    if forward_agent and not agent_available():
        print(f"atelier: {NO_AGENT}", file=sys.stderr)
        forward_agent = False
    return Session(settings_of(c), forward_agent)


def targets(current, pattern):
    from ..remote import recorded_names, resolve_targets

    if not pattern:
        raise AtelierError("--target is required: a container name, a glob, or a comma list")
    return resolve_targets(pattern, recorded_names(current.settings))


def finish(outcomes) -> None:
    """Summary for many targets; exit non-zero when any failed."""
    import sys

    from ..remote import summary_table

    failed = [o for o in outcomes if o.exit_code != 0]
    if len(outcomes) > 1:
        print(summary_table(outcomes), file=sys.stderr)
    elif failed and failed[0].error:
        raise Exit(f"atelier: {failed[0].error}", code=1)
    if failed:
        raise Exit(code=max(1, min(255, max(o.exit_code for o in failed))))


def on_targets(c, target, user, work) -> None:
    """Resolve --target, run the helper `work(context, **streams)` on each at once, report."""
    from ..remote import fan_out

    with session(c) as current:
        names = targets(current, target)
        refuse_local_outside_container(names)
        finish(fan_out(current, names, work, user))


def refuse_local_outside_container(names) -> None:
    """Helpers read the container's facts (/etc/atelier); elsewhere they would
    only fail noisily, or make folders in the wrong place."""
    from pathlib import Path

    from ..remote import LOCAL

    if LOCAL in names and not Path("/etc/atelier/pg.env").exists():
        raise AtelierError("--target local runs a helper inside an atelier server container, and this "
                           "machine is not one (no /etc/atelier/pg.env); name a container instead")
