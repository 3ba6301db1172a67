import pytest

from atelier.core.model import Environment, select
from atelier.core.settings import load_settings


@pytest.fixture
def settings(tmp_path):
    """Settings as a fresh checkout has them: no .env, state in a temp folder."""
    return load_settings(root=tmp_path, environ={"ATELIER_STATE_DIR": str(tmp_path / "state")})


@pytest.fixture
def make_env(settings):
    def make(profile=None, os=None, pg=None, nofile=20000):
        return Environment(settings, select(profile=profile, os=os, pg=pg), nofile_ceiling=nofile)

    return make


@pytest.fixture(scope="session")
def debian_environ(tmp_path_factory):
    """The debian profile (PostgreSQL 15 on Debian 12, 17 on Debian 13) with
    the pgbouncer service, under a project, subnet and ports of its own:
    one environment for test_db_service.py and test_replication.py, which
    runs later and leaves its pairs in whatever state its drills end in."""
    from atelier.engine.up import down
    from helpers import ENGINE, close_servers, inv, project_settings

    state = tmp_path_factory.mktemp("debian-state")
    values = {**project_settings("ateliertest-repl", "172.20", 25000), "ATELIER_STATE_DIR": str(state),
              "ATELIER_BACKUP_DIR": str(state / "backups"), "ATELIER_BENCH_DIR": str(state / "bench-results"),
              "ATELIER_PGBOUNCER": "1", "ATELIER_PGBOUNCER_PORT": "25432"}
    inv(values, "build", "--profile", "debian")
    inv(values, "up", "--profile", "debian")
    yield values
    close_servers(values)
    down(ENGINE, Environment(load_settings(environ=values), select("debian")), remove_volumes=True,
                say=lambda _: None)
