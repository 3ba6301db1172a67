"""End to end, on a real Docker engine: build debian12 (PostgreSQL 15) and
debian13 (PostgreSQL 17), bring each up, query, replicate, survive down/up.

Runs under its own project name, subnet and ports, so a user's own atelier
environment is never touched, and removes what it made (images are kept:
they hold nothing of the test's and make the next run fast)."""

from __future__ import annotations

import json
import os
import posixpath
import re
import socket
import stat
import subprocess
import tarfile

import pytest

from atelier.engine.up import down, up
from atelier.engine.build import build_image
from atelier.core.model import Environment, select
from atelier.render.archive import tar_bytes
from atelier.core.settings import load_settings
from helpers import ENGINE, inv, project_settings, wait_for

pytestmark = pytest.mark.engine

PROJECT = "ateliertest"
TEST_ENV = project_settings(PROJECT, "172.29", 18000)


@pytest.fixture(scope="module")
def environ(tmp_path_factory):
    values = {**TEST_ENV, "ATELIER_STATE_DIR": str(tmp_path_factory.mktemp("state"))}
    yield values
    settings = load_settings(environ=values)
    down(ENGINE, Environment(settings, select()), remove_volumes=True, say=lambda _: None)


@pytest.fixture(scope="module")
def settings(environ):
    return load_settings(environ=environ)


@pytest.fixture(scope="module")
def client():
    return ENGINE.client


def psql(client, settings, name: str, sql: str, database: str = "experdb") -> str:
    """A query over TCP with the experdba password: through docker exec for now."""
    container = client.containers.get(f"{PROJECT}-{name}")
    result = container.exec_run(
        ["psql", "-XAtq", "-h", "127.0.0.1", "-U", "experdba", "-d", database, "-c", sql],
        environment={"PGPASSWORD": settings.superuser_password})
    assert result.exit_code == 0, result.output.decode()
    return result.output.decode().strip()


def try_psql(client, settings, name: str, sql: str):
    """The answer, or None while the query cannot succeed yet (e.g. replay pending)."""
    try:
        return psql(client, settings, name, sql)
    except AssertionError:
        return None


def project_volumes(client, prefix=""):
    return sorted(v.name for v in client.volumes.list(filters={"label": f"atelier.project={PROJECT}"})
                  if v.name.startswith(f"{PROJECT}-{prefix}"))


# ---- debian12 / PostgreSQL 15 -------------------------------------------------------
# Each test brings up what it needs (up is idempotent: a second one changes
# nothing and takes a second), so that any test runs alone or in any order.

def up_debian12(environ, settings) -> dict:
    inv(environ, "build", "--os", "debian12", "--pg", "15")
    return up(ENGINE, Environment(settings, select(os="debian12", pg="15")), say=print)


def test_build_debian12(environ):
    run = inv(environ, "build", "--os", "debian12", "--pg", "15")
    for image in ("atelier-debian12-init", "atelier-debian12-pg15", "atelier-haproxy"):
        assert re.search(rf"^{image}\s+[\d.]+\s+(built|cached)\s+\d+$", run.stdout, re.M), run.stdout


def test_up_brings_every_server_up_and_the_standby_streaming(environ, settings, client):
    inv(environ, "down")
    summary = up_debian12(environ, settings)
    assert summary["created"] == 7
    for name in ("debian12-pg15-active", "debian12-pg15-standby", "debian12-pg15-standalone"):
        assert psql(client, settings, name, "select current_user, version()").startswith("experdba|PostgreSQL 15")
    assert psql(client, settings, "debian12-pg15-standby", "select pg_is_in_recovery()") == "t"
    assert psql(client, settings, "debian12-pg15-active", "select pg_is_in_recovery()") == "f"


def test_a_row_written_on_the_active_appears_on_its_standby(environ, settings, client):
    up_debian12(environ, settings)
    psql(client, settings, "debian12-pg15-active",
         "create table if not exists streamed(note text); insert into streamed values ('written on active')")
    assert wait_for(lambda: try_psql(client, settings, "debian12-pg15-standby",
                                     "select distinct note from streamed") == "written on active")
    slots = psql(client, settings, "debian12-pg15-active",
                 "select slot_name, active from pg_replication_slots")
    assert slots == "debian12_pg15_standby|t"


