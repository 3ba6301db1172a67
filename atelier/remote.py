"""Commands in containers over SSH, the way atelier's users go by hand:
host -> HAProxy on 127.0.0.1:ATELIER_SSH_PORT -> an init container (jump
host) -> the target, by its hostname on the atelier network.

Host keys are pinned: `inv up` records every container's key (read through
the engine, a trusted channel) in the environment's own known_hosts, and
connections refuse any key not recorded there."""

from __future__ import annotations

import fnmatch
import os
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass

from . import engine_host
from .errors import AtelierError, StepFailed, choice_error
from .model import Environment, select
from .parallel import parallel_map
from .settings import Settings
from .state import known_hosts_path, recorded_keys
from .table import format_table

GATEWAY_USER = "atelier"
LOCAL = "local"


# ---- targets ------------------------------------------------------------------------

def recorded_names(settings: Settings) -> list[str]:
    """Containers whose keys atelier recorded: the ones there are to reach."""
    return list(recorded_keys(settings))


def resolve_targets(pattern: str, names: list[str]) -> list[str]:
    """One name, a glob (`debian12-pg15-*`, `*-standby`) or a comma list of
    them, over `names`; each part must match something."""
    chosen: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        if part == LOCAL:
            matches = [LOCAL]
        else:
            matches = [n for n in names if fnmatch.fnmatchcase(n, part)]
        if not matches:
            if not names:
                raise AtelierError(f"no container of this project is up to match {part!r}; run `inv up` first")
            raise choice_error("target", part, names)
        chosen += [m for m in matches if m not in chosen]
    return chosen


def command_after_dashes(argv: list[str]) -> list[str]:
    """The words after the first `--`, as given (Invoke keeps only a joined string)."""
    return argv[argv.index("--") + 1:] if "--" in argv else []


def remote_command(words: list[str]) -> str:
    """One word is a shell line (`-- 'make && make check'`, as with ssh);
    several keep their exact argv (`-- psql -c 'select 1'`)."""
    return words[0] if len(words) == 1 else shlex.join(words)


def guarded(line: str) -> str:
    """`line` run by bash in a process group of its own, which is killed when
    the client goes away: a watcher reads the command's stdin (the SSH
    channel, or the pipe from a local atelier) and on its end, which comes
    when atelier exits or is interrupted, signals the whole group. Without
    it, `make` or `sleep` went on in the container after Ctrl-C."""
    return ("exec 3<&0; setsid bash -c " + shlex.quote(line) + " </dev/null 3<&- & child=$!; "
            "{ cat <&3 >/dev/null 2>&1; kill -TERM -- -$child 2>/dev/null; } </dev/null >/dev/null 2>&1 & "
            "watcher=$!; exec 3<&-; wait $child; code=$?; kill $watcher 2>/dev/null; exit $code")


# ---- connections ----------------------------------------------------------------------

def _fabric_config(settings: Settings):
    from fabric import Config

    # The user's ~/.ssh/config must not redirect atelier's hosts; sudo's
    # prompt in a container is answered with the environment's sudo password.
    return Config(overrides={"load_ssh_configs": False,
                             "sudo": {"password": settings.sudo_password}})


def _connect_kwargs(settings: Settings) -> dict:
    return {"key_filename": str(settings.keys.client_key_path), "look_for_keys": False,
            "allow_agent": False, "banner_timeout": 15, "auth_timeout": 15}


def _pinned(connection, settings: Settings):
    import paramiko

    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    connection.client.load_host_keys(str(known_hosts_path(settings)))
    return connection


