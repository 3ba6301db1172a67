"""The original's container-side helpers (pg-configure, pg-make, ...), as
plain functions over a context: anything with `run` and `sudo`, i.e. a
Fabric Connection to a container or, inside one, an Invoke Context.

Each function runs its steps in the container's login environment (where
PostgreSQL lives comes from /etc/atelier/pg.env, written into the image) and
raises StepFailed naming the step and its exit code when one fails."""

from __future__ import annotations

import io
import re
import shlex
import sys

from .configure import configure_line, parse_pg_config, rewrite
from .errors import AtelierError, StepFailed, choice_error
from .remote import guarded
from .runtime import pgpass_field

# Every step starts from the image's facts (where PostgreSQL lives) and the
# build environment login shells share (pinned locale, ccache first on PATH).
PRELUDE = ('set -a; . /etc/atelier/pg.env; set +a; . /etc/atelier/build.sh; '
           'export PATH="$PG_BINDIR:$PATH"; ')
SOURCE = "$PG_HOME/workspace/postgres"
PACKAGED_ARGS = "$PG_HOME/workspace/.pg_config_configure"  # cached before any install
PACKAGED_PKGLIBDIR = "$PG_HOME/workspace/.pg_config_pkglibdir"
VALGRIND_LOGS = "$PG_HOME/workspace/valgrind"
UPSTREAM_GIT = "https://git.postgresql.org/git/postgresql.git"
CACHED_BITCODE = "CLANG := $(if $(CLANG),ccache $(CLANG))"


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


def _need_source(c, **kw) -> None:
    step(c, "finding the source tree", f'test -x "{SOURCE}/configure" || '
         f'{{ echo "no PostgreSQL source tree in {SOURCE}: run inv workspace.get first" >&2; exit 3; }}', **kw)


# ---- source -----------------------------------------------------------------------------

def get_source_distro(c, force: bool = False, **kw) -> None:
    """The OS archive's source of this major: upstream's tarball, unpacked."""
    _empty_source(c, force, **kw)
    step(c, "refreshing package lists",
         'if [ "$PG_FAMILY" = rocky ]; then dnf -q makecache; else apt-get update -qq; fi', sudo=True, **kw)
    step(c, "downloading the source package", 'tmp=$(mktemp -d) && cd "$tmp" && '
         'if [ "$PG_FAMILY" = rocky ]; then dnf -q download --source "postgresql$PG_MAJOR" && '
         'rpm2cpio ./*.src.rpm | cpio -idm --quiet "*.tar.bz2"; '
         'else apt-get source --download-only -qq "postgresql-$PG_MAJOR" 2>/dev/null || '
         # A mirror may list a security update's source and not carry it yet:
         # then the release's own source of this major.
         'apt-get source --download-only -qq -t "$(. /etc/os-release && echo "$VERSION_CODENAME")" '
         '"postgresql-$PG_MAJOR"; fi && '
         f'mkdir -p "{SOURCE}" && tar -C "{SOURCE}" --strip-components=1 -xf '
         '"$(ls ./*.orig.tar.* ./postgresql-*.tar.bz2 2>/dev/null | head -n1)" && rm -rf "$tmp"', **kw)


def get_source_git(c, url: str, force: bool = False, **kw) -> None:
    """A clone of `url` with the original's remotes: origin (your fork) and upstream."""
    _empty_source(c, force, **kw)
    step(c, "cloning", f'git clone -- {shlex.quote(url)} "{SOURCE}" && cd "{SOURCE}" && '
         f'{{ git remote get-url upstream >/dev/null 2>&1 || git remote add upstream {UPSTREAM_GIT}; }}', **kw)


