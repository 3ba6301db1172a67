"""A PostgreSQL source tree in ~/workspace/postgres: the OS archive's source
of the server's major, a git clone with the original's remotes, or a
tarball uploaded from the host. A tree already there is kept unless asked."""

from __future__ import annotations

import shlex

from atelier.pg.step import SOURCE, WORKSPACE, step

UPSTREAM_GIT = "https://git.postgresql.org/git/postgresql.git"


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