def _quiet_paramiko() -> None:
    """paramiko logs failed channel opens itself; atelier says it in one line."""
    import logging

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def open_gateway(settings: Settings):
    """An open connection to a jump host through HAProxy, or one line on why not."""
    from fabric import Connection

    _quiet_paramiko()
    host, port = settings.entry_address
    chosen = engine_host.current()
    # On a remote engine HAProxy's port stays on that host's loopback: one
    # more hop, a channel from the engine host (`ssh -W`, the user's own
    # OpenSSH and known_hosts for that host, sharing atelier's master).
    through = engine_host.proxy_command(chosen.ssh, host, port) if chosen.is_remote else None
    gateway = _pinned(Connection(host, port=port, user=GATEWAY_USER, config=_fabric_config(settings),
                                 connect_timeout=10, connect_kwargs=_connect_kwargs(settings),
                                 gateway=through), settings)
    hop = f"HAProxy at {host}:{port}" + (f" on {chosen.ssh}" if chosen.is_remote else "")
    try:
        gateway.open()
    except Exception as exc:
        if chosen.is_remote:
            engine_host.check_reachable(chosen.ssh)
            engine_host.check_forwarding(chosen.ssh)
        raise explain(exc, hop, settings, entry=True) from None
    return gateway


def target_connection(settings: Settings, name: str, user: str, gateway, forward_agent: bool = False):
    from fabric import Connection

    return _pinned(Connection(name, port=22, user=user, gateway=gateway, config=_fabric_config(settings),
                              connect_timeout=10, connect_kwargs=_connect_kwargs(settings),
                              forward_agent=forward_agent), settings)


NO_AGENT = ("no SSH agent runs here (SSH_AUTH_SOCK is unset), so none is forwarded: "
            "`eval $(ssh-agent)` and `ssh-add` first to push with your own key")


def agent_available() -> bool:
    """An agent the user runs: its socket, as OpenSSH finds it."""
    sock = os.environ.get("SSH_AUTH_SOCK", "")
    return bool(sock) and os.path.exists(sock)


def _fingerprint(key) -> str:
    import base64
    import hashlib

    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def explain(exc: Exception, hop: str, settings: Settings, entry: bool = False) -> AtelierError:
    """One line naming the hop that failed and what to do."""
    import paramiko

    known = known_hosts_path(settings)
    if isinstance(exc, paramiko.BadHostKeyException):
        return AtelierError(
            f"host key of {hop} changed: {known} has {_fingerprint(exc.expected_key)}, it offered "
            f"{_fingerprint(exc.key)}; if atelier recreated that container, `inv hostkeys` reads "
            "every container's key again through the engine and records it")
    if isinstance(exc, paramiko.AuthenticationException):
        return AtelierError(f"{hop} refused atelier's key ({settings.keys.client_key_path}); "
                            "valid users: postgres (servers), atelier (init containers)")
    if isinstance(exc, paramiko.ChannelException):
        return AtelierError(f"the jump host could not reach {hop} port 22 ({exc.text}); "
                            "is that container running? (`inv status`)")
    text = str(exc)
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in text:
        return AtelierError(f"no host key recorded for {hop} in {known}; `inv hostkeys` reads the keys "
                            "of running containers through the engine")
    if isinstance(exc, (ConnectionRefusedError, paramiko.ssh_exception.NoValidConnectionsError)):
        return AtelierError(f"cannot reach {hop}: connection refused; is the environment up? (`inv status`)")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return AtelierError(f"{hop} did not answer in time")
    if isinstance(exc, (paramiko.SSHException, EOFError, ConnectionResetError)) and entry:
        return AtelierError(f"{hop} accepted the connection but no init container answered "
                            f"({text or type(exc).__name__}); are the init containers running? (`inv status`)")
    return AtelierError(f"{hop}: {text or type(exc).__name__}")


# ---- running commands ---------------------------------------------------------------

class Prefixed:
    """A stream that writes whole lines, each behind `prefix`, under a shared lock."""

    def __init__(self, prefix: str, stream, lock: threading.Lock):
        self.prefix, self.stream, self.lock, self.pending = prefix, stream, lock, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if lines:
            with self.lock:
                self.stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.write("\n")


@dataclass
class Outcome:
    name: str
    exit_code: int
    seconds: float
    error: str = ""


