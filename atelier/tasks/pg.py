"""pg.*: build, install, run and debug PostgreSQL in containers (the original's pg-* helpers)."""

from __future__ import annotations

import sys
from pathlib import Path

from atelier.core.errors import AtelierError, choice_error
from atelier.engine.containers import publish_report
from atelier.pg import build, coverage as pg_coverage, debug, identity, service
from atelier.pg.changed_coverage import build_report, html_page, text_summary
from atelier.pg.configure import rewrite
from atelier.pg.workspace import fetch_folder

from .common import TARGET_HELP, USER_HELP, atelier_task, engine_of, on_targets, selected_environment, settings_of

TARGET_AND_USER = {"target": TARGET_HELP, "user": USER_HELP}


def _result_code(result) -> int:
    return getattr(result, "exited", 0)


@atelier_task(help={**TARGET_AND_USER, "mode": "release, debug, valgrind or coverage (default debug)",
                    "dry_run": "print what would be removed and the final configure line; change nothing",
                    "force": "go on although the tree holds files git neither tracks nor ignores "
                             "(they are kept: only ignored build output is removed)"})
def configure(c, target=None, mode="debug", dry_run=False, force=False, user=None):
    """Configure ~/workspace/postgres like the packaged server, rewritten for a mode."""
    rewrite([], mode)  # an unknown mode is refused before anything connects

    def work(ctx, **streams):
        line = build.configure(ctx, mode, dry_run, force, **streams)
        if dry_run:
            (streams.get("out_stream") or sys.stdout).write(line + "\n")

    on_targets(c, target, user, work)


@atelier_task(help={**TARGET_AND_USER, "jobs": "parallel jobs (default: the container's cores)",
                    "what": "make target(s) (default world; world-bin skips the docs)"})
def make(c, target=None, jobs=0, what="world", user=None):
    """make world (or --what) in ~/workspace/postgres, with ccache."""
    build.make_words(what)  # refused before anything connects
    on_targets(c, target, user, lambda ctx, **streams: build.make(ctx, int(jobs), what, **streams))


@atelier_task(help=TARGET_AND_USER)
def clean(c, target=None, user=None):
    """make clean in ~/workspace/postgres."""
    on_targets(c, target, user, build.clean)


@atelier_task(help={**TARGET_AND_USER, "suite": "one suite: a folder of src/test (regress, isolation, "
                                                "...) or contrib/NAME",
                    "jobs": "parallel jobs"})
def check(c, target=None, suite="", jobs=0, user=None):
    """make check-world, or one suite."""
    on_targets(c, target, user, lambda ctx, **streams: build.check(ctx, suite, int(jobs), **streams))


@atelier_task(help={**TARGET_AND_USER, "docs": "install-world (with docs) instead of install-world-bin",
                    "core": "the server and its programs only (make install): after `pg.make --what all`; "
                            "the installed extensions stay"})
def install(c, target=None, docs=False, core=False, user=None):
    """Install the build over the packaged server (its service then runs it)."""
    if docs and core:
        raise AtelierError("--docs and --core ask for different installs; choose one")
    on_targets(c, target, user, lambda ctx, **streams: build.install(ctx, docs, core, **streams))


def _service_task(action):
    @atelier_task(name=action, help=TARGET_AND_USER)
    def body(c, target=None, user=None):
        on_targets(c, target, user,
                   lambda ctx, **streams: _result_code(service.service(ctx, action, **streams)))

    body.__doc__ = f"systemctl {action} of the distribution's PostgreSQL service."
    return body


start = _service_task("start")
stop = _service_task("stop")
restart = _service_task("restart")
status = _service_task("status")


@atelier_task(help=TARGET_AND_USER)
def kill(c, target=None, user=None):
    """kill -9 the postmaster (its pid from postmaster.pid)."""
    on_targets(c, target, user, service.kill)


@atelier_task(help={**TARGET_AND_USER, "stop": "stop the server under valgrind and start the normal service",
                    "trim": "delete the logs that hold no error",
                    "fetch": "copy the logs into this host folder ({name} = container)"})
def valgrind(c, target=None, stop=False, trim=False, fetch="", user=None):
    """Run the server under valgrind memcheck, one log per pid in ~/workspace/valgrind."""
    def work(ctx, **streams):
        if trim:
            debug.valgrind_trim(ctx, **streams)
        elif stop:
            debug.valgrind_stop(ctx, **streams)
        elif not fetch:
            debug.valgrind_start(ctx, **streams)
        if fetch:
            fetch_folder(ctx, "workspace/valgrind", fetch, **streams)

    on_targets(c, target, user, work)


@atelier_task(help={**TARGET_AND_USER,
                    "action": "clear (reset counters) or report (lcov + genhtml, copied here and published "
                              "by apache2)",
                    "out": "host folder for the report ({name} = container; default coverage/{name})",
                    "changed": "report only the lines a patch changed: --changed (the commits not in upstream's "
                               "main branch), --changed COMMIT, or --changed A..B"},
              optional=["changed"])
def coverage(c, action, target=None, out="coverage/{name}", user=None, changed=None):
    """Coverage counters: clear, or report (copied to the host and served on ATELIER_HTTP_PORT)."""
    if action not in ("clear", "report"):
        raise choice_error("coverage action", action, ("clear", "report"))
    if changed is not None and action != "report":
        raise AtelierError("--changed goes with report")
    if changed not in (None, True):
        pg_coverage.changed_range(changed)  # one line before any connection
    env, engine = selected_environment(c), engine_of(c)

    def work(ctx, **streams):
        if action == "clear":
            return pg_coverage.clear(ctx, **streams)
        if changed is not None:
            return _changed_report(engine, env, ctx, changed, out, streams)
        folder = pg_coverage.report(ctx, **streams)
        publish_report(engine, env, f"coverage/{ctx.host}", fetch_folder(ctx, folder, out, **streams))

    on_targets(c, target, user, work)


def _changed_report(engine, env, ctx, changed, out, streams) -> None:
    """The changed lines' coverage: a summary here, and an HTML page that
    walks through the lines that did not run, here and on apache2."""
    base, diff, lcov = pg_coverage.changed(ctx, None if changed is True else changed, **streams)
    report = build_report(base, diff, lcov)
    folder = Path(out.replace("{name}", ctx.host) + "-changed")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(html_page(report))
    publish_report(engine, env, f"coverage-changed/{ctx.host}", str(folder))
    stream = streams.get("out_stream") or sys.stdout
    stream.write(text_summary(report) + f"\n{folder / 'index.html'}\n")


@atelier_task(help={**TARGET_AND_USER, "core_file": "path of the core file in the container"})
def core(c, core_file, target=None, user=None):
    """gdb batch dump of a core file: all threads' full backtraces, registers, libraries, mappings."""
    on_targets(c, target, user, lambda ctx, **streams: _result_code(debug.core(ctx, core_file, **streams)))


@atelier_task(name="user", help={**TARGET_AND_USER, "who": "experdba or postgres; show prints the current one"})
def pg_user(c, who, target=None, user=None):
    """Which identity psql uses in login shells of the container(s)."""
    password = settings_of(c).superuser_password
    chosen = None if who == "show" else who
    on_targets(c, target, user,
               lambda ctx, **streams: _result_code(identity.pg_user(ctx, chosen, password, **streams)))