def unpack_uploaded(c, remote_tarball: str, force: bool = False, **kw) -> None:
    """A tarball atelier uploaded from the host (a folder is sent as one)."""
    _empty_source(c, force, **kw)
    step(c, "unpacking the uploaded source", f'mkdir -p "{SOURCE}" && tar -C "{SOURCE}" -xf '
         f'{shlex.quote(remote_tarball)} --strip-components="$(tar -tf {shlex.quote(remote_tarball)} | '
         f'grep -q "^[^/]*/configure$" && echo 1 || echo 0)" && rm -f {shlex.quote(remote_tarball)}', **kw)


def _empty_source(c, force: bool, **kw) -> None:
    if force:
        step(c, "moving the old source tree aside", f'if [ -e "{SOURCE}" ]; then '
             f'kept=$(mktemp -d "{WORKSPACE}/.replaced-$(date +%Y%m%d-%H%M%S)-XXXX") && mv "{SOURCE}" "$kept"/ && '
             'echo "the old source tree is kept in $kept/postgres"; fi', **kw)
    step(c, "checking the workspace", f'[ ! -e "{SOURCE}" ] || [ -z "$(ls -A "{SOURCE}")" ] || '
         f'{{ echo "{SOURCE} is not empty: keep it, or add --force to replace it" >&2; exit 4; }}', **kw)


# ---- build ----------------------------------------------------------------------------

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
    _need_source(c, **kw)
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
    _need_source(c, **kw)
    jobs_flag = f"-j{jobs}" if jobs else '-j"$(nproc)"'
    step(c, f"make {args}", f'cd "{SOURCE}" && make -s {jobs_flag} {shlex.join(words)}', **kw)


def clean(c, **kw) -> None:
    _need_source(c, **kw)
    step(c, "make clean", f'cd "{SOURCE}" && make -s clean', **kw)


def check(c, suite: str = "", jobs: int = 0, **kw) -> None:
    """make check-world, or one suite: a folder under src/test (regress,
    isolation, recovery, ...) or contrib/NAME."""
    _need_source(c, **kw)
    jobs_flag = f"-j{jobs}" if jobs else '-j"$(nproc)"'
    if not suite:
        step(c, "make check-world", f'cd "{SOURCE}" && make -s {jobs_flag} check-world', **kw)
        return
    where = suite if "/" in suite else f"src/test/{suite}"
    step(c, "finding the suite", f'cd "{SOURCE}" && test -f {shlex.quote(where)}/Makefile || '
         f'{{ echo "no test suite {shlex.quote(suite)}; valid: $(cd src/test && ls -d */ | tr -d / | xargs)'
         ', or contrib/NAME, or a folder of the tree" >&2; exit 3; }', **kw)
    step(c, f"make -C {where} check", f'cd "{SOURCE}" && make -s {jobs_flag} -C {shlex.quote(where)} check', **kw)


def install(c, docs: bool = False, **kw) -> None:
    """pg-install: over the packaged server, so its service runs the new build."""
    _need_source(c, **kw)
    target = "install-world" if docs else "install-world-bin"
    step(c, f"make {target}", f'cd "{SOURCE}" && make -s {target}', sudo=True, **kw)
    step(c, "giving the tree back to postgres", f'chown -R postgres:postgres "{SOURCE}"', sudo=True, **kw)


# ---- service ------------------------------------------------------------------------------

def service(c, action: str, **kw):
    """start, stop, restart or status of the distribution's service."""
    if action == "status":
        return c.run(PRELUDE + 'systemctl status --no-pager "$PG_SERVICE"', warn=True, in_stream=False, **kw)
    return step(c, f"systemctl {action}", f'systemctl {action} "$PG_SERVICE"', sudo=True, **kw)


def kill(c, **kw) -> None:
    step(c, "kill the postmaster", 'kill -9 "$(head -n1 "$PGDATA/postmaster.pid")"', **kw)


# ---- valgrind, coverage, cores ---------------------------------------------------------------

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


def coverage_clear(c, **kw) -> None:
    _need_source(c, **kw)
    step(c, "lcov --zerocounters", f'cd "{SOURCE}" && lcov -q --zerocounters --directory .', **kw)