def test_passwords_are_required_and_pg_hba_is_limited(environ, settings, client):
    up_debian12(environ, settings)
    container = client.containers.get(f"{PROJECT}-debian12-pg15-active")
    wrong = container.exec_run(["psql", "-h", "127.0.0.1", "-U", "experdba", "-d", "experdb", "-c", "select 1"],
                               environment={"PGPASSWORD": "wrong"})
    assert wrong.exit_code != 0 and b"password authentication failed" in wrong.output
    hba = container.exec_run(["cat", "/etc/postgresql/15/main/pg_hba.conf"]).output.decode()
    assert "172.29.0.0/16" in hba and "0.0.0.0/0" not in hba and "trust" not in hba.replace("# ", "")


def test_status_reports_every_container(environ, settings):
    up_debian12(environ, settings)
    run = inv(environ, "status")
    rows = {line.split()[0]: line for line in run.stdout.splitlines()[1:]}
    assert set(rows) == {"haproxy", "apache2", "squid", "debian12-init", "debian12-pg15-active",
                         "debian12-pg15-standby", "debian12-pg15-standalone"}
    assert re.search(r"debian12-pg15-standby\s+standby\s+debian12\s+15\s+172\.29\.12\.45\s+running\s+standby\s+"
                     r"debian12-pg15-active\s+ready", rows["debian12-pg15-standby"]), rows["debian12-pg15-standby"]
    assert re.search(r"running\s+primary\s+-\s+ready", rows["debian12-pg15-active"])


def test_the_ssh_port_answers_through_haproxy_on_loopback_only(environ, settings):
    up_debian12(environ, settings)
    with socket.create_connection(("127.0.0.1", settings.ssh_port), timeout=5) as s:
        assert s.recv(64).startswith(b"SSH-2.0-OpenSSH")


def test_second_up_changes_nothing(environ, settings):
    up_debian12(environ, settings)
    summary = up(ENGINE, Environment(settings, select(os="debian12", pg="15")), say=print)
    assert (summary["created"], summary["started"], summary["removed"]) == (0, 0, 0)


def test_workspace_and_data_survive_down_and_up(environ, settings, client):
    up_debian12(environ, settings)
    psql(client, settings, "debian12-pg15-active", "drop table if exists survives; "
         "create table survives(note text); insert into survives values ('written on active')")
    active = client.containers.get(f"{PROJECT}-debian12-pg15-active")
    wrote = active.exec_run(["sh", "-c", "echo my patch > ~/workspace/patch.diff"], user="postgres")
    assert wrote.exit_code == 0
    inv(environ, "down")
    assert not ENGINE.project_containers(PROJECT)
    assert f"{PROJECT}-debian12-pg15-active-workspace" in project_volumes(client)
    up(ENGINE, Environment(settings, select(os="debian12", pg="15")), say=print)
    active = client.containers.get(f"{PROJECT}-debian12-pg15-active")
    assert active.exec_run(["cat", "/var/lib/postgresql/workspace/patch.diff"]).output == b"my patch\n"
    assert psql(client, settings, "debian12-pg15-active", "select note from survives") == "written on active"
    assert wait_for(lambda: try_psql(client, settings, "debian12-pg15-standby",
                                     "select note from survives") == "written on active")


# ---- switching to debian13 / PostgreSQL 17 ------------------------------------------

def test_switch_to_debian13_keeps_debian12_volumes(environ, settings, client):
    up_debian12(environ, settings)
    inv(environ, "build", "--os", "debian13", "--pg", "17")
    up(ENGINE, Environment(settings, select(os="debian13", pg="17")), say=print)
    names = set(ENGINE.project_containers(PROJECT))
    assert "debian12-pg15-active" not in names and "debian13-pg17-standby" in names
    assert f"{PROJECT}-debian12-pg15-active-workspace" in project_volumes(client)
    for name in ("debian13-pg17-active", "debian13-pg17-standby", "debian13-pg17-standalone"):
        assert psql(client, settings, name, "show server_version_num")[:2] == "17"
    psql(client, settings, "debian13-pg17-active", "drop table if exists t17; create table t17 as select 17 as n")
    assert wait_for(lambda: try_psql(client, settings, "debian13-pg17-standby", "select n from t17") == "17")