class Session:
    """Connections of one run: a single gateway shared by every target.
    Closing it (it is a context manager) closes every connection it opened."""

    def __init__(self, settings: Settings, forward_agent: bool = False):
        self.settings = settings
        # The user's SSH agent, forwarded to the targets (git push with a key
        # that never leaves this host); never the key itself.
        self.forward_agent = forward_agent
        self.model = Environment(settings, select("full"))
        self._gateway = None
        self._opened: list = []
        self._lock = threading.Lock()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def user_for(self, name: str) -> str:
        """postgres on servers, atelier on init containers, yourself locally."""
        if name == LOCAL:
            return os.environ.get("USER", "root")
        return self.model.container(name).login_user

    def gateway(self):
        with self._lock:
            if self._gateway is None:
                self._gateway = open_gateway(self.settings)
            return self._gateway

    def context(self, name: str, user: str):
        """Something with run/sudo/put/get: a Fabric Connection to the target,
        or, for `local`, an Invoke Context (helpers run the same either way)."""
        if name == LOCAL:
            from invoke import Config, Context

            return Context(Config(overrides={"sudo": {"password": self.settings.sudo_password}}))
        connection = target_connection(self.settings, name, user, self.gateway(), self.forward_agent)
        with self._lock:
            self._opened.append(connection)
        try:
            connection.open()
        except Exception as exc:
            raise explain(exc, name, self.settings) from None
        return connection

    def close(self) -> None:
        for connection in self._opened + [self._gateway]:
            if connection is not None:
                connection.close()


def fan_out(session: Session, names: list[str], work, user: str | None = None,
            out=None, err=None) -> list[Outcome]:
    """Run `work(context, **streams)` on every target at once. It returns an
    exit code (or None for success) or raises; with more than one target,
    output lines are prefixed with the target's name. Whatever one target
    raises becomes its own outcome: the others' results are kept."""
    from invoke.exceptions import AuthFailure

    out, err = out or sys.stdout, err or sys.stderr
    lock = threading.Lock()
    many = len(names) > 1
    if any(n != LOCAL for n in names):
        session.gateway()  # open once, before the threads share it

    def one(name: str) -> Outcome:
        started = time.monotonic()
        streams = {}
        if many:
            width = max(len(n) for n in names)
            streams = {"out_stream": Prefixed(f"{name:<{width}} | ", out, lock),
                       "err_stream": Prefixed(f"{name:<{width}} ! ", err, lock)}
        try:
            result = work(session.context(name, user or session.user_for(name)), **streams)
            code, error = (result if isinstance(result, int) else 0), ""
        except StepFailed as exc:
            code, error = exc.code, f"{name}: {exc}"
        except AtelierError as exc:
            code, error = 255, str(exc)
        except AuthFailure:
            code, error = 1, (f"{name}: sudo refused the environment's sudo password; containers get it at "
                              "start: `inv up` after changing ATELIER_SUDO_PASSWORD")
        except OSError as exc:
            code, error = 1, f"{name}: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        except Exception as exc:
            code, error = 1, f"{name}: {type(exc).__name__}: {exc}"
        for stream in streams.values():
            stream.flush()
        return Outcome(name, code, time.monotonic() - started, error)

    return parallel_map(one, names, workers=32)


def run_on(session: Session, names: list[str], command: str, user: str | None = None,
           out=None, err=None) -> list[Outcome]:
    """A shell command on every target at once."""
    def work(ctx, **streams):
        return ctx.run(guarded(command), warn=True, hide=False, in_stream=False, **streams).exited

    return fan_out(session, names, work, user, out, err)


def summary_table(outcomes: list[Outcome]) -> str:
    return format_table(("container", "exit", "seconds", ""),
                        [(o.name, o.exit_code, f"{o.seconds:.2f}", o.error) for o in outcomes],
                        right=("exit", "seconds"))