def coverage_report(c, **kw) -> str:
    """Capture and genhtml; returns the report folder in the container."""
    _need_source(c, **kw)
    step(c, "lcov --capture", f'cd "{SOURCE}" && lcov -q --capture --directory . --output-file coverage.info '
         '--ignore-errors source,gcov 2>/dev/null || lcov -q --capture --directory . --output-file coverage.info',
         **kw)
    step(c, "genhtml", f'cd "{SOURCE}" && rm -rf coverage && genhtml -q -o coverage coverage.info', **kw)
    return "workspace/postgres/coverage"


REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./~^@{}-]*$")
# Where a patch's upstream is: the first of these that exists.
UPSTREAM_MAINS = ("upstream/master", "upstream/main", "origin/master", "origin/main")


def changed_range(spec: str | None) -> tuple[str, str]:
    """What --changed names -> (base, head) for git diff, as shell words:
    a RANGE a..b, a...b (from their merge base), a COMMIT (that commit
    alone), or nothing (the commits not in upstream's main branch)."""
    if spec in (None, "", True):
        candidates = " ".join(UPSTREAM_MAINS)
        return (f'$(for b in {candidates}; do git rev-parse -q --verify "$b^{{commit}}" >/dev/null && '
                'git merge-base HEAD "$b" && break; done)'), "HEAD"
    for separator in ("...", ".."):
        if separator in spec:
            base, head = spec.split(separator, 1)
            if not (REVISION.match(base) and REVISION.match(head or "HEAD")):
                break
            head = head or "HEAD"
            if separator == "...":
                return f"$(git merge-base {shlex.quote(base)} {shlex.quote(head)})", shlex.quote(head)
            return shlex.quote(base), shlex.quote(head)
    else:
        if REVISION.match(spec):
            return shlex.quote(spec + "^"), shlex.quote(spec)
    raise AtelierError(f"--changed {spec!r} is not a commit or a range (A..B, A...B)")


def coverage_changed(c, spec: str | None, **kw) -> tuple[str, str, str]:
    """Capture coverage, then the diff of `spec` and the tracefile records of
    the files it changed: (base commit, diff, lcov records)."""
    _need_source(c, **kw)
    base, head = changed_range(spec)
    script = f"""cd "{SOURCE}"
git rev-parse -q --verify HEAD >/dev/null || {{ echo "the source tree is not a git repository: --changed compares commits" >&2; exit 3; }}
base={base}
[ -n "$base" ] || {{ echo "no upstream main branch (upstream/master, origin/master ...) to compare with; give --changed COMMIT or A..B" >&2; exit 3; }}
git rev-parse -q --verify "$base^{{commit}}" >/dev/null || {{ echo "no commit $base in this tree" >&2; exit 3; }}
lcov -q --capture --directory . --output-file coverage.info --ignore-errors source,gcov 2>/dev/null \
  || lcov -q --capture --directory . --output-file coverage.info
echo "@@base $(git rev-parse --short "$base")"
echo "@@diff"
git diff -U0 --no-color --no-ext-diff "$base" {head} --
echo "@@lcov"
files=$(git diff --name-only "$base" {head} -- | tr '\n' ' ')
awk -v files="$files" 'BEGIN {{ n = split(files, want, " ") }}
  /^SF:/ {{ keep = 0; for (i = 1; i <= n; i++) {{ p = "/" want[i];
           if (length($0) >= length(p) && substr($0, length($0) - length(p) + 1) == p) keep = 1 }} }}
  keep {{ print }}' coverage.info
"""
    out = step(c, "lcov --capture and git diff", script, hide="out", **kw).stdout
    head_part, _, rest = out.partition("@@diff\n")
    diff, _, lcov = rest.partition("@@lcov\n")
    base_lines = [x for x in head_part.splitlines() if x.startswith("@@base ")]
    return (base_lines[-1][len("@@base "):].strip() if base_lines else "?"), diff, lcov


