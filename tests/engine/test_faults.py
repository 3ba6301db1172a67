"""Drills for the faults that used to destroy work or leave the environment
half-made: each test reproduces one case on the real engine, sshd and
PostgreSQL (or a real process and a real signal), and fails without its fix.

One environment for the module: the default profile (debian12, PostgreSQL 15)
under a project, subnet and ports of its own. Run alone with
`python3 -m pytest tests/engine/test_faults.py`."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from atelier.engine import up as engine_up
from atelier.engine.up import down
from atelier.render.spec import container_spec
from atelier.engine.build import build_all
from atelier.core.model import Environment, select, service_image
from atelier.ssh.session import Session
from atelier.core.state import known_hosts_path, recorded_keys
from atelier.core.settings import load_settings
from atelier.core.state import project_lock
from helpers import ENGINE, ROOT, close_servers, interrupt_after, inv, project_settings, wait_for
from helpers import servers_of as on

pytestmark = pytest.mark.engine

PROJECT = "ateliertest-faults"
TEST_ENV = project_settings(PROJECT, "172.24", 21000)
ACTIVE, STANDBY, STANDALONE = (f"debian12-pg15-{r}" for r in ("active", "standby", "standalone"))


@pytest.fixture(scope="module")
def environ(tmp_path_factory):
    values = {**TEST_ENV, "ATELIER_STATE_DIR": str(tmp_path_factory.mktemp("faults-state"))}
    inv(values, "build")
    inv(values, "up")
    yield values
    close_servers(values)
    down(ENGINE, Environment(load_settings(environ=values), select()), remove_volumes=True, say=lambda _: None)


@pytest.fixture(scope="module")
def settings(environ):
    return load_settings(environ=environ)


@pytest.fixture(scope="module")
def client(environ):
    return ENGINE.client


def docker(client, name):
    return client.containers.get(f"{PROJECT}-{name}")


def run(environ, target, command, check=True):
    return on(environ).run(target, command, check=check)


def sql(environ, target, query, check=True):
    return on(environ).sql(target, query, check=check)


def status_rows(environ) -> dict[str, list[str]]:
    lines = inv(environ, "status").stdout.splitlines()
    return {line.split()[0]: line.split() for line in lines[1:]}


# Each test makes the state it starts from, so that any one runs alone or in any order.

def promote_the_standby_and_write_a_row(environ):
    if sql(environ, STANDBY, "select pg_is_in_recovery()") == "t":
        sql(environ, STANDBY, "select pg_promote()")
        assert wait_for(lambda: sql(environ, STANDBY, "select pg_is_in_recovery()") == "f", timeout=30)
    sql(environ, STANDBY, "create table if not exists after_promotion(n int); delete from after_promotion; "
                          "insert into after_promotion values (42)")


def standby_holds_work(environ):
    run(environ, STANDBY, "mkdir -p ~/workspace/mine && echo keep > ~/workspace/mine/work.txt")


# ---- 1. a promoted server keeps its data -----------------------------------------

def test_a_promoted_standby_stays_a_primary_with_its_rows(environ, client):
    promote_the_standby_and_write_a_row(environ)

    docker(client, STANDBY).restart(timeout=30)
    inv(environ, "up")  # waits until ready: a promoted standby is ready as a primary
    assert sql(environ, STANDBY, "select n from after_promotion") == "42"
    assert sql(environ, STANDBY, "select pg_is_in_recovery()") == "f"

    inv(environ, "down")
    inv(environ, "up")
    assert sql(environ, STANDBY, "select n from after_promotion") == "42"
    row = status_rows(environ)[STANDBY]
    assert row[1] == "standby" and row[6] == "primary"  # its name says standby; status tells the truth


def test_reseed_asks_first_then_makes_a_standby_again(environ):
    promote_the_standby_and_write_a_row(environ)
    refused = inv(environ, "db.reseed", "-t", STANDBY, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"atelier: db.reseed deletes the data of {STANDBY} and copies it "
                                      "again from the primary; add --yes to confirm")
    assert sql(environ, STANDBY, "select n from after_promotion") == "42"

    not_paired = inv(environ, "db.reseed", "-t", STANDALONE, "--yes", check=False)
    assert not_paired.returncode == 1 and "in no replication pair" in not_paired.stderr

    inv(environ, "db.reseed", "-t", STANDBY, "--yes")
    inv(environ, "up")
    assert sql(environ, STANDBY, "select pg_is_in_recovery()") == "t"
    assert sql(environ, STANDBY, "select to_regclass('after_promotion') is null") == "t"
    assert wait_for(lambda: status_rows(environ)[STANDBY][7] == ACTIVE, timeout=30)  # follows


# ---- 2. cleaning a source tree removes build output only ----------------------------

FAKE_TREE = ("set -e; rm -rf ~/workspace/postgres; mkdir -p ~/workspace/postgres/src; cd ~/workspace/postgres; "
             "git init -q; printf '#!/bin/sh\\ntouch configured\\n' > configure; chmod +x configure; "
             "printf '*.o\\nconfigured\\n' > .gitignore; touch src/.keep; git add -A; "
             "git -c user.name=t -c user.email=t@t commit -qm tree; touch built.o new_test.sql")


def test_configure_refuses_while_untracked_files_exist_and_never_removes_them(environ):
    run(environ, STANDALONE, FAKE_TREE)
    refused = inv(environ, "pg.configure", "-t", STANDALONE, check=False)
    assert refused.returncode == 1
    assert "1 file(s) git neither tracks nor ignores: new_test.sql" in refused.stderr
    assert "add --force to go on" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert run(environ, STANDALONE, "ls ~/workspace/postgres").stdout.split() == \
        ["built.o", "configure", "new_test.sql", "src"]

    dry = inv(environ, "pg.configure", "-t", STANDALONE, "--dry-run").stdout
    assert "would remove 1 build output path(s)\n  built.o" in dry
    assert "would keep 1 untracked file(s)\n  new_test.sql" in dry

    inv(environ, "pg.configure", "-t", STANDALONE, "--force")
    assert run(environ, STANDALONE, "ls ~/workspace/postgres").stdout.split() == \
        ["configure", "configured", "new_test.sql", "src"]


def test_git_clean_shows_what_it_would_remove_and_needs_yes(environ):
    run(environ, STANDALONE, FAKE_TREE + "; touch ~/workspace/postgres/patch.diff")
    shown = inv(environ, "git.clean", "-t", STANDALONE, check=False)
    assert shown.returncode == 1
    assert {"Would remove patch.diff", "Would remove new_test.sql", "Would remove built.o"} <= \
        set(shown.stdout.splitlines())
    assert shown.stderr.strip().endswith("add --yes to remove them")
    assert "patch.diff" in run(environ, STANDALONE, "ls ~/workspace/postgres").stdout
    inv(environ, "git.clean", "-t", STANDALONE, "--yes")
    assert run(environ, STANDALONE, "ls ~/workspace/postgres").stdout.split() == ["configure", "src"]


# ---- 3. workspace.sync never loses a tree -------------------------------------------

def test_sync_refuses_a_target_set_that_holds_the_origin(environ):
    standby_holds_work(environ)
    refused = inv(environ, "workspace.sync", "-t", "debian12-pg15-*", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"atelier: {ACTIVE}, {STANDALONE} would be copied from and replaced at once; "
        "choose targets that leave out the origin"]
    assert run(environ, STANDBY, "cat ~/workspace/mine/work.txt").stdout.strip() == "keep"


def test_sync_refuses_an_empty_origin(environ):
    standby_holds_work(environ)
    run(environ, ACTIVE, "find ~/workspace -mindepth 1 -maxdepth 1 ! -name .ccache -exec rm -rf {} +")
    refused = inv(environ, "workspace.sync", "-t", STANDBY, "--from", "active", check=False)
    assert refused.returncode == 1 and "the origin workspace is empty: nothing to copy" in refused.stderr
    assert run(environ, STANDBY, "cat ~/workspace/mine/work.txt").stdout.strip() == "keep"


def test_a_failed_unpack_leaves_the_workspace_as_it_was(settings, environ):
    from atelier.core.errors import StepFailed
    from atelier.pg.workspace import replace_workspace

    standby_holds_work(environ)
    run(environ, STANDBY, "head -c 5000 /dev/urandom > /tmp/broken.tar")
    with Session(settings) as session:
        with pytest.raises(StepFailed, match="unpacking beside the workspace failed"):
            replace_workspace(session.context(STANDBY, "postgres"), "/tmp/broken.tar", hide=True)
    assert run(environ, STANDBY, "cat ~/workspace/mine/work.txt").stdout.strip() == "keep"
    assert ".atelier-sync" not in run(environ, STANDBY, "ls -A ~/workspace").stdout


def test_sync_swaps_and_keeps_the_replaced_tree(environ):
    standby_holds_work(environ)
    run(environ, STANDALONE, "mkdir -p ~/workspace/theirs && echo new > ~/workspace/theirs/f")
    done = inv(environ, "workspace.sync", "-t", STANDBY, "--from", "standalone")
    assert "the replaced tree is kept in /var/lib/postgresql/workspace/.replaced-" in done.stdout
    assert run(environ, STANDBY, "cat ~/workspace/theirs/f").stdout.strip() == "new"
    kept = run(environ, STANDBY, "cat ~/workspace/.replaced-*/mine/work.txt").stdout.split()
    assert kept and set(kept) == {"keep"}


# ---- 4. one writer at a time ----------------------------------------------------------

def test_a_second_up_waits_for_the_lock_then_gives_up_in_one_line(environ, settings):
    with project_lock(settings.state_dir, "test-holder", say=lambda _: None):
        blocked = inv({**environ, "ATELIER_LOCK_TIMEOUT": "1"}, "up", check=False)
    assert blocked.returncode == 1
    assert blocked.stdout.startswith(f"waiting for `inv test-holder` (pid {os.getpid()}) to finish")
    assert blocked.stderr.strip().startswith(f"atelier: gave up after 1s waiting for `inv test-holder` "
                                             f"(pid {os.getpid()})")

    holder = threading.Event()

    def hold():
        with project_lock(settings.state_dir, "test-holder", say=lambda _: None):
            holder.set()
            time.sleep(2)

    thread = threading.Thread(target=hold)
    thread.start()
    holder.wait()
    waited = inv(environ, "up")
    thread.join()
    assert "waiting for `inv test-holder`" in waited.stdout and "ready:" in waited.stdout


# ---- 5. half-made containers are made again ----------------------------------------------

def test_a_container_whose_set_up_was_cut_off_is_made_again(environ, settings, client, monkeypatch):
    env = Environment(settings, select())
    standalone = env.container(STANDALONE)
    spec_of = lambda e: container_spec(e, standalone, engine_up.cgroup_version(client.info()))  # noqa: E731
    docker(client, STANDALONE).remove(force=True)

    # An interrupt between create and the copy of its files: the container goes.
    monkeypatch.setattr(engine_up, "runtime_files", lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        engine_up._create(client, env, standalone, spec_of(env), "hash")
    assert not client.containers.list(all=True, filters={"name": f"{PROJECT}-{STANDALONE}"})

    # A killed `up` (no chance to clean up) leaves one that was created, with
    # the right config label, but got none of its files and never started.
    monkeypatch.setattr(engine_up, "runtime_files", lambda *_: {})
    image_id = client.images.get(standalone.image.name).id
    ceiling = engine_up.nofile_ceiling(client, env, standalone.image.name, client.info()["ID"])
    spec = spec_of(dataclasses.replace(env, nofile_ceiling=ceiling))
    engine_up._create(client, env, standalone, spec, spec.config_hash(image_id))
    monkeypatch.undo()
    assert docker(client, STANDALONE).status == "created"
    made = inv(environ, "up")
    assert "1 to recreate" in made.stdout
    assert sql(environ, STANDALONE, "select 1") == "1"


# ---- 6. the config hash does not depend on the caller's shell ---------------------------

def test_up_from_a_shell_with_a_lower_nofile_limit_recreates_nothing(environ, client):
    before = {c.name: c.id for c in client.containers.list(filters={"label": f"atelier.project={PROJECT}"})}
    args = " ".join([sys.executable, "-m", "invoke", "up"])
    again = subprocess.run(["bash", "-c", f"ulimit -n 4096 && {args}"], cwd=ROOT,
                           env={**os.environ, **environ}, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "recreate" not in again.stdout
    after = {c.name: c.id for c in client.containers.list(filters={"label": f"atelier.project={PROJECT}"})}
    assert after == before


# ---- 7. host keys are recorded as soon as they are read ---------------------------------

def test_a_failed_up_still_records_keys_and_hostkeys_reads_them_again(environ, settings, client):
    path = known_hosts_path(settings)
    docker(client, ACTIVE).exec_run(["systemctl", "stop", "postgresql@15-main"])
    try:
        path.unlink()
        failed = inv(environ, "up", "--timeout", "8", check=False)
        assert failed.returncode == 1 and "not ready after 8s" in failed.stderr
        assert set(recorded_keys(settings)) >= {ACTIVE, STANDBY, STANDALONE, "debian12-init"}
        assert run(environ, STANDALONE, "hostname").stdout.strip() == STANDALONE
    finally:
        docker(client, ACTIVE).exec_run(["systemctl", "start", "postgresql@15-main"])  # and its roles unit
    path.unlink()
    assert "recorded the host keys of" in inv(environ, "hostkeys").stdout
    assert run(environ, ACTIVE, "hostname").stdout.strip() == ACTIVE
    inv(environ, "up")


# ---- 8. Ctrl-C ------------------------------------------------------------------------------

def test_ctrl_c_ends_the_remote_commands_too(environ, client):
    code, seconds, _, err = interrupt_after(environ, ["run", "-t", "debian12-pg15-*", "--", "sleep 38"])
    assert code == 130 and seconds < 1.5, (code, seconds, err)

    def gone():
        return all(docker(client, name).exec_run(["pgrep", "-f", "sleep 38"]).exit_code == 1
                   for name in (ACTIVE, STANDBY, STANDALONE))
    assert wait_for(gone, timeout=5)


def test_ctrl_c_cancels_builds_and_keeps_the_images(environ, client):
    names = ("atelier-haproxy", "atelier-debian12-init", "atelier-debian12-pg15")
    before = {n: client.images.get(n).id for n in names}
    code, seconds, _, err = interrupt_after(environ, ["build", "--refresh"], seconds=5)
    assert code == 130 and seconds < 1.5, (code, seconds, err)

    def building():  # the builder's step containers run from bare image ids (one list, no inspect:
        # a step container may go between a listing and its inspection)
        return [c["Id"][:12] for c in client.api.containers()
                if re.fullmatch(r"(sha256:)?[0-9a-f]{12,64}", c["Image"])]
    assert wait_for(lambda: not building(), timeout=15), building()
    assert {n: client.images.get(n).id for n in names} == before


# ---- 9. errors are one line ----------------------------------------------------------------

def test_a_wrong_sudo_password_is_one_line(environ):
    wrong = inv({**environ, "ATELIER_SUDO_PASSWORD": "not-the-one"}, "pg.start", "-t", STANDALONE, check=False)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert wrong.stderr.strip().splitlines()[-1] == (
        f"atelier: {STANDALONE}: sudo refused the environment's sudo password; "
        "containers get it at start: `inv up` after changing ATELIER_SUDO_PASSWORD")


def test_a_local_file_error_is_reported_per_target_and_the_others_finish(environ, tmp_path):
    (tmp_path / ACTIVE).write_text("a file where a folder is wanted")
    got = inv(environ, "get", "/etc/hostname", "--local", str(tmp_path / "{name}" / "hostname"),
              "-t", f"{ACTIVE},{STANDBY}", check=False)
    assert got.returncode == 1 and "Traceback" not in got.stderr
    rows = {line.split()[0]: line for line in got.stderr.splitlines()[1:]}
    assert rows[STANDBY].split()[1] == "0" and rows[ACTIVE].split()[1] == "1"
    assert "File exists" in rows[ACTIVE] or "Not a directory" in rows[ACTIVE]
    assert (tmp_path / STANDBY / "hostname").read_text().strip() == STANDBY


# ---- 10, 11. input that reaches a shell, a Dockerfile or a file --------------------------------

def test_make_targets_are_words_not_shell(environ):
    bad = inv(environ, "pg.make", "-t", STANDALONE, "--what", "world; touch /tmp/pwned", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("atelier: --what 'world; touch /tmp/pwned' is not")
    assert run(environ, STANDALONE, "test ! -e /tmp/pwned").returncode == 0


# ---- 12. pg.user keeps the password out of argv and the file private ---------------------------

def test_pg_user_writes_a_private_pgpass(environ, settings):
    inv(environ, "pg.user", "experdba", "-t", STANDALONE)
    listing = run(environ, STANDALONE, "stat -c '%a %n' ~/.pgpass; ls -A ~").stdout
    assert "600 /var/lib/postgresql/.pgpass" in listing and ".pgpass.new" not in listing
    assert sql(environ, STANDALONE, "select 1") == "1"
    assert run(environ, STANDALONE, "bash -lc 'psql -XAtc \"select current_user\"'").stdout.strip() == "experdba"
    inv(environ, "pg.user", "postgres", "-t", STANDALONE)


# ---- 13. a failed import tags nothing --------------------------------------------------------

# ---- 14, 17. what containers may do; sshd reads atelier's settings ----------------------------

def test_servers_run_without_sys_admin_and_sshd_applies_atelier_settings(environ, client):
    container = docker(client, STANDBY)
    assert container.attrs["HostConfig"]["CapAdd"] == ["SYS_PTRACE"]
    assert not container.attrs["HostConfig"]["Privileged"]
    assert container.exec_run(["systemctl", "is-system-running"]).output.decode().strip() == "running"
    config = container.exec_run(["head", "-n", "12", "/etc/ssh/sshd_config"]).output.decode()
    assert "PasswordAuthentication no" in config and "PermitRootLogin no" in config


# ---- 15. squid is no open proxy ---------------------------------------------------------------

def test_squid_refuses_what_comes_through_the_published_port(environ, settings):
    env = Environment(settings, select())
    apache = env.container("apache2").address
    proxy = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{TEST_ENV['ATELIER_SQUID_PORT']}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(proxy).open(f"http://{apache}/", timeout=10)
    assert refused.value.code == 403
    # The project's own containers still use it.
    inside = run(environ, "debian12-init", f"curl -s -o /dev/null -w '%{{http_code}}' -x http://squid:3128 "
                 f"http://{apache}/")
    assert inside.stdout.strip() == "200"


# ---- 16. package layers can be refreshed ------------------------------------------------------

def test_security_sources_and_build_refresh(environ, settings, client):
    sources = docker(client, ACTIVE).exec_run(["cat", "/etc/apt/sources.list"]).output.decode()
    assert "bookworm-security main" in sources
    env = Environment(settings, select())
    # apache2's build under a tag of its own: a refresh makes a new image, and
    # atelier-apache2 is every other environment's (its id is in their config hash).
    apache = dataclasses.replace(service_image("apache2"), name=f"{PROJECT}-refresh-apache2")
    try:
        # Its first build, in this environment's conditions (squid runs, so
        # downloads go through it); unchanged, it is then not built again.
        build_all(ENGINE, env, [apache], say=lambda _: None)
        kept, = build_all(ENGINE, env, [apache], say=lambda _: None)
        assert kept.outcome == "cached"
        fresh, = build_all(ENGINE, env, [apache], say=lambda _: None, refresh=True)
        assert fresh.outcome == "built"
    finally:
        client.images.remove(apache.name, force=True)