def test_no_secret_or_private_key_in_any_image_layer(environ, settings, client):
    """Every layer of every image the tests build: no password, no private key
    of atelier's, no host key, TLS key or user key file."""
    inv({**environ, "ATELIER_MONITORING": "1"}, "build", "--profile", "debian")
    secrets = [settings.superuser_password.encode(), settings.replication_password.encode(),
               settings.pgbouncer_auth_password.encode(), settings.patroni_api_password.encode(),
               settings.monitor_password.encode(),
               settings.keys.bastion_private.encode()[40:120],
               settings.keys.client_key_path.read_bytes()[40:120]]
    images = ["atelier-haproxy", "atelier-apache2", "atelier-squid", "atelier-prometheus", "atelier-debian12-init",
              "atelier-debian12-pg15", "atelier-debian13-init", "atelier-debian13-pg17"]
    layers_of = layer_folders(client, images)
    if layers_of is None:  # not overlay2 on this machine: the engine streams the layers
        found, layers_of = scan_saved_layers(images, secrets)
    else:
        found = {folder: scan_layer_folder(folder, secrets)
                 for folder in {folder for layers in layers_of.values() for folder in layers}}
    for image in images:
        assert len(layers_of[image]) > 1, image
        for layer in layers_of[image]:
            assert layer in found, (image, layer)  # every layer was read
            assert not found[layer], f"{image}: {found[layer]}"


KEY_PATHS = re.compile(r"(^|/)(etc/ssh/ssh_host_[a-z0-9]+_key|etc/ssl/private/.+|\.ssh/id_[a-z0-9]+)$")


def layer_folders(client, images) -> dict[str, list[str]] | None:
    """Each image's layers as folders of the local engine's overlay2 store, or
    None when the engine keeps them otherwise. Reading them in place is the
    same bytes as `docker save` streams, at a fraction of its time (140 s for
    these 6 GB), and a layer the images share is one folder, read once."""
    layers_of = {}
    for image in images:
        driver = client.images.get(image).attrs["GraphDriver"]
        folders = [driver["Data"].get("UpperDir", "")] + [
            folder for folder in driver["Data"].get("LowerDir", "").split(":") if folder]
        if driver["Name"] != "overlay2" or not all(os.path.isdir(folder) for folder in folders):
            return None
        layers_of[image] = folders
    return layers_of


def scan_layer_folder(folder: str, secrets: list[bytes]) -> list[str]:
    """What one layer holds that it must not: key files by path, secrets in
    regular files (symlinks are not followed: they point into the host here)."""
    problems = []
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            inside = os.path.relpath(path, folder)
            if KEY_PATHS.search(inside):
                problems.append(inside)
            if stat.S_ISREG(os.lstat(path).st_mode):
                with open(path, "rb") as file:
                    data = file.read()
                problems += [f"{inside} holds a secret" for secret in secrets if secret in data]
    return problems


