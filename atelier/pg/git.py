"""git in every repository of ~/workspace, as the original's git-* functions."""

from __future__ import annotations

from atelier.pg.step import step


def _each_repo(body: str) -> str:
    return ('for git in "$PG_HOME"/workspace/*/.git; do [ -e "$git" ] || continue; '
            'repo=$(dirname "$git"); echo "== $repo"; ( cd "$repo" && ' + body + ' ) || exit 1; done')


def pull(c, **kw) -> None:
    step(c, "git pull", _each_repo("git fetch --all -q && git pull --ff-only -q"), **kw)


def log(c, lines: int = 0, **kw) -> None:
    """The original's one-line log of every workspace repository, cut to the
    screen's height (`lines`, else the terminal's, else 20)."""
    count = int(lines) if lines else 0
    height = (f"{count}" if count else '$(( $(tput lines 2>/dev/null || echo 24) - 4 ))')
    body = (f'n={height}; [ "$n" -gt 0 ] 2>/dev/null || n=20; '
            'git --no-pager log --oneline --decorate --graph -n "$n"')
    step(c, "git log", _each_repo(body), **kw)


def update(c, **kw) -> None:
    """Fetch every remote, make main/master from origin when missing, update
    submodules, pull."""
    body = ('git fetch --all -q && for b in main master; do '
            'if git show-ref -q "refs/remotes/origin/$b" && ! git show-ref -q "refs/heads/$b"; then '
            'git branch -q "$b" "origin/$b"; fi; done && '
            'git submodule -q update --init --recursive && git pull --ff-only -q')
    step(c, "git update", _each_repo(body), **kw)


def clean(c, dry_run: bool = True, **kw) -> None:
    """git clean -xdf in every repository; by default only say what it would remove."""
    if dry_run:
        step(c, "git clean --dry-run", _each_repo("git clean -xdn"), **kw)
    else:
        step(c, "git clean", _each_repo("git clean -xdf"), **kw)
