"""The upgrade profile: PostgreSQL 18 from forky's own archive and 19 from
Debian's experimental (ATELIER_DEBIAN_EXPERIMENTAL=1), side by side on
debian14, under a project, subnet and ports of its own. One environment for
the modules of this folder (package scope)."""

import pytest

from helpers import brought_up, project_settings


@pytest.fixture(scope="package")
def upgrade_environ(tmp_path_factory):
    state = tmp_path_factory.mktemp("upgrade-state")
    values = {**project_settings("ateliertest-upgrade", "172.18", 27000), "ATELIER_STATE_DIR": str(state),
              "ATELIER_BACKUP_DIR": str(state / "backups"), "ATELIER_BENCH_DIR": str(state / "bench-results"),
              "ATELIER_DEBIAN_EXPERIMENTAL": "1"}
    yield from brought_up(values, "upgrade")
