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
