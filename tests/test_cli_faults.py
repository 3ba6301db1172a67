"""Fault drills that need no environment up: a real process and a real
signal, a real Unix socket standing in for an engine that dies, a state
folder that cannot be made, values that would reach a shell. They run with
the fast tests (the one that asks a real engine is marked engine). Split
from test_faults.py, whose environment the rest need."""

from __future__ import annotations

import json
import socket
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from atelier.core.errors import AtelierError
from atelier.engine.build import import_folder
from helpers import ENGINE, ROOT, interrupt_after, inv, project_settings, wait_for

TEST_ENV = project_settings("ateliertest-faults", "172.24", 21000)


@pytest.fixture
def environ(tmp_path):
    """The faults project's settings with a state folder of its own; nothing is brought up."""
    return {**TEST_ENV, "ATELIER_STATE_DIR": str(tmp_path / "state")}


FIRST_RUN = ("import sys; from atelier.core.settings import load_settings; "
             "s = load_settings(environ={'ATELIER_STATE_DIR': sys.argv[1]}); print(s.keys.client_public, "
             "s.superuser_password)")


def test_concurrent_first_runs_agree_on_one_key_pair_and_one_password(tmp_path):
    from cryptography.hazmat.primitives import serialization

    for trial in range(12):
        state = tmp_path / f"s{trial}"
        runs = [subprocess.Popen([sys.executable, "-c", FIRST_RUN, str(state)], cwd=ROOT, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
        answers = {p.communicate()[0].strip() for p in runs}
        assert len(answers) == 1, answers
        key = serialization.load_ssh_private_key((state / "id_ed25519").read_bytes(), None)
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        assert (state / "id_ed25519.pub").read_text().split()[:2] == public.split()
        assert oct((state / "secrets.env").stat().st_mode & 0o777) == "0o600"


def test_ctrl_c_ends_a_local_command_at_once(environ):
    code, seconds, _, err = interrupt_after(environ, ["run", "-t", "local", "--", "sleep 37; echo finished"])
    assert code == 130 and seconds < 1.5, (code, seconds, err)
    assert "atelier: interrupted" in err
    assert wait_for(lambda: subprocess.run(["pgrep", "-f", "sleep 37"]).returncode == 1, timeout=3)


class OneAnswerEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A Docker API socket that answers the version and ping, then dies:
    the engine going away in the middle of `up`."""

    daemon_threads = True


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            request = self.rfile.readline().decode()
            if not request:
                return
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            path = request.split()[1] if len(request.split()) > 1 else ""
            if path.endswith("/version") or path.endswith("/_ping"):
                body = b"OK" if path.endswith("/_ping") else json.dumps({"ApiVersion": "1.41"}).encode()
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)  # gone, mid-conversation
                return


def test_the_engine_dying_mid_up_is_one_line(environ, tmp_path):
    path = str(tmp_path / "docker.sock")
    server = OneAnswerEngine(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lost = inv({**environ, "DOCKER_HOST": f"unix://{path}"}, "up", check=False)
    finally:
        server.shutdown()
    assert lost.returncode == 1
    assert lost.stderr.startswith("atelier: lost the Docker engine: ") and len(lost.stderr.splitlines()) == 1


def test_an_unwritable_state_folder_is_one_line(environ, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = inv({**environ, "ATELIER_STATE_DIR": str(blocker / "state")}, "status", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"atelier: cannot make the state folder {blocker / 'state'}: Not a directory"


@pytest.mark.parametrize("variable, value, expected", [
    ("ATELIER_DEBIAN_MIRROR", "http://deb.debian.org/debian\"\nRUN touch /pwned #",
     "ATELIER_DEBIAN_MIRROR='http://deb.debian.org/debian\"\\nRUN touch /pwned #' is not a plain URL"),
    ("ATELIER_SUPERUSER_PASSWORD", "two\nlines", "ATELIER_SUPERUSER_PASSWORD holds a newline"),
])
def test_values_that_would_reach_a_shell_are_refused(environ, variable, value, expected):
    bad = inv({**environ, variable: value}, "render", "--out", "/tmp/atelier-never", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith(f"atelier: {expected}")
    assert not Path("/tmp/atelier-never").exists()


def test_local_target_outside_a_container_is_one_line(environ, tmp_path):
    bad = inv(environ, "pg.make", "-t", "local", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("atelier: --target local runs a helper inside an atelier server container, "
                                  "and this machine is not one (no /etc/atelier/pg.env); name a container instead")
    assert not Path("/workspace").exists()


@pytest.mark.engine
def test_a_failed_base_import_tags_nothing(tmp_path):
    client = ENGINE.client
    with pytest.raises(AtelierError, match="importing .* as atelier-base:broken failed: .*nothing was tagged"):
        import_folder(client, str(tmp_path / "missing"), "atelier-base:broken")
    assert not client.images.list(name="atelier-base:broken")


def test_a_command_that_succeeds_leaves_fast_with_its_output_and_status_whole(environ):
    """`inv` skips the interpreter's teardown after tasks that all succeeded
    (tasks/common.leave_without_teardown): every line still arrives, the
    status stays 0, and a failure keeps its own status and message."""
    out = Path(environ["ATELIER_STATE_DIR"]) / "rendered"
    rendered = inv(environ, "render", "--profile", "debian", "--out", str(out))
    assert rendered.returncode == 0
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert rendered.stdout == f"wrote {len(written)} files for debian into {out}/\n"
    assert (out / "compose.yml").is_file()
    bad = inv(environ, "up", "--pg", "13", check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("atelier: unknown PostgreSQL major '13'")


def test_only_the_command_itself_skips_the_teardown(monkeypatch):
    from atelier.tasks import common

    assert not common.running_as_the_command()  # pytest's own exit status must stand
    for argv0 in ("/usr/local/bin/inv", "/opt/venv/bin/atelier", "/usr/lib/python3/site-packages/invoke/__main__.py"):
        monkeypatch.setattr(sys, "argv", [argv0, "up"])
        assert common.running_as_the_command()
