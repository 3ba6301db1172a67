"""configure, make, check and install, as the original's pg-configure,
pg-make, pg-check and pg-install did, from ~/workspace/postgres."""

from __future__ import annotations

import re
import shlex
import sys

from atelier.core.errors import AtelierError
from atelier.pg.configure import configure_line, parse_pg_config, rewrite
from atelier.pg.step import SOURCE, need_source, step

PACKAGED_ARGS = "$PG_HOME/workspace/.pg_config_configure"  # cached before any install
PACKAGED_PKGLIBDIR = "$PG_HOME/workspace/.pg_config_pkglibdir"
CACHED_BITCODE = "CLANG := $(if $(CLANG),ccache $(CLANG))"


def packaged_configure_args(c, **kw) -> list[str]:
    """The packaged server's own configure words, cached on first use (after
    pg.install, pg_config describes the new build instead)."""
    result = step(c, "reading pg_config --configure",
                  f'[ -s "{PACKAGED_ARGS}" ] || "$PG_BINDIR/pg_config" --configure > "{PACKAGED_ARGS}"; '
                  f'[ -s "{PACKAGED_PKGLIBDIR}" ] || "$PG_BINDIR/pg_config" --pkglibdir > "{PACKAGED_PKGLIBDIR}"; '
                  f'cat "{PACKAGED_ARGS}"', hide=True, **kw)
    return parse_pg_config(result.stdout)


# What pg.configure itself writes into the tree; rewritten at each configure.
ATELIER_FILES = (".atelier-configure.", "src/Makefile.custom")


def untracked_files(c, **kw) -> list[str]:
    """Files in the source tree that git neither tracks nor ignores: the
    user's own work (a new regression test, a patch), never build output."""
    result = step(c, "listing untracked files", f'cd "{SOURCE}" && if [ -d .git ]; then '
                  'git ls-files --others --exclude-standard; fi', hide=True, **kw)
    return [line for line in result.stdout.splitlines() if line and not line.startswith(ATELIER_FILES)]


def build_output(c, **kw) -> list[str]:
    """What cleaning the source tree removes: git's ignored files, or
    `make distclean` (what it would run) in a tree that is not a git clone."""
    result = step(c, "listing build output", f'cd "{SOURCE}" && if [ -d .git ]; then git clean -Xdn; '
                  'elif [ -f GNUmakefile ]; then echo "make distclean"; fi', hide=True, **kw)
    return [line.removeprefix("Would remove ") for line in result.stdout.splitlines() if line]


def configure(c, mode: str, dry_run: bool = False, force: bool = False, say=None, **kw) -> str:
    """pg-configure: remove build output, then ./configure like the packaged
    server, rewritten for `mode`. Both lines are kept beside the source.
    Only ignored files are removed, and with untracked files present it
    stops unless `force`, so that the user sees them first."""
    rewrite([], mode)  # an unknown mode fails here, before anything runs
    need_source(c, **kw)
    packaged = packaged_configure_args(c, **kw)
    args = rewrite(packaged, mode)
    line = configure_line(args)
    untracked = untracked_files(c, **kw)
    if dry_run:
        say = say or (lambda text: (kw.get("out_stream") or sys.stdout).write(text + "\n"))
        removed = build_output(c, **kw)
        say(f"would remove {len(removed)} build output path(s)" + "".join(f"\n  {p}" for p in removed))
        if untracked:
            say(f"would keep {len(untracked)} untracked file(s)" + "".join(f"\n  {p}" for p in untracked))
        return line
    if untracked and not force:
        shown = ", ".join(untracked[:10]) + (f" and {len(untracked) - 10} more" if len(untracked) > 10 else "")
        raise AtelierError(f"{SOURCE.replace('$PG_HOME', '~')} holds {len(untracked)} file(s) git neither "
                           f"tracks nor ignores: {shown}; configure removes only ignored build output, "
                           "so they would stay: add --force to go on, or git add them")
    step(c, "removing build output", f'cd "{SOURCE}" && if [ -d .git ]; then git clean -Xdfq; '
         'elif [ -f GNUmakefile ]; then make -s distclean; fi', **kw)
    step(c, "keeping the configure lines",
         f'cd "{SOURCE}" && printf "%s\\n" {shlex.quote(configure_line(packaged))} > .atelier-configure.packaged && '
         f'printf "%s\\n" {shlex.quote(line)} > .atelier-configure.{mode}', **kw)
    step(c, "configure", f'cd "{SOURCE}" && {line}', **kw)
    # Upstream's Makefile.custom hook, read at the end of Makefile.global:
    # - Debian's packaging patches where extension libraries live (pkglibdir);
    #   the build goes there too, so the new server finds the packaged
    #   extensions and install-world replaces its own.
    # - Packaged servers are built --with-llvm, so make also compiles each
    #   backend file to JIT bitcode with $(CLANG), an absolute path that passes
    #   by ccache's PATH wrappers: uncached, it was most of a rebuild after pg.clean.
    step(c, "writing src/Makefile.custom",
         f'cd "{SOURCE}" && printf "%s\\n" "override pkglibdir = $(cat "{PACKAGED_PKGLIBDIR}")" '
         f'{shlex.quote(CACHED_BITCODE)} > src/Makefile.custom', **kw)
    return line


