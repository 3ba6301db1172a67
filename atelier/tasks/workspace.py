"""workspace.*: PostgreSQL source trees in ~/workspace of the container(s)."""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile

from atelier.core.errors import AtelierError, choice_error
from atelier.core.matrix import PG_ROLES
from atelier.pg import source as pg_source
from atelier.pg import workspace as pg_workspace
from atelier.pg.step import step
from atelier.ssh.fanout import fan_out

from .common import TARGET_HELP, USER_HELP, atelier_task, finish, on_targets, session, targets

TARGET_AND_USER = {"target": TARGET_HELP, "user": USER_HELP}


@atelier_task(help={**TARGET_AND_USER, "source": "a git URL, a folder or tarball on this host, or `distro` "
                                   "(the OS archive's source of the container's major)",
                    "force": "replace a non-empty ~/workspace/postgres"})
def get(c, source, target=None, force=False, user=None):
    """Put a PostgreSQL source tree into ~/workspace/postgres."""
    if source == "distro":
        work = lambda ctx, **streams: pg_source.get_source_distro(ctx, force, **streams)  # noqa: E731
    elif "://" in source or source.startswith("git@"):
        work = lambda ctx, **streams: pg_source.get_source_git(ctx, source, force, **streams)  # noqa: E731
    elif os.path.exists(source):
        tarball = _as_tarball(source)
        remote = f"/tmp/atelier-source-{os.getpid()}.tar"

        def work(ctx, **kw):
            ctx.put(tarball, remote)
            pg_source.unpack_uploaded(ctx, remote, force, **kw)
    else:
        raise AtelierError(f"source {source!r} is not a git URL, an existing folder or tarball, or distro")
    on_targets(c, target, user, work)


def _as_tarball(path: str) -> str:
    """A folder is sent as one tarball; a tarball as it is."""
    if os.path.isfile(path):
        return path
    handle, tarball = tempfile.mkstemp(suffix=".tar")
    os.close(handle)
    with tarfile.open(tarball, "w") as tar:
        tar.add(path, arcname="postgres")
    return tarball


@atelier_task(name="sync", help={**TARGET_AND_USER, "from": "role to copy from (default: standalone for active "
                                                    "and standby, active for standalone)"})
def sync(c, target=None, from_="", user=None):
    """Replace ~/workspace with another role's of the same OS and major; the
    old tree is kept in ~/workspace/.replaced-<time>, the ccache stays."""
    if from_ and from_ not in PG_ROLES:
        raise choice_error("role", from_, PG_ROLES)

    with session(c) as current:
        matrix = current.matrix

        def origin_of(name: str) -> str:
            role = matrix.container(name).role
            origin = from_ or ("active" if role == "standalone" else "standalone")
            if origin == role:
                raise AtelierError(f"{name} cannot sync from itself")
            return matrix.sibling(name, origin).name

        names = targets(current, target)
        origins = {name: origin_of(name) for name in names}
        both = sorted({o for o in origins.values() if o in origins})
        if both:
            raise AtelierError(f"{', '.join(both)} would be copied from and replaced at once; "
                               "choose targets that leave out the origin")

        def work(ctx, **kw):
            # Through the host: the containers hold no private key to reach each other.
            archive = f"/tmp/atelier-sync-{os.getpid()}.tar"
            origin = current.context(origins[ctx.host], "postgres")
            with tempfile.TemporaryDirectory() as tmp:
                pg_workspace.pack_workspace(origin, archive, **kw)
                try:
                    origin.get(archive, os.path.join(tmp, "w.tar"))
                finally:
                    step(origin, "cleaning up", f"rm -f {archive}", **kw)
                ctx.put(os.path.join(tmp, "w.tar"), archive)
            kept = pg_workspace.replace_workspace(ctx, archive, **kw)
            out = kw.get("out_stream") or sys.stdout
            out.write(f"{ctx.host}: workspace now a copy of {origins[ctx.host]}'s"
                      + (f"; the replaced tree is kept in {kept}\n" if kept != "-" else "\n"))

        finish(fan_out(current, names, work, user))
