"""Coverage of a build configured with --enable-coverage: counters reset,
lcov's report, and the tracefile and diff of the lines a patch changed
(pg/changed_coverage.py reads them)."""

from __future__ import annotations

import re
import shlex

from atelier.core.errors import AtelierError
from atelier.pg.step import SOURCE, need_source, step


def clear(c, **kw) -> None:
    need_source(c, **kw)
    step(c, "lcov --zerocounters", f'cd "{SOURCE}" && lcov -q --zerocounters --directory .', **kw)


def report(c, **kw) -> str:
    """Capture and genhtml; returns the report folder in the container."""
    need_source(c, **kw)
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


# The counters of a changed .c file (or of the .c that bison or flex make of
# a .y or .l) are in its own folder: capturing only those folders takes
# seconds where the whole tree takes a minute or more. A changed header is
# compiled into files anywhere, so then the whole tree is captured. Sets the
# shell's "$@" to lcov's --directory words.
CAPTURE_CHANGED_FOLDERS = """folders=""; whole=""
for f in $(git diff --name-only "$base" {head} --); do
  case "$f" in
    *.h) whole=1 ;;
    *.c|*.y|*.l) [ -d "$(dirname "$f")" ] && folders="$folders $(dirname "$f")" ;;
  esac
done
if [ -n "$whole" ] || [ -z "$folders" ]; then folders="."; fi
set -- $(printf '%s\\n' $folders | sort -u | sed 's/^/--directory /')"""


def changed(c, spec: str | None, **kw) -> tuple[str, str, str]:
    """Capture coverage, then the diff of `spec` and the tracefile records of
    the files it changed: (base commit, diff, lcov records)."""
    need_source(c, **kw)
    base, head = changed_range(spec)
    script = f"""cd "{SOURCE}"
git rev-parse -q --verify HEAD >/dev/null || {{ echo "the source tree is not a git repository: --changed compares commits" >&2; exit 3; }}
base={base}
[ -n "$base" ] || {{ echo "no upstream main branch (upstream/master, origin/master ...) to compare with; give --changed COMMIT or A..B" >&2; exit 3; }}
git rev-parse -q --verify "$base^{{commit}}" >/dev/null || {{ echo "no commit $base in this tree" >&2; exit 3; }}
{CAPTURE_CHANGED_FOLDERS.format(head=head)}
lcov -q --capture "$@" --output-file coverage.info --ignore-errors source,gcov 2>/dev/null \
  || lcov -q --capture "$@" --output-file coverage.info
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
