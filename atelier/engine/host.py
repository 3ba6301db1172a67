"""Which Docker engine atelier drives, and how it reaches an engine on
another machine over SSH.

The engine is taken, in this order, from DOCKER_HOST, from a docker
context (DOCKER_CONTEXT, else the CLI's current one), from
ATELIER_DOCKER_HOST, else the local socket. An `ssh://[user@]host[:port]`
engine is reached with the user's own OpenSSH (their ssh_config, keys,
agent, ProxyJump and known_hosts), through one ControlMaster per engine host.
The engine's socket is forwarded through that master to a local socket
(a channel per API connection, no process), so the Docker SDK talks to it
as to a local engine; the SDK's own ssh mode (one `ssh ... docker system
dial-stdio` process per connection) is the fallback. The SSH path to
HAProxy (`ssh -W`, Fabric's gateway) shares the master too."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from atelier.core.errors import AtelierError

DEFAULT_URL = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class SshAddress:
    host: str
    user: str = ""
    port: int | None = None

    @property
    def args(self) -> list[str]:
        """ssh's arguments that name this host."""
        return ([f"-l{self.user}"] if self.user else []) + ([f"-p{self.port}"] if self.port else []) + [self.host]

    @property
    def jump(self) -> str:
        """The form ProxyJump takes: [user@]host[:port]."""
        return (f"{self.user}@" if self.user else "") + self.host + (f":{self.port}" if self.port else "")

    @property
    def command(self) -> str:
        """How the user reaches it by hand."""
        return "ssh " + (f"-p {self.port} " if self.port else "") + (f"{self.user}@" if self.user else "") + self.host

    def __str__(self) -> str:
        return self.jump


@dataclass(frozen=True)
class EngineHost:
    url: str
    source: str  # where the choice came from, for messages

    @property
    def ssh(self) -> SshAddress | None:
        return parse_ssh_url(self.url) if self.url.startswith("ssh://") else None

    @property
    def is_remote(self) -> bool:
        return self.ssh is not None

    def describe(self) -> str:
        return f"{self.url} (from {self.source})"


def parse_ssh_url(url: str) -> SshAddress:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "ssh" or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        raise AtelierError(f"{url!r} is not an SSH engine address; write it as ssh://[user@]host[:port]")
    return SshAddress(host=parts.hostname, user=parts.username or "", port=port)


def choose(environ: dict, context: tuple[str, str] | None, atelier_docker_host: str) -> EngineHost:
    """The engine to use: DOCKER_HOST, then a docker context (name, host),
    then ATELIER_DOCKER_HOST, then the local socket. Pure."""
    if environ.get("DOCKER_HOST"):
        chosen = EngineHost(environ["DOCKER_HOST"], "DOCKER_HOST")
    elif context and context[1]:
        chosen = EngineHost(context[1], f"docker context {context[0]}")
    elif atelier_docker_host:
        chosen = EngineHost(atelier_docker_host, "ATELIER_DOCKER_HOST")
    else:
        chosen = EngineHost(DEFAULT_URL, "default")
    if chosen.url.startswith("ssh://"):
        parse_ssh_url(chosen.url)  # one line now, not a traceback from the SDK later
    elif not chosen.url.startswith(("unix://", "tcp://", "npipe://", "http://", "https://")):
        raise AtelierError(f"{chosen.source}={chosen.url!r} is not an engine address; "
                           "use unix:///path, tcp://host:port or ssh://[user@]host[:port]")
    return chosen