MAKE_WORD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./+=-]*$")


def make_words(what: str) -> list[str]:
    """`--what`: make targets and VAR=value words, never a shell fragment."""
    words = what.split()
    bad = [w for w in words if not MAKE_WORD.match(w)]
    if bad or not words:
        raise AtelierError(f"--what {what!r} is not a list of make targets; valid: targets and VAR=value "
                           "words of letters, digits and _ . / + = -, e.g. world, world-bin, install-world")
    return words


def make(c, jobs: int = 0, args: str = "world", **kw) -> None:
    words = make_words(args)
    need_source(c, **kw)
    jobs_flag = f"-j{jobs}" if jobs else '-j"$(nproc)"'
    step(c, f"make {args}", f'cd "{SOURCE}" && make -s {jobs_flag} {shlex.join(words)}', **kw)


def clean(c, **kw) -> None:
    need_source(c, **kw)
    step(c, "make clean", f'cd "{SOURCE}" && make -s clean', **kw)


def check(c, suite: str = "", jobs: int = 0, **kw) -> None:
    """make check-world, or one suite: a folder under src/test (regress,
    isolation, recovery, ...) or contrib/NAME."""
    need_source(c, **kw)
    jobs_flag = f"-j{jobs}" if jobs else '-j"$(nproc)"'
    if not suite:
        step(c, "make check-world", f'cd "{SOURCE}" && make -s {jobs_flag} check-world', **kw)
        return
    where = suite if "/" in suite else f"src/test/{suite}"
    step(c, "finding the suite", f'cd "{SOURCE}" && test -f {shlex.quote(where)}/Makefile || '
         f'{{ echo "no test suite {shlex.quote(suite)}; valid: $(cd src/test && ls -d */ | tr -d / | xargs)'
         ', or contrib/NAME, or a folder of the tree" >&2; exit 3; }', **kw)
    step(c, f"make -C {where} check", f'cd "{SOURCE}" && make -s {jobs_flag} -C {shlex.quote(where)} check', **kw)


def install(c, docs: bool = False, core: bool = False, **kw) -> None:
    """pg-install: over the packaged server, so its service runs the new build
    (with `core`, the server and its programs only: contrib stays as installed)."""
    need_source(c, **kw)
    target = "install" if core else "install-world" if docs else "install-world-bin"
    step(c, f"make {target}", f'cd "{SOURCE}" && make -s {target}', sudo=True, **kw)
    step(c, "giving the tree back to postgres", f'chown -R postgres:postgres "{SOURCE}"', sudo=True, **kw)
