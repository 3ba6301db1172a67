"""db.url's routes, from the model: pure."""

import dataclasses

import pytest

from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.dba.routes import pair_of, routes


@pytest.fixture
def pooled(settings):
    return Environment(dataclasses.replace(settings, pgbouncer=True), select("debian"), nofile_ceiling=20000)


def test_a_pair_is_named_by_itself_or_either_member(pooled):
    assert pair_of(pooled, "debian13-pg17").name == "debian13-pg17"
    assert pair_of(pooled, "debian13-pg17-standby").name == "debian13-pg17"
    with pytest.raises(AtelierError, match="unknown pair 'debian13-pg17-standalone'.*valid: debian12-pg15"):
        pair_of(pooled, "debian13-pg17-standalone")


def test_the_pool_route_is_the_pairs_entry_and_the_host_route_only_when_published(pooled):
    assert [(r.where, r.url) for r in routes(pooled, "debian12-pg15")] == [
        ("in the network", "postgresql://experdba@pgbouncer:6432/debian12-pg15.experdb")]
    published = dataclasses.replace(pooled, settings=dataclasses.replace(pooled.settings, pgbouncer_port=25432))
    assert [r.url for r in routes(published, "debian12-pg15", read_only=True, database="postgres")] == [
        "postgresql://experdba@pgbouncer:6432/debian12-pg15-ro.postgres",
        "postgresql://experdba@127.0.0.1:25432/debian12-pg15-ro.postgres"]


def test_direct_routes_are_haproxys_ports_and_never_carry_a_password(pooled):
    pair = pair_of(pooled, "debian12-pg15")
    assert routes(pooled, "debian12-pg15", direct=True)[0].url == f"postgresql://experdba@haproxy:{pair.rw_port}/experdb"
    assert routes(pooled, "debian12-pg15", direct=True, read_only=True)[0].url.endswith(f":{pair.ro_port}/experdb")
    for route in routes(pooled, "debian12-pg15"):
        assert pooled.settings.superuser_password not in route.url


def test_without_pgbouncer_only_the_direct_route_exists(settings):
    plain = Environment(settings, select("debian"), nofile_ceiling=20000)
    with pytest.raises(AtelierError, match="PgBouncer is not enabled.*--direct"):
        routes(plain, "debian12-pg15")
    assert routes(plain, "debian12-pg15", direct=True)
