"""pg.*: build, install, run and debug PostgreSQL in containers (the original's pg-* helpers)."""

from __future__ import annotations

import sys

from .common import TARGET_HELP, USER_HELP, atelier_task, on_targets

H = {"target": TARGET_HELP, "user": USER_HELP}


def _helpers():
    from .. import helpers

    return helpers


@atelier_task(help={**H, "mode": "release, debug, valgrind or coverage (default debug)",
                    "dry_run": "print what would be removed and the final configure line; change nothing",
                    "force": "go on although the tree holds files git neither tracks nor ignores "
                             "(they are kept: only ignored build output is removed)"})
def configure(c, target=None, mode="debug", dry_run=False, force=False, user=None):
    """Configure ~/workspace/postgres like the packaged server, rewritten for a mode."""
    from ..configure import rewrite

    rewrite([], mode)  # an unknown mode is refused before anything connects
    h = _helpers()

    def work(ctx, **kw):
        line = h.configure(ctx, mode, dry_run, force, **kw)
        if dry_run:
            (kw.get("out_stream") or sys.stdout).write(line + "\n")

    on_targets(target, user, work)


@atelier_task(help={**H, "jobs": "parallel jobs (default: the container's cores)",
                    "what": "make target(s) (default world; world-bin skips the docs)"})
def make(c, target=None, jobs=0, what="world", user=None):
    """make world (or --what) in ~/workspace/postgres, with ccache."""
    _helpers().make_words(what)  # refused before anything connects
    on_targets(target, user, lambda ctx, **kw: _helpers().make(ctx, int(jobs), what, **kw))


@atelier_task(help=H)
def clean(c, target=None, user=None):
    """make clean in ~/workspace/postgres."""
    on_targets(target, user, lambda ctx, **kw: _helpers().clean(ctx, **kw))


@atelier_task(help={**H, "suite": "one suite: a folder of src/test (regress, isolation, ...) or contrib/NAME",
                    "jobs": "parallel jobs"})
def check(c, target=None, suite="", jobs=0, user=None):
    """make check-world, or one suite."""
    on_targets(target, user, lambda ctx, **kw: _helpers().check(ctx, suite, int(jobs), **kw))


@atelier_task(help={**H, "docs": "install-world (with docs) instead of install-world-bin"})
def install(c, target=None, docs=False, user=None):
    """Install the build over the packaged server (its service then runs it)."""
    on_targets(target, user, lambda ctx, **kw: _helpers().install(ctx, docs, **kw))


def _service_task(action):
    @atelier_task(name=action, help=H)
    def body(c, target=None, user=None):
        on_targets(target, user, lambda ctx, **kw: _code(_helpers().service(ctx, action, **kw)))

    body.__doc__ = f"systemctl {action} of the distribution's PostgreSQL service."
    return body


def _code(result):
    return getattr(result, "exited", 0)


start = _service_task("start")
stop = _service_task("stop")
restart = _service_task("restart")
status = _service_task("status")


@atelier_task(help=H)
def kill(c, target=None, user=None):
    """kill -9 the postmaster (its pid from postmaster.pid)."""
    on_targets(target, user, lambda ctx, **kw: _helpers().kill(ctx, **kw))


@atelier_task(help={**H, "stop": "stop the server under valgrind and start the normal service",
                    "trim": "delete the logs that hold no error",
                    "fetch": "copy the logs into this host folder ({name} = container)"})
def valgrind(c, target=None, stop=False, trim=False, fetch="", user=None):
    """Run the server under valgrind memcheck, one log per pid in ~/workspace/valgrind."""
    h = _helpers()

    def work(ctx, **kw):
        if trim:
            h.valgrind_trim(ctx, **kw)
        elif stop:
            h.valgrind_stop(ctx, **kw)
        elif not fetch:
            h.valgrind_start(ctx, **kw)
        if fetch:
            _fetch_folder(ctx, "workspace/valgrind", fetch, **kw)

    on_targets(target, user, work)


@atelier_task(help={**H, "action": "clear (reset counters) or report (lcov + genhtml, copied here "
                                   "and published by apache2)",
                    "out": "host folder for the report ({name} = container; default coverage/{name})"})
def coverage(c, action, target=None, out="coverage/{name}", user=None):
    """Coverage counters: clear, or report (copied to the host and served on ATELIER_HTTP_PORT)."""
    from ..errors import choice_error

    if action not in ("clear", "report"):
        raise choice_error("coverage action", action, ("clear", "report"))
    h = _helpers()

    def work(ctx, **kw):
        if action == "clear":
            return h.coverage_clear(ctx, **kw)
        folder = h.coverage_report(ctx, **kw)
        local = _fetch_folder(ctx, folder, out, **kw)
        _publish(ctx.host, local)

    on_targets(target, user, work)


def _fetch_folder(ctx, remote: str, local_pattern: str, **kw) -> str:
    """Copy a folder out of a container (as one tarball), into a host folder."""
    import os
    import tarfile
    import tempfile

    from ..helpers import step

    name = getattr(ctx, "host", "local")
    local = local_pattern.replace("{name}", name)
    archive = f"/tmp/atelier-fetch-{os.getpid()}.tar"
    step(ctx, f"packing {remote}", f'cd "$PG_HOME" && tar -cf {archive} -C {remote} .', **kw)
    with tempfile.TemporaryDirectory() as tmp:
        ctx.get(archive, os.path.join(tmp, "f.tar"))
        step(ctx, "cleaning up", f"rm -f {archive}", **kw)
        os.makedirs(local, exist_ok=True)
        with tarfile.open(os.path.join(tmp, "f.tar")) as tar:
            tar.extractall(local, filter="data")
    return local


def _publish(name: str, folder: str) -> None:
    """Put a report into the apache2 service's html volume, under coverage/NAME/."""
    import io
    import tarfile

    from ..engine import connect
    from ..model import Environment, select
    from ..settings import load_settings

    env = Environment(load_settings(), select())
    client = connect()
    apache = client.containers.get(env.docker_name(env.container("apache2")))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=f"coverage/{name}")
    apache.put_archive("/var/www/html", buffer.getvalue())


@atelier_task(help={**H, "core_file": "path of the core file in the container"})
def core(c, core_file, target=None, user=None):
    """gdb batch dump of a core file: all threads' full backtraces, registers, libraries, mappings."""
    on_targets(target, user, lambda ctx, **kw: _code(_helpers().core(ctx, core_file, **kw)))


@atelier_task(name="user", help={**H, "who": "experdba or postgres; show prints the current one"})
def pg_user(c, who, target=None, user=None):
    """Which identity psql uses in login shells of the container(s)."""
    from ..settings import load_settings

    password = load_settings().superuser_password
    chosen = None if who == "show" else who
    on_targets(target, user, lambda ctx, **kw: _code(_helpers().pg_user(ctx, chosen, password, **kw)))