def scan_saved_layers(images, secrets) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The same scan over one `docker save` of every image: layers are
    `<id>/layer.tar` (a symlink to an equal layer written before it) or, from
    Docker 25 on, `blobs/sha256/<digest>`; the manifest says which image has which."""
    saved = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
    found: dict[str, list[str]] = {}  # layer -> what it holds that it must not
    same_as: dict[str, str] = {}  # a symlinked layer -> the layer it repeats
    manifest = []
    with tarfile.open(fileobj=saved.stdout, mode="r|") as outer:
        for member in outer:
            if member.name == "manifest.json":
                manifest = json.loads(outer.extractfile(member).read())
            if not (member.name.endswith("layer.tar") or member.name.startswith("blobs/")):
                continue
            if member.issym():
                same_as[member.name] = posixpath.normpath(posixpath.join(posixpath.dirname(member.name),
                                                                         member.linkname))
                continue
            if not member.isfile():
                continue
            try:
                layer = tarfile.open(fileobj=outer.extractfile(member), mode="r|*")
            except tarfile.ReadError:  # an image's config among the blobs, not a layer
                continue
            problems = found.setdefault(member.name, [])
            with layer:
                for entry in layer:
                    if KEY_PATHS.search(entry.name):
                        problems.append(entry.name)
                    if entry.isfile():
                        data = layer.extractfile(entry).read()
                        problems += [f"{entry.name} holds a secret" for secret in secrets if secret in data]
    assert saved.wait() == 0
    layers_of = {tag.split(":")[0]: [same_as.get(layer, layer) for layer in item["Layers"]]
                 for item in manifest for tag in item["RepoTags"]}
    return found, layers_of

# ---- bad input and faults ------------------------------------------------------------

def test_taken_ssh_port_is_one_line_and_changes_nothing(environ):
    other = {**environ, "ATELIER_PROJECT": "ateliertest2", "ATELIER_SUBNET": "172.28",
             "ATELIER_SSH_PORT": "18122", "ATELIER_HTTP_PORT": "18180", "ATELIER_SQUID_PORT": "13228"}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 18122))
        holder.listen()
        run = inv(other, "up", "--os", "debian12", "--pg", "15", check=False)
    assert run.returncode == 1
    assert run.stderr.strip() == ("atelier: port 18122 on 127.0.0.1 is already taken (needed by haproxy); "
                                  "free it or choose another in .env (ATELIER_SSH_PORT, ATELIER_HTTP_PORT, "
                                  "ATELIER_SQUID_PORT)")
    assert not ENGINE.project_containers("ateliertest2")


def test_no_engine_is_one_line(environ):
    run = inv({**environ, "DOCKER_HOST": "unix:///tmp/no-engine-here.sock"}, "status", check=False)
    assert run.returncode == 1
    assert run.stderr.startswith("atelier: no Docker engine answers at unix:///tmp/no-engine-here.sock")
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (("up", "--pg", "13"), "unknown PostgreSQL major '13'"),
    (("up", "--os", "centos7"), "unknown OS 'centos7'"),
    (("up", "--profile", "fulll"), "did you mean full"),
])
def test_bad_selection_on_the_command_line(environ, args, message):
    run = inv(environ, *args, check=False)
    assert run.returncode == 1 and message in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_bad_setting_on_the_command_line(environ):
    run = inv({**environ, "ATELIER_SUBNET": "300.1"}, "up", check=False)
    assert run.returncode == 1
    assert run.stderr.strip().startswith("atelier: ATELIER_SUBNET=300.1 is not two octets")


def test_down_volumes_asks_without_yes(environ):
    run = inv(environ, "down", "--volumes", check=False)
    assert run.returncode == 1 and "add --yes to confirm" in run.stderr


def test_build_retries_transient_failures_only(client):
    sleeps = []
    flaky = tar_bytes({"Dockerfile": (b"FROM atelier-base:debian12\n"
                                      b"RUN echo \"Temporary failure resolving 'deb.debian.org'\" && false\n", 0o644)})
    result = build_image(client, "ateliertest-flaky", flaky, tries=3, say=lambda _: None, sleep=sleeps.append)
    assert (result.outcome, result.tries, sleeps) == ("failed", 3, [2.0, 4.0])
    broken = tar_bytes({"Dockerfile": (b"FROM atelier-base:debian12\nRUN mkae world\n", 0o644)})
    result = build_image(client, "ateliertest-broken", broken, tries=3, say=lambda _: None, sleep=sleeps.append)
    assert (result.outcome, result.tries) == ("failed", 1)
    assert "returned a non-zero code: 127" in result.error
    assert sleeps == [2.0, 4.0]


def test_a_rule_promtool_rejects_fails_the_prometheus_build_and_names_the_rule(settings, client):
    from atelier.core.model import service_image
    from atelier.render.templates import build_context

    context = build_context(service_image("prometheus"), settings)
    rules = "prometheus/etc/prometheus/atelier-rules/postgresql-alerts.yml"
    content, mode = context[rules]
    context[rules] = (content.replace(b"> 100000000", b"> > 100000000"), mode)
    result = build_image(client, "ateliertest-broken-rules", tar_bytes(context), tries=1, say=lambda _: None)
    assert result.outcome == "failed"
    assert '"ReplicationLag"' in result.error and "parse error" in result.error, result.error
    assert not client.images.list(name="ateliertest-broken-rules")
