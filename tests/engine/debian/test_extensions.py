"""The matrix's "builds on" lists against the compiler: every extension the
images build from git is compiled, by the images' own script
(atelier-build-extension --check, with PGXS), against every major this
machine's Debian archives carry (15, 17, 18), in real servers of the debian
profile, from the source snapshots of ../shared/ext-src (the git hosts a
user's build clones from are out of reach here). Where it compiles must be
exactly where the matrix says it builds: a new major that breaks an
extension fails here, not in a user's image build.

pg_ensure_queryid has no snapshot (its repository carries no license file,
so no copy is kept); its list comes from compiling it where it could be
fetched (../shared/ENGINE.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atelier.core.matrix import GIT_EXTENSIONS
from helpers import ROOT
from helpers import servers_of as on

pytestmark = pytest.mark.engine

# One server per major the archives here carry, and its pg_config.
SERVERS = {15: "debian12-pg15-standalone", 17: "debian13-pg17-standalone", 18: "debian14-pg18-standalone"}


def snapshots() -> Path:
    """Where the source snapshots are: ATELIER_EXT_SNAPSHOTS, or the shared
    folder beside this checkout (or beside the workplace's main checkout)."""
    for candidate in (os.environ.get("ATELIER_EXT_SNAPSHOTS", ""), ROOT.parent / "shared" / "ext-src",
                      Path("/work/shared/ext-src")):
        if candidate and Path(candidate, "README.md").is_file():
            return Path(candidate)
    pytest.fail("no extension source snapshots: set ATELIER_EXT_SNAPSHOTS to a folder of <extension>.tar.gz "
                "(../shared/ext-src on these machines)")


@pytest.fixture(scope="module")
def environ(debian_environ):
    return debian_environ


def compiled(environ, extension: str, tarball: Path) -> dict[int, str]:
    """major -> what atelier-build-extension said, for every major here."""
    servers = on(environ)
    said = {}
    for major, server in SERVERS.items():
        remote = f"/tmp/{extension}-snapshot.tar.gz"
        servers.put(server, str(tarball), remote)
        # By its path: postgres's PATH has no sbin.
        ran = servers.run(server, f"/usr/local/sbin/atelier-build-extension --check {extension} "
                                  f"/usr/lib/postgresql/{major}/bin/pg_config {remote}; code=$?; rm -f {remote}; "
                                  "exit $code", check=False)
        said[major] = ran.stdout.strip()
        assert ran.returncode in (0, 1), (extension, major, ran.stdout, ran.stderr)  # it compiled, or it did not
    return said


@pytest.mark.parametrize("extension", [e for e in GIT_EXTENSIONS if e.name != "pg_ensure_queryid"],
                         ids=lambda e: e.name)
def test_the_matrix_says_exactly_where_each_git_extension_compiles(environ, extension):
    tarball = snapshots() / f"{extension.name}.tar.gz"
    assert tarball.is_file(), f"no snapshot of {extension.name} in {tarball.parent}"
    said = compiled(environ, extension.name, tarball)
    builds = {major for major, line in said.items() if line.endswith(f"builds on PostgreSQL {major}")}
    assert builds == set(extension.builds_on) & set(SERVERS), said
    for major in set(SERVERS) - builds:  # and the compiler's own reason is shown
        assert f"does not build on PostgreSQL {major}" in said[major] and "error" in said[major].lower(), said
