"""One Docker engine of a run: where it is (host.py) and one SDK client to
it, made on first use and shared by everything the run does. Tasks make it
once (tasks/common.engine_of) and hand it down; nothing keeps it in a
process global."""

from __future__ import annotations

import os
import sys
import threading
import warnings

from atelier.core.errors import AtelierError
from atelier.core.model import PROJECT_LABEL
from atelier.core.parallel import parallel_map
from atelier.engine import host as engine_host
from atelier.engine.host import EngineHost


def import_docker(remote: bool = False):
    """docker-py, without what it imports but never uses here:
    - paramiko, for its ssh:// transport: 0.14 s of every command. docker-py
      treats it as optional; it is left out unless the engine is ssh://
      (Fabric imports it when needed).
    - requests' character detection (charset_normalizer or chardet), for
      guessing the encoding of undeclared text: 0.03-0.06 s. The engine
      answers JSON, and requests falls back to UTF-8 without it.
    Nodes connect in parallel threads: one imports, the others wait."""
    with _IMPORTING:
        return _import_docker(remote)


_IMPORTING = threading.Lock()


def _import_docker(remote: bool):
    if "docker" in sys.modules:
        return sys.modules["docker"]
    left_out = ["charset_normalizer", "chardet"]
    if "paramiko" not in sys.modules and not remote:
        left_out.append("paramiko")
    left_out = [name for name in left_out if name not in sys.modules]
    for name in left_out:
        sys.modules[name] = None  # makes `import name` raise ImportError
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*character detection dependency")
            import docker
    finally:
        for name in left_out:
            del sys.modules[name]
    return docker


def connect(chosen: EngineHost):
    """A Docker client for the engine `chosen`, or one line saying that no
    engine answers, and why where it can tell."""
    docker = import_docker(chosen.is_remote)
    try:
        forwarded = ""
        if chosen.is_remote:
            # The user's OpenSSH, not paramiko: their ssh_config, ProxyJump,
            # agent and known_hosts apply, and a connect timeout with them.
            # The engine's socket, forwarded through the master: each API
            # connection is a channel, not an ssh process and a docker CLI
            # started on the engine host (0.1 s each, tens per `up`).
            forwarded = engine_host.engine_socket(chosen.ssh)
            if not forwarded:
                engine_host.sdk_ssh_on_path()
                _tolerate_ended_exec_streams()
        if forwarded:
            client = docker.DockerClient(base_url=f"unix://{forwarded}", timeout=120)
        elif chosen.source in ("DOCKER_HOST", "default"):  # with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH
            client = docker.from_env(timeout=120, use_ssh_client=chosen.is_remote)
        else:
            client = docker.DockerClient(base_url=chosen.url, timeout=120, use_ssh_client=chosen.is_remote,
                                         tls=_context_tls(chosen))
        client.ping()
    except Exception as exc:  # the SDK's own errors, and requests' when the transport fails
        if chosen.is_remote:
            engine_host.check_reachable(chosen.ssh)  # says what is wrong with the host, if it can
        raise AtelierError(
            f"no Docker engine answers at {chosen.describe()}: start one (`sudo systemctl start docker`, "
            f"or `.ci/start-engine`) or set DOCKER_HOST ({type(exc).__name__})"
        ) from None
    return client


def _tolerate_ended_exec_streams() -> None:
    """docker-py#3218 (open): over `use_ssh_client`, an exec's stream ends
    the remote `docker system dial-stdio`, and the SDK then fails closing
    the connection (it writes to the finished ssh's stdin) after it has read
    the whole output. Closing a finished ssh is made a no-op, so exec_run
    returns what it read; the process is still reaped."""
    from docker.transport import sshconn

    close = sshconn.SSHSocket.close
    if getattr(close, "atelier_tolerant", False):
        return

    def tolerant_close(sock):
        try:
            close(sock)
        except (BrokenPipeError, ConnectionResetError):
            sock.proc.kill()
            sock.proc.wait()

    tolerant_close.atelier_tolerant = True
    sshconn.SSHSocket.close = tolerant_close


def _context_tls(chosen: EngineHost):
    """A docker context's TLS settings, where it has them."""
    if not chosen.source.startswith("docker context "):
        return False
    from docker.context import ContextAPI

    context = ContextAPI.get_context(chosen.source.removeprefix("docker context "))
    return (context.TLSConfig if context else None) or False


class Engine:
    """The engine a run drives: `host` says where it is; `client` is the one
    SDK client to it, connected on first use (so a task that never needs
    the engine never imports the SDK).

    With ATELIER_NODES, `nodes` holds an Engine per node of the swarm, in
    the order given: the containers run there, and this engine builds the
    images they are streamed from. Everything that finds containers looks
    on every node; a container object talks to its own node's engine."""

    def __init__(self, chosen: EngineHost, client=None, nodes: dict[str, Engine] | None = None):
        self.host = chosen
        self._client = client
        self._info: dict | None = None
        self.nodes: dict[str, Engine] = dict(nodes or {})

    @classmethod
    def chosen(cls, docker_host_setting: str = "", environ: dict | None = None, nodes: tuple = ()) -> Engine:
        """The engine DOCKER_HOST, a docker context, ATELIER_DOCKER_HOST
        (`docker_host_setting`) or the local socket names, in that order;
        and the engines of `nodes` ((name, URL) pairs), when given."""
        environ = dict(os.environ if environ is None else environ)
        return cls(engine_host.choose(environ, engine_host.docker_context(environ), docker_host_setting),
                   nodes={name: cls(EngineHost(url, f"ATELIER_NODES, node {name}")) for name, url in nodes})

    @property
    def entry_host(self) -> EngineHost:
        """Where the published ports are: the first node's engine host, else this one's."""
        return next(iter(self.nodes.values())).host if self.nodes else self.host

    @property
    def runners(self) -> dict[str, Engine]:
        """Node name -> engine, for every engine that runs containers ("" when there is one)."""
        return self.nodes or {"": self}

    @property
    def client(self):
        if self._client is None:
            self._client = connect(self.host)
        return self._client

    @property
    def is_remote(self) -> bool:
        return self.host.is_remote

    def info(self) -> dict:
        """The engine's info, asked once per run."""
        if self._info is None:
            self._info = self.client.info()
        return self._info

    def _listed(self, labels: list[str]) -> list:
        """The containers with `labels` on every engine that runs them; each
        carries its node's name as `atelier_node`."""
        def listed(item):
            node, engine = item
            found = engine.client.containers.list(all=True, filters={"label": labels})
            for container in found:
                container.atelier_node = node
            return found

        runners = list(self.runners.items())
        lists = parallel_map(listed, runners) if len(runners) > 1 else [listed(runners[0])]
        return [c for found in lists for c in found]

    def project_containers(self, project: str) -> dict:
        """atelier name -> container object, for every container of the project."""
        return {c.labels.get("atelier.name", c.name): c for c in self._listed([f"{PROJECT_LABEL}={project}"])}

    def container(self, project: str, name: str):
        """The container of the project named `name` (the model's name), or None."""
        found = self._listed([f"{PROJECT_LABEL}={project}", f"atelier.name={name}"])
        return found[0] if found else None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        for node in self.nodes.values():
            node.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