def core(c, core_file: str, **kw):
    """pg-core: gdb's batch dump of a core file against the built postgres."""
    commands = ["thread apply all bt full", "info registers", "info locals", "info sharedlibrary",
                "info proc mappings"]
    ex = " ".join(f"-ex {shlex.quote(x)}" for x in commands)
    step(c, "finding the core file", f'test -r {shlex.quote(core_file)} || '
         f'{{ echo "no readable core file {shlex.quote(core_file)}" >&2; exit 3; }}', **kw)
    return step(c, "gdb", f'gdb -q -batch {ex} "$PG_BINDIR/postgres" {shlex.quote(core_file)}', **kw)


# ---- identities, git, workspace ------------------------------------------------------------------

USERS = ("experdba", "postgres")


def pg_user(c, user: str | None, superuser_password: str, **kw):
    """pg-user: which identity psql uses in login shells (~/.pg_user); with
    no user, show it. experdba's password goes to ~/.pgpass (mode 0600),
    through the step's stdin: never in a process's argv."""
    if user is None:
        return step(c, "show", 'cat "$PG_HOME/.pg_user" 2>/dev/null || echo "PGUSER=postgres (peer)"', **kw)
    if user not in USERS:
        raise choice_error("user", user, USERS + ("show",))
    if user == "postgres":
        return step(c, "pg.user", 'printf "PGHOST=%s\\nPGUSER=postgres\\nPGDATABASE=postgres\\n" "$PG_SOCKET_DIR" '
                    '> "$PG_HOME/.pg_user"', **kw)
    text = "PGHOST=127.0.0.1\nPGUSER=experdba\nPGDATABASE=experdb\n"
    entry = f"*:*:*:experdba:{pgpass_field(superuser_password)}\n"
    return step(c, "pg.user", f'umask 077 && printf %s {shlex.quote(text)} > "$PG_HOME/.pg_user" && '
                'touch "$PG_HOME/.pgpass" && '
                '{ grep -v "^\\*:\\*:\\*:experdba:" "$PG_HOME/.pgpass"; cat; } > "$PG_HOME/.pgpass.new" && '
                'chmod 600 "$PG_HOME/.pgpass.new" && mv "$PG_HOME/.pgpass.new" "$PG_HOME/.pgpass"',
                stdin=entry, hide=True, **kw)


def _each_repo(body: str) -> str:
    return ('for git in "$PG_HOME"/workspace/*/.git; do [ -e "$git" ] || continue; '
            'repo=$(dirname "$git"); echo "== $repo"; ( cd "$repo" && ' + body + ' ) || exit 1; done')


def git_pull(c, **kw) -> None:
    step(c, "git pull", _each_repo("git fetch --all -q && git pull --ff-only -q"), **kw)


def git_log(c, lines: int = 0, **kw) -> None:
    """The original's one-line log of every workspace repository, cut to the
    screen's height (`lines`, else the terminal's, else 20)."""
    count = int(lines) if lines else 0
    height = (f"{count}" if count else '$(( $(tput lines 2>/dev/null || echo 24) - 4 ))')
    body = (f'n={height}; [ "$n" -gt 0 ] 2>/dev/null || n=20; '
            'git --no-pager log --oneline --decorate --graph -n "$n"')
    step(c, "git log", _each_repo(body), **kw)


def git_update(c, **kw) -> None:
    """Fetch every remote, make main/master from origin when missing, update
    submodules, pull."""
    body = ('git fetch --all -q && for b in main master; do '
            'if git show-ref -q "refs/remotes/origin/$b" && ! git show-ref -q "refs/heads/$b"; then '
            'git branch -q "$b" "origin/$b"; fi; done && '
            'git submodule -q update --init --recursive && git pull --ff-only -q')
    step(c, "git update", _each_repo(body), **kw)


