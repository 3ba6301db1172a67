"""build_all's order, skips and retries against a fake Docker client: each
image after its parent, children of a failed parent not tried, transient
failures tried again and others not, unchanged images not sent at all."""

from __future__ import annotations

import threading

import docker
import pytest

from atelier.engine import build
from atelier.engine.build import build_all
from atelier.engine.client import Engine
from atelier.engine.host import EngineHost


class FakeAPI:
    def __init__(self, images, outcomes):
        self.images = images  # name -> labels
        self.outcomes = outcomes  # tag -> list of "ok" | error text, one per try
        self.builds: list[str] = []
        self.lock = threading.Lock()

    def inspect_image(self, name):
        if name not in self.images:
            raise docker.errors.ImageNotFound(name)
        return {"Id": f"sha256:{name}", "Config": {"Labels": self.images[name]}}

    def build(self, tag, labels=None, **_):
        with self.lock:
            assert all(parent_built in self.images for parent_built in self.parents.get(tag, ())), tag
            self.builds.append(tag)
            outcome = (self.outcomes.get(tag) or ["ok"]).pop(0)
        yield {"stream": "Step 1/2 : RUN true\n"}
        yield {"stream": " ---> Running in 0123\n"}
        if outcome != "ok":
            yield {"error": outcome}
            return
        with self.lock:
            self.images[tag] = labels or {}


class FakeClient:
    def __init__(self, api):
        self.api = api
        self.images = self
        self.containers = self

    def get(self, name):  # images.get for bases, containers.get for squid
        if name.startswith("atelier-base:"):
            return object()
        raise docker.errors.NotFound(name)


FAKE_HOST = EngineHost("unix:///fake/docker.sock", "test")


@pytest.fixture
def debian(make_env):
    env = make_env("debian")
    return env


def fake(env, outcomes=None, images=None):
    api = FakeAPI(dict(images or {}), outcomes or {})
    api.parents = {i.name: (i.parent,) for i in env.images}
    for base in {i.parent for i in env.images if i.parent.startswith("atelier-base:")}:
        api.images[base] = {}
    return api, FakeClient(api)


def test_every_image_after_its_parent_then_nothing_when_unchanged(debian):
    api, client = fake(debian)
    results = build_all(Engine(FAKE_HOST, client), debian, debian.images, say=lambda _: None)
    assert {r.outcome for r in results} == {"built"}
    assert sorted(api.builds) == sorted(i.name for i in debian.images)
    again = build_all(Engine(FAKE_HOST, client), debian, debian.images, say=lambda _: None)
    assert {r.outcome for r in again} == {"cached"} and len(api.builds) == len(debian.images)


def test_a_failed_parent_fails_its_children_without_trying_them(debian):
    api, client = fake(debian, {"atelier-debian13-init": ["E: Unable to locate package nosuch"]})
    results = {r.image: r for r in build_all(Engine(FAKE_HOST, client), debian, debian.images, say=lambda _: None)}
    assert results["atelier-debian13-init"].outcome == "failed"
    assert results["atelier-debian13-init"].tries == 1  # not a network failure: no retry
    assert results["atelier-debian13-pg17"].error == "parent atelier-debian13-init failed"
    assert "atelier-debian13-pg17" not in api.builds
    assert results["atelier-debian12-pg15"].outcome == "built"


def test_transient_failures_are_tried_again(debian, monkeypatch):
    monkeypatch.setattr(build, "retry_delays", lambda tries: [0.0] * (tries - 1))
    api, client = fake(debian, {"atelier-haproxy": ["Temporary failure resolving 'deb.debian.org'",
                                                    "Could not connect to deb.debian.org:80", "ok"]})
    results = {r.image: r for r in build_all(Engine(FAKE_HOST, client), debian, debian.images, say=lambda _: None)}
    assert (results["atelier-haproxy"].outcome, results["atelier-haproxy"].tries) == ("built", 3)
