"""Connections into containers over SSH, the way atelier's users go by hand:
host -> HAProxy on 127.0.0.1:ATELIER_SSH_PORT -> an init container (jump
host) -> the target, by its hostname on the atelier network.

Host keys are pinned: `inv up` records every container's key (read through
the engine, a trusted channel) in the environment's own known_hosts, and
connections refuse any key not recorded there."""

from __future__ import annotations

import os
import socket
import threading

from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.core.settings import Settings
from atelier.core.state import known_hosts_path
from atelier.engine import host as engine_host
from atelier.engine.client import Engine
from atelier.engine.host import EngineHost
from atelier.ssh.targets import LOCAL

GATEWAY_USER = "atelier"


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


def open_gateway(settings: Settings, chosen: EngineHost):
    """An open connection to a jump host through HAProxy, or one line on why not."""
    from fabric import Connection

    _quiet_paramiko()
    host, port = settings.entry_address
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


class Session:
    """Connections of one run: a single gateway shared by every target, and
    the run's engine (for what only the engine can do: a container that is
    down answers no SSH). Closing it (it is a context manager) closes every
    connection it opened."""

    def __init__(self, settings: Settings, engine: Engine | None = None, forward_agent: bool = False):
        self.settings = settings
        self.engine = engine or Engine.chosen(settings.docker_host, nodes=settings.nodes)
        # The user's SSH agent, forwarded to the targets (git push with a key
        # that never leaves this host); never the key itself.
        self.forward_agent = forward_agent
        # Every container atelier may have made, whichever selection is up:
        # a target is any container whose host key was recorded.
        self.matrix = Environment(settings, select("full"))
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
        return self.matrix.container(name).login_user

    def gateway(self):
        with self._lock:
            if self._gateway is None:
                self._gateway = open_gateway(self.settings, self.engine.entry_host)
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

    def reconnect(self) -> None:
        """Forget every connection: a Ctrl-C that lands while paramiko writes a
        packet leaves that transport (and the gateway's under it) unusable,
        and what a task does after it (putting things back) needs new ones."""
        with self._lock:
            broken, self._opened, self._gateway = self._opened + [self._gateway], [], None
        for connection in broken:
            try:
                if connection is not None:
                    connection.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def close(self) -> None:
        for connection in self._opened + [self._gateway]:
            if connection is not None:
                connection.close()
