"""Helpers the end-to-end test modules share."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from atelier.core.model import Environment, select
from atelier.core.settings import load_settings
from atelier.engine.client import Engine
from atelier.ssh.session import Session

# The checkout the tests run in: `inv` there finds its tasks.py.
ROOT = Path(__file__).resolve().parent.parent

# The engine the tests drive from this process (DOCKER_HOST, a context, or
# the local socket), one client for the whole run.
ENGINE = Engine.chosen()


def default_sigint() -> None:
    """For a child that a test interrupts: SIGINT's default action, whatever
    the test run inherited (a background job of a script, nohup and some CI
    runners start with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def inv(environ: dict, *args, check: bool = True, timeout: float = 900):
    """Run the real command line, as a user does."""
    run = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                         env={**os.environ, **environ}, capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"inv {' '.join(args)} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return run


def interrupt_after(environ: dict, args, seconds: float = 2.0):
    """Start `inv ARGS`, send it SIGINT (Ctrl-C) after `seconds`: (exit code,
    seconds from the signal to its exit, stdout, stderr)."""
    process = subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                               env={**os.environ, **environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=default_sigint)
    time.sleep(seconds)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return process.returncode, time.monotonic() - sent, out, err


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def project_settings(project: str, subnet: str, port_base: int) -> dict:
    """Settings of a test project of its own: name, subnet and host ports
    (SSH port_base+22, HTTP +80, squid +128), all on 127.0.0.1."""
    return {
        "ATELIER_PROJECT": project,
        "ATELIER_SUBNET": subnet,
        "ATELIER_SSH_PORT": str(port_base + 22),
        "ATELIER_HTTP_PORT": str(port_base + 80),
        "ATELIER_SQUID_PORT": str(port_base + 128),
        "ATELIER_BIND_ADDRESS": "127.0.0.1",
        # This machine's Debian mirror is a frozen copy: forky's Release files
        # have expired on it (see ATELIER_DEBIAN_SNAPSHOT in .env.example).
        "ATELIER_DEBIAN_SNAPSHOT": "1",
        # Images are shared by name across projects: every test project asks
        # for the same locales, the Korean ones the original generated among them.
        "ATELIER_LOCALES": "C.UTF-8,en_US.UTF-8,ko_KR.UTF-8,ko_KR.EUC-KR",
    }


# ---- reading state in process ------------------------------------------------------------
# A test whose subject is not the command line reads what it checks through
# one open Session: the same SSH path (HAProxy, an init, the target, real
# sshd) as `inv run`, without a Python process and two handshakes per query.

@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


class Servers:
    """Shell and SQL in a test environment's containers, in process."""

    def __init__(self, environ: dict):
        self.environ = environ
        self.settings = load_settings(environ=environ)
        self.matrix = Environment(self.settings, select("full"))
        self._session: Session | None = None
        self._contexts: dict = {}

    def _context(self, target: str, user: str):
        key = (target, user)
        if key not in self._contexts:
            if self._session is None:
                self._session = Session(self.settings, ENGINE)
            self._contexts[key] = self._session.context(target, user)
        return self._contexts[key]

    def reset(self) -> None:
        """Forget every connection (a container, init or HAProxy went away)."""
        if self._session is not None:
            self._session.close()
        self._session, self._contexts = None, {}

    def run(self, target: str, command: str, user: str | None = None, check: bool = True) -> Ran:
        """A shell line as the login user (postgres on servers), like `inv run -t T -- 'line'`."""
        user = user or self.matrix.container(target).login_user
        for attempt in (1, 2):
            try:
                result = self._context(target, user).run(command, warn=True, hide=True, in_stream=False)
                break
            except Exception:
                self.reset()
                if attempt == 2:
                    raise
        ran = Ran(result.exited, result.stdout, result.stderr)
        if check and ran.returncode != 0:
            raise AssertionError(f"{target}: {command} failed ({ran.returncode}):\n{ran.stdout}\n{ran.stderr}")
        return ran

    def put(self, target: str, local: str, remote: str, user: str | None = None) -> None:
        """Copy a file of this host into the container (SFTP, as the login user)."""
        self._context(target, user or self.matrix.container(target).login_user).put(local, remote)

    def sql(self, target: str, query: str, db: str | None = None, check: bool = True) -> str:
        """psql -XAtq as postgres on the server, the answer stripped ("" when it fails and not check)."""
        database = f"-d {shlex.quote(db)} " if db else ""
        ran = self.run(target, f"psql {database}-XAtqc {shlex.quote(query)}", check=check)
        return ran.stdout.strip() if ran.returncode == 0 else ""

    def serves(self, target: str) -> str:
        """primary or standby, as the server itself says; - when it does not answer."""
        answer = self.sql(target, "select pg_is_in_recovery()", check=False)
        return {"t": "standby", "f": "primary"}.get(answer, "-")

    def follows(self, target: str) -> str:
        """The server a standby streams from, by its container name (- otherwise)."""
        row = self.sql(target, "select status || ' ' || coalesce(sender_host, '-') from pg_stat_wal_receiver",
                       check=False)
        if not row:
            return "-"
        status, host = row.split()
        upstream = self.matrix.upstream_name(target, host)
        return upstream if status == "streaming" else f"{upstream}(not-streaming:{status})"

    def close(self) -> None:
        self.reset()


_SERVERS: dict[tuple, Servers] = {}


def servers_of(environ: dict) -> Servers:
    """The Servers of a test environment, opened once per module (closed by
    the module's environment fixture through close_servers)."""
    key = (environ["ATELIER_PROJECT"], environ.get("ATELIER_STATE_DIR", ""))
    if key not in _SERVERS:
        _SERVERS[key] = Servers(environ)
    return _SERVERS[key]


def brought_up(values: dict, profile: str):
    """A package's environment: built and up for its first test, removed
    with its volumes after its last (a generator for a fixture to yield from)."""
    from atelier.core.model import Environment, select
    from atelier.engine.up import down

    inv(values, "build", "--profile", profile)
    inv(values, "up", "--profile", profile)
    yield values
    close_servers(values)
    down(ENGINE, Environment(load_settings(environ=values), select(profile)), remove_volumes=True,
         say=lambda _: None)


def close_servers(environ: dict) -> None:
    key = (environ["ATELIER_PROJECT"], environ.get("ATELIER_STATE_DIR", ""))
    opened = _SERVERS.pop(key, None)
    if opened is not None:
        opened.close()


def pgbouncer_psql(environ, user, password, query, db="debian12-pg15-active.experdb"):
    """psql through PgBouncer's port on 127.0.0.1, the path an application takes."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql is not installed on this host (.ci/setup installs postgresql-client)")
    return subprocess.run([psql, "-X", "-At", "-h", "127.0.0.1", "-p", environ["ATELIER_PGBOUNCER_PORT"], "-U", user,
                           "-d", db, "-c", query], env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"},
                          capture_output=True, text=True, timeout=30)


def secret(environ, key):
    """A password atelier generated into the project's state folder."""
    for line in (Path(environ["ATELIER_STATE_DIR"]) / "secrets.env").read_text().splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1].strip("'")
    raise AssertionError(f"{key} not in the state folder")


def prometheus(environ, path: str, **params):
    """GET /api/v1/<path> of a test project's Prometheus, on its published port
    on 127.0.0.1: the answer's data."""
    import json
    import urllib.parse
    import urllib.request

    url = (f"http://127.0.0.1:{environ['ATELIER_PROMETHEUS_PORT']}/api/v1/{path}"
           + (f"?{urllib.parse.urlencode(params)}" if params else ""))
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    return body["data"]