def docker_context(environ: dict) -> tuple[str, str] | None:
    """(name, host) of the docker context in use, unless it is `default`
    (the socket, or DOCKER_HOST) or there is none. Read from the CLI's own
    files, so that choosing an engine does not import the SDK."""
    import hashlib
    import json

    folder = Path(environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    name = environ.get("DOCKER_CONTEXT", "")
    if not name:
        try:
            name = json.loads((folder / "config.json").read_text()).get("currentContext", "")
        except (OSError, ValueError):
            return None
    if not name or name == "default":
        return None
    meta = folder / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
    try:
        endpoint = json.loads(meta.read_text())["Endpoints"]["docker"]
    except (OSError, ValueError, KeyError):
        raise AtelierError(f"docker context {name!r} does not exist or has no docker endpoint; "
                           "`docker context ls` lists them") from None
    return name, endpoint.get("Host", "")


# ---- OpenSSH to the engine host ----------------------------------------------------------

def control_dir() -> Path:
    """Per user, short (a unix socket path holds ~100 bytes), private."""
    path = Path(f"/tmp/atelier-ssh-{os.getuid()}")
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_uid != os.getuid() or path.stat().st_mode & 0o077:
        raise AtelierError(f"{path} belongs to someone else or is open to others; remove it")
    return path


def ssh_options(multiplex: bool = True) -> list[str]:
    """atelier's own options for the engine host. The user's ssh_config
    still applies; these add a shared master connection, no prompts (a
    host key not in known_hosts is refused, not asked about), a connect
    timeout, and keepalives so that a dead link ends instead of hanging."""
    common = ["-oBatchMode=yes", "-oConnectTimeout=10", "-oServerAliveInterval=15", "-oServerAliveCountMax=3"]
    if not multiplex:
        return common + ["-oControlMaster=no", "-oControlPath=none"]
    return common + ["-oControlMaster=auto", f"-oControlPath={control_dir()}/%C", "-oControlPersist=600"]


def real_ssh() -> str:
    """OpenSSH's client, never the wrapper sdk_ssh_on_path puts first on PATH."""
    wrappers = str(control_dir() / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != wrappers)
    found = shutil.which("ssh", path=path)
    if not found:
        raise AtelierError("an ssh:// engine needs OpenSSH's client here: `apt install openssh-client`")
    return found


def ssh_argv(address: SshAddress, *args: str, multiplex: bool = True) -> list[str]:
    """`ssh <atelier's options> [more args] host`; a remote command goes after."""
    return [real_ssh(), *ssh_options(multiplex), *args, *address.args]


def proxy_command(address: SshAddress, host: str, port: int) -> str:
    """A direct-tcpip channel from the engine host to host:port, as a
    ProxyCommand (Fabric's gateway given as a string)."""
    return shlex.join(ssh_argv(address, f"-W{host}:{port}"))


def sdk_ssh_on_path() -> None:
    """The Docker SDK runs `ssh` from PATH for each connection, with no way
    to add options. Put a small `ssh` first on this process's PATH that adds
    atelier's options, so that its connections share the master."""
    folder = control_dir() / "bin"
    folder.mkdir(mode=0o700, exist_ok=True)
    wrapper = folder / "ssh"
    if str(folder) in os.environ.get("PATH", "").split(os.pathsep):
        return
    # Its stderr is dropped: when a request fails, check_reachable asks
    # again and says in one line what is wrong with the host.
    text = "#!/bin/sh\nexec " + shlex.join([real_ssh(), *ssh_options()]) + ' "$@" 2>/dev/null\n'
    if not wrapper.exists() or wrapper.read_text() != text:
        partial = wrapper.with_suffix(f".{os.getpid()}")
        partial.write_text(text)
        partial.chmod(0o700)
        partial.replace(wrapper)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def _ssh(address: SshAddress, *args: str, command: str | None = None, timeout: float = 30,
         multiplex: bool = True):
    argv = ssh_argv(address, *args, multiplex=multiplex) + ([command] if command is not None else [])
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AtelierError(f"the engine host {address} did not answer over SSH within {timeout:.0f}s") from None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def check_reachable(address: SshAddress) -> None:
    """SSH to the engine host works, and its docker CLI is there
    (`docker system dial-stdio`, which the SDK runs, needs it)."""
    done = _ssh(address, command="command -v docker")
    if done.returncode == 255:
        raise AtelierError(f"cannot reach the engine host {address} over SSH: {_last_line(done.stderr)} "
                           "(atelier uses your ssh_config, keys, agent and known_hosts; "
                           f"try `{address.command}`)")
    if done.returncode != 0:
        raise AtelierError(f"the engine host {address} has no docker CLI on its PATH; "
                           "`docker system dial-stdio` needs it there (install docker-ce-cli or docker.io)")


def check_forwarding(address: SshAddress) -> None:
    """The engine host's sshd lets atelier open a channel to its loopback,
    which is how HAProxy's port (published there only) is reached. Port 1
    is closed: an allowed channel then fails with `connect failed`, a
    refused one with `administratively prohibited`. Not through the
    master: a multiplexed client hears only "Session open refused"."""
    done = _ssh(address, "-W127.0.0.1:1", multiplex=False)
    if "prohibited" in done.stderr:
        raise AtelierError(f"the engine host {address} refuses TCP forwarding (its sshd's AllowTcpForwarding); "
                           "atelier reaches HAProxy on that host's 127.0.0.1 through it")
    if done.returncode == 255 and "connect failed" not in done.stderr and "open failed" not in done.stderr:
        raise AtelierError(f"cannot reach the engine host {address} over SSH: {_last_line(done.stderr)}")


def engine_socket_name(address: SshAddress) -> str:
    import hashlib

    return f"engine-{hashlib.sha256(address.jump.encode()).hexdigest()[:16]}.sock"


def _engine_answers(path: Path) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(5)
            probe.connect(str(path))
            probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return probe.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


def engine_socket(address: SshAddress) -> str:
    """A local unix socket forwarded through the master to the engine
    host's own engine socket, made if missing or stale; "" when it cannot
    be (the engine is not on a unix socket there, or sshd refuses socket
    forwarding), and the SDK's ssh mode is used instead."""
    local = control_dir() / engine_socket_name(address)
    if local.exists():
        if _engine_answers(local):
            return str(local)
        local.unlink(missing_ok=True)  # the master that held it has gone
    # Where the engine host's own CLI finds its engine (DOCKER_HOST there,
    # its context, or the default socket); this also starts the master.
    found = _ssh(address, command="docker context inspect --format '{{.Endpoints.docker.Host}}'")
    if found.returncode == 255:
        check_reachable(address)  # one line on what is wrong with the host
    remote = found.stdout.strip()
    if found.returncode != 0 or not remote.startswith("unix://"):
        return ""
    _ssh(address, "-Oforward", f"-L{local}:{remote.removeprefix('unix://')}")
    if local.exists() and _engine_answers(local):
        return str(local)
    local.unlink(missing_ok=True)  # sshd refused the channel: not a socket to keep
    return ""


def forward_argv(address: SshAddress, ports: list[int]) -> list[str]:
    """`ssh -N` holding local ports open to the engine host's loopback ports.
    Its own connection, not the shared master: forwards set up through a
    master outlive the client that asked for them."""
    forwards = [f"-L127.0.0.1:{p}:127.0.0.1:{p}" for p in ports]
    return ssh_argv(address, "-N", "-oExitOnForwardFailure=yes", *forwards, multiplex=False)


# ---- where the published ports are ---------------------------------------------------------

def published_ports(settings, http: bool = True, pgbouncer: bool = True, squid: bool = False,
                    ssh: bool = True) -> list[tuple[str, int]]:
    """(what, port) of the ports the project publishes, of those asked for."""
    ports = []
    if ssh:
        ports.append(("ssh", settings.ssh_port))
    if http:
        ports.append(("http", settings.http_port))
    if pgbouncer and settings.pgbouncer and settings.pgbouncer_port:
        ports.append(("pgbouncer", settings.pgbouncer_port))
    if squid and settings.squid_port:
        ports.append(("squid", settings.squid_port))
    return ports


def reach_line(settings, chosen: EngineHost) -> str:
    """Where the published ports are reachable from here. Pure."""
    ports = published_ports(settings, squid=True)
    listed = ", ".join(f"{what} {port}" for what, port in ports)
    if not chosen.is_remote:
        return f"ports on {settings.bind_address}: {listed}"
    loopback = settings.bind_address in ("127.0.0.1", "::1")
    where = f"{chosen.ssh.host}'s {'loopback' if loopback else settings.bind_address}"
    return (f"engine {chosen.url}; ports on {where}: {listed}"
            + ("; `inv forward` brings them to this machine's 127.0.0.1" if loopback else ""))


def _say(line: str) -> None:
    print(line, flush=True)


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def hold_forwards(address: SshAddress, ports: list[tuple[str, int]], say=_say) -> None:
    """Run `ssh -N -L ...` until Ctrl-C; one line if it cannot, or when the link drops."""
    import signal
    import time

    def stop(signum, frame):
        raise KeyboardInterrupt

    # A closed terminal or a kill ends the forwards too, not only Ctrl-C:
    # no ssh is left behind holding the ports.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    process = subprocess.Popen(forward_argv(address, [port for _, port in ports]), stdin=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        # ssh ends at once when a forward cannot be set up (ExitOnForwardFailure).
        while process.poll() is None and not all(_listening(port) for _, port in ports):
            if time.monotonic() > deadline:
                raise AtelierError(f"the forwards to {address} did not open within 20s")
            time.sleep(0.1)
        if process.poll() is None:
            for what, port in ports:
                say(f"{what}: 127.0.0.1:{port} here -> 127.0.0.1:{port} on {address}"
                    + (f"  (http://127.0.0.1:{port}/)" if what == "http" else ""))
            say("forwarding; Ctrl-C stops")
            process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        return
    finally:
        if process.poll() is None:
            process.kill()
    raise AtelierError(f"cannot forward to {address}: {_last_line(process.stderr.read())}")