def git_clean(c, dry_run: bool = True, **kw) -> None:
    """git clean -xdf in every repository; by default only say what it would remove."""
    if dry_run:
        step(c, "git clean --dry-run", _each_repo("git clean -xdn"), **kw)
    else:
        step(c, "git clean", _each_repo("git clean -xdf"), **kw)


# ---- workspace --------------------------------------------------------------------------

WORKSPACE = "$PG_HOME/workspace"
# Kept out of a copy, and left in place by one: the build cache, a copy in
# progress, trees a sync replaced, and VS Code's configs (they name this
# container's own programs and paths).
NOT_COPIED = (".ccache", ".atelier-sync", ".replaced-*", ".vscode")


def pack_workspace(c, archive: str, **kw) -> None:
    """A tarball of ~/workspace; refuses an empty one (it would empty the target)."""
    skip = " ".join(f"-e {shlex.quote(p)}" for p in NOT_COPIED if "*" not in p)
    step(c, "checking the origin", f'ls -A "{WORKSPACE}" | grep -v -x {skip} -e ".replaced-.*" | grep -q . || '
         '{ echo "the origin workspace is empty: nothing to copy" >&2; exit 3; }', **kw)
    excludes = " ".join(f"--exclude=./{shlex.quote(p) if '*' not in p else p}" for p in NOT_COPIED)
    step(c, "packing ~/workspace", f'tar -C "{WORKSPACE}" {excludes} -cf {shlex.quote(archive)} .', **kw)


def replace_workspace(c, archive: str, **kw) -> str:
    """Unpack `archive` beside ~/workspace, then swap it in; what was there is
    moved to ~/workspace/.replaced-<time>/ (never deleted). A failed unpack
    leaves the workspace as it was. Returns where the old tree went."""
    staging = f"{WORKSPACE}/.atelier-sync"
    step(c, "unpacking beside the workspace",
         f'rm -rf "{staging}" && mkdir -p "{staging}" && tar -C "{staging}" -xf {shlex.quote(archive)} '
         f'|| {{ code=$?; rm -rf "{staging}"; exit $code; }}', **kw)
    result = step(c, "swapping it in",
                  f'kept=$(mktemp -d "{WORKSPACE}/.replaced-$(date +%Y%m%d-%H%M%S)-XXXX") && '
                  f'for f in "{WORKSPACE}"/* "{WORKSPACE}"/.[!.]* "{WORKSPACE}"/..?*; do '
                  '[ -e "$f" ] || [ -L "$f" ] || continue; '
                  f'case "${{f##*/}}" in {"|".join(NOT_COPIED)}) continue;; esac; '
                  'mv "$f" "$kept"/ || exit 1; done && '
                  f'for f in "{staging}"/* "{staging}"/.[!.]* "{staging}"/..?*; do '
                  '[ -e "$f" ] || [ -L "$f" ] || continue; '
                  f'mv "$f" "{WORKSPACE}"/ || exit 1; done && rmdir "{staging}" && '
                  f'rm -f {shlex.quote(archive)} && '
                  'if rmdir "$kept" 2>/dev/null; then echo -; else echo "$kept"; fi', hide=True, **kw)
    return result.stdout.strip()


def fetch_folder(c, remote: str, local_pattern: str, **kw) -> str:
    """Copy a folder of the login user's home out of the container (as one
    tarball) into a host folder; `{name}` in the pattern is the container."""
    import os
    import tarfile
    import tempfile

    local = local_pattern.replace("{name}", getattr(c, "host", "local"))
    archive = f"/tmp/atelier-fetch-{os.getpid()}.tar"
    step(c, f"packing {remote}", f'cd "$PG_HOME" && tar -cf {archive} -C {shlex.quote(remote)} .', **kw)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            c.get(archive, os.path.join(tmp, "f.tar"))
        finally:
            step(c, "cleaning up", f"rm -f {archive}", **kw)
        os.makedirs(local, exist_ok=True)
        with tarfile.open(os.path.join(tmp, "f.tar")) as tar:
            tar.extractall(local, filter="data")
    return local
