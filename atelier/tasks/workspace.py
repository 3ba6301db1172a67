"""workspace.*: PostgreSQL source trees in ~/workspace of the container(s)."""

from __future__ import annotations

import os

from .common import TARGET_HELP, USER_HELP, atelier_task, on_targets

H = {"target": TARGET_HELP, "user": USER_HELP}


@atelier_task(help={**H, "source": "a git URL, a folder or tarball on this host, or `distro` "
                                   "(the OS archive's source of the container's major)",
                    "force": "replace a non-empty ~/workspace/postgres"})
def get(c, source, target=None, force=False, user=None):
    """Put a PostgreSQL source tree into ~/workspace/postgres."""
    from .. import helpers
    from ..errors import AtelierError

    if source == "distro":
        work = lambda ctx, **kw: helpers.get_source_distro(ctx, force, **kw)  # noqa: E731
    elif "://" in source or source.startswith("git@"):
        work = lambda ctx, **kw: helpers.get_source_git(ctx, source, force, **kw)  # noqa: E731
    elif os.path.exists(source):
        tarball = _as_tarball(source)
        remote = f"/tmp/atelier-source-{os.getpid()}.tar"

        def work(ctx, **kw):
            ctx.put(tarball, remote)
            helpers.unpack_uploaded(ctx, remote, force, **kw)
    else:
        raise AtelierError(f"source {source!r} is not a git URL, an existing folder or tarball, or distro")
    on_targets(target, user, work)


def _as_tarball(path: str) -> str:
    """A folder is sent as one tarball; a tarball as it is."""
    import tarfile
    import tempfile

    if os.path.isfile(path):
        return path
    handle, tarball = tempfile.mkstemp(suffix=".tar")
    os.close(handle)
    with tarfile.open(tarball, "w") as tar:
        tar.add(path, arcname="postgres")
    return tarball


@atelier_task(name="sync", help={**H, "from": "role to copy from (default: standalone for active "
                                                    "and standby, active for standalone)"})
def sync(c, target=None, from_="", user=None):
    """Replace ~/workspace with another role's of the same OS and major (its ccache kept)."""
    from ..errors import AtelierError, choice_error
    from ..helpers import step
    from ..model import PG_ROLES

    if from_ and from_ not in PG_ROLES:
        raise choice_error("role", from_, PG_ROLES)

    def work(ctx, **kw):
        name = getattr(ctx, "host", "")
        group, _, role = name.rpartition("-")
        if role not in PG_ROLES:
            raise AtelierError(f"{name or 'local'} is not a PostgreSQL server container")
        origin = from_ or ("active" if role == "standalone" else "standalone")
        if origin == role:
            raise AtelierError(f"{name} cannot sync from itself")
        # Through the host: the containers hold no private key to reach each other.
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            archive = f"/tmp/atelier-sync-{os.getpid()}.tar"
            source = _open_beside(ctx, f"{group}-{origin}")
            step(source, f"packing {group}-{origin}:~/workspace",
                 f'tar -C "$PG_HOME/workspace" --exclude=./.ccache -cf {archive} .', **kw)
            source.get(archive, os.path.join(tmp, "w.tar"))
            step(source, "cleaning up", f"rm -f {archive}", **kw)
            ctx.put(os.path.join(tmp, "w.tar"), archive)
            step(ctx, "unpacking", f'mkdir -p "$PG_HOME/workspace" && '
                 f'find "$PG_HOME/workspace" -mindepth 1 -maxdepth 1 ! -name .ccache -exec rm -rf {{}} + && '
                 f'tar -C "$PG_HOME/workspace" -xf {archive} && rm -f {archive}', **kw)

    on_targets(target, user, work)


def _open_beside(ctx, name: str):
    """A connection to another container through the same gateway as ctx."""
    from ..remote import explain, target_connection
    from ..settings import load_settings

    settings = load_settings()
    connection = target_connection(settings, name, "postgres", ctx.gateway)
    try:
        connection.open()
    except Exception as exc:
        raise explain(exc, name, settings) from None
    return connection
