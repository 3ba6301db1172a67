"""The engine side's decisions as pure cases: readiness from a probe, which
containers `up` must make again, and the parallel primitive's interrupts."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time

import pytest

from atelier.core.model import Environment, select
from atelier.engine.containers import Probe, never_started, readiness
from atelier.core.parallel import Pool, parallel_map, results


def probe(state="running", **facts):
    base = {"system": "running", "sshd": "active", "setup": "active", "roles": "active", "pg": "ready",
            "recovery": "f", "receiver": "-"}
    return Probe(state, {**base, **facts})


@pytest.mark.parametrize("role, p, expected", [
    ("active", probe(), (True, "ready")),
    ("active", probe("exited"), (False, "container exited")),
    ("active", probe(system="starting"), (False, "systemd starting")),
    ("active", probe(sshd="inactive"), (False, "sshd not active")),
    ("active", probe(setup="failed"), (False, "FAILED: atelier-pg-setup (journalctl -u atelier-pg-setup)")),
    ("active", probe(pg="down"), (False, "PostgreSQL not answering")),
    ("active", probe(roles="activating"), (False, "making roles")),
    ("standby", probe(pg="down", setup="activating"), (False, "seeding from active")),
    ("standby", probe(recovery="t", receiver="startup"), (False, "standby not streaming (startup)")),
    ("standby", probe(recovery="t", receiver="streaming"), (True, "streaming")),
    # A promoted standby is a primary now: ready, not "not streaming" forever.
    ("standby", probe(recovery="f"), (True, "promoted: a primary now")),
])
def test_readiness(make_env, role, p, expected):
    container = make_env().container(f"debian12-pg15-{role}")
    assert readiness(container, p) == expected


def test_an_etcd_member_is_ready_only_with_its_clusters_quorum(settings):
    env = Environment(dataclasses.replace(settings, ha="patroni"), select("default"), nofile_ceiling=20000)
    member = env.container("etcd2")
    assert readiness(member, Probe("running", {"etcd": "healthy"})) == (True, "running")
    ready, why = readiness(member, Probe("running", {"etcd": "no-quorum"}))
    assert not ready and why.startswith("etcd has no quorum")
    assert readiness(env.container("haproxy"), Probe("running", {})) == (True, "running")


class FakeContainer:
    def __init__(self, status, started):
        self.status, self.attrs = status, {"State": {"StartedAt": started}}


def test_a_container_that_never_started_is_made_again():
    assert never_started(FakeContainer("created", "0001-01-01T00:00:00Z"))
    assert not never_started(FakeContainer("exited", "2026-11-24T00:00:00Z"))
    assert not never_started(FakeContainer("created", "2026-11-24T00:00:00Z"))  # restarted later: kept


def test_parallel_map_keeps_order_and_raises_the_first_error():
    assert parallel_map(lambda n: n * n, range(20), workers=4) == [n * n for n in range(20)]
    with pytest.raises(ValueError):
        parallel_map(lambda n: 1 / 0 if n == 3 else int("x"), range(5))


def test_an_interrupted_wait_returns_at_once_and_leaves_nothing_to_join():
    # Python's own handler, whatever the run inherited: with SIGINT ignored
    # (a background job of a script) interrupt_main would do nothing.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        pool = Pool(2)
        started = time.monotonic()
        futures = [pool.submit(time.sleep, 30) for _ in range(3)]
        timer = threading.Timer(0.3, _interrupt)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            results(futures)
        assert time.monotonic() - started < 2
        with pool:
            pass  # leaving cancels what has not started
        assert futures[2].cancelled()
        assert all(t.daemon for t in pool._threads)
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt():
    import _thread

    _thread.interrupt_main()


from atelier.engine.up import Found, plan_up  # noqa: E402


def test_up_with_nothing_changed_changes_nothing():
    plan = plan_up({"a": "h1", "b": "h2"}, {"a": Found("h1", "running"), "b": Found("h2", "running")})
    assert (plan.remove, plan.recreate, plan.create, plan.start) == ([], [], [], [])


def test_up_removes_recreates_creates_and_starts_in_the_models_order():
    wanted = {"haproxy": "h0", "init": "h1", "active": "h2", "standby": "h3", "standalone": "h4"}
    found = {"old": Found("x", "running"),                     # another profile's: removed
             "init": Found("h1-old", "running"),               # its image or settings changed
             "active": Found("h2", "exited"),                  # stopped: started as it is
             "standby": Found("h3", "created", never_started=True),  # cut-off set-up: made again
             "haproxy": Found("h0", "running")}
    plan = plan_up(wanted, found)
    assert plan.remove == ["old"]
    assert plan.recreate == ["init", "standby"]
    assert plan.create == ["init", "standby", "standalone"]
    assert plan.start == ["init", "active", "standby", "standalone"]
