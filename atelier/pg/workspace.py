"""~/workspace as a whole: packed, swapped in beside the old one (which is
kept), and folders of it copied to the host."""

from __future__ import annotations

import os
import shlex
import tarfile
import tempfile

from atelier.pg.step import WORKSPACE, step


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
