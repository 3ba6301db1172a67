"""What every task shares: the error boundary and building the Environment."""

from __future__ import annotations

import functools
import logging

from invoke import task
from invoke.exceptions import Exit

from ..errors import AtelierError


def debugging() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def atelier_task(*args, **kwargs):
    """invoke.task whose AtelierError (and engine errors) become one line on
    stderr and exit code 1; `inv --debug ...` shows the traceback instead."""

    def wrap(body):
        @functools.wraps(body)
        def run(*a, **kw):
            try:
                return body(*a, **kw)
            except AtelierError as exc:
                if debugging():
                    raise
                raise Exit(f"atelier: {exc}", code=1) from None
            except Exception as exc:
                if debugging() or not _is_engine_error(exc):
                    raise
                explanation = getattr(exc, "explanation", None) or str(exc)
                raise Exit(f"atelier: the Docker engine said: {explanation} (--debug for details)",
                           code=1) from None

        return task(run, **kwargs)

    if args and callable(args[0]):
        return wrap(args[0])
    return wrap


def _is_engine_error(exc: Exception) -> bool:
    return type(exc).__module__.startswith("docker.")


def environment(profile=None, os=None, pg=None):
    from ..model import Environment, select
    from ..settings import load_settings

    return Environment(load_settings(), select(profile=profile, os=os, pg=pg))


SELECT_HELP = {
    "profile": "a named profile: default, pg14..pg18, an OS name, full, develop",
    "os": "OS name(s), comma-separated: rocky8, rocky9, ubuntu22, ubuntu24, debian12, debian13",
    "pg": "PostgreSQL major(s), comma-separated: 14..18",
}


TARGET_HELP = ("container name, glob (debian12-pg15-*, *-standby) or comma list; "
               "`local` runs here, with an Invoke context")
USER_HELP = "login user (default: postgres on servers, atelier on init containers)"


def session():
    from ..remote import Session
    from ..settings import load_settings

    return Session(load_settings())


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


def on_targets(target, user, work) -> None:
    """Resolve --target, run `work(context, **streams)` on each at once, report."""
    from ..remote import fan_out

    current = session()
    try:
        finish(fan_out(current, targets(current, target), work, user))
    finally:
        current.close()
