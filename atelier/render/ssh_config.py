"""An OpenSSH config for the environment, so that plain `ssh <container>`,
tmux panes and VS Code's Remote-SSH go the way `inv run` goes: HAProxy on
the host, an init container as jump host, then the container; atelier's key,
host keys pinned in atelier's known_hosts, and one master connection per
host kept open for the next command."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.core.state import known_hosts_path, recorded_keys, write_file


def entry_alias(project: str) -> str:
    return f"atelier-{project}-entry"


def control_path(state_dir: Path) -> str:
    """Unix sockets take paths of at most 107 bytes: the state folder when
    it is short enough, else /tmp (per user). %C is a 40-character hash, and
    ssh first binds the path plus a dot and 16 random characters, then
    renames it: a path that fits only without those fails every master."""
    if len(str(state_dir)) + len("/cm-") + 40 + 17 <= 107:
        return f"{state_dir}/cm-%C"
    return f"/tmp/atelier-{os.getuid()}-%C"


def ssh_config_text(env: Environment, names: list[str], engine=None) -> str:
    """On a remote engine (`engine`, an EngineHost) HAProxy is reached
    through the engine host: a ProxyCommand, not ProxyJump, since a jump
    host is looked up in this file when it is given with -F, and the
    engine host's own entry in ~/.ssh/config must apply."""
    settings = env.settings
    host, port = settings.entry_address
    entry = entry_alias(env.project)
    model = {c.name: c for c in env.containers}
    lines = [f"# Written by atelier for project {env.project}; `inv ssh-config` writes it again.",
             f"# Use it with `ssh -F {settings.state_dir / 'ssh_config'} <container>`, or add to ~/.ssh/config:",
             f"#   Include {settings.state_dir / 'ssh_config'}",
             "",
             f"Host {entry}",
             f"    HostName {host}",
             f"    Port {port}",
             "    User atelier",
             f"    HostKeyAlias [{host}]:{port}",
             *([f"    ProxyCommand ssh -W %h:%p {shlex.join(engine.ssh.args)}"]
               if engine and engine.is_remote else []),
             ""]
    for name in names:
        if name in model:
            # Your agent, forwarded: git push to your fork works in the container
            # while the key stays on this host.
            lines += [f"Host {name}", f"    User {model[name].login_user}", f"    ProxyJump {entry}",
                      "    ForwardAgent yes", ""]
    lines += [f"Host {entry} {' '.join(n for n in names if n in model)}".rstrip(),
              f"    IdentityFile {settings.keys.client_key_path}",
              "    IdentitiesOnly yes",
              f"    UserKnownHostsFile {known_hosts_path(settings)}",
              "    StrictHostKeyChecking yes",
              "    ControlMaster auto",
              f"    ControlPath {control_path(settings.state_dir)}",
              "    ControlPersist 10m",
              "    ServerAliveInterval 30",
              ""]
    return "\n".join(lines)


def ssh_config_path(env: Environment) -> Path:
    return env.settings.state_dir / "ssh_config"


def write_ssh_config(env: Environment, engine=None) -> Path:
    """Write the config for every container whose host key is recorded
    (whichever selection it belongs to); `engine`: the EngineHost, when the
    engine is on another machine."""
    path = ssh_config_path(env)
    everything = Environment(env.settings, select("full"))
    write_file(path, ssh_config_text(everything, list(recorded_keys(env.settings)), engine), 0o600)
    return path


def vscode_lines(env: Environment, names: list[str], config: Path) -> list[str]:
    """What VS Code's Remote-SSH needs for each server: its host name in the
    generated config, the folder to open, and the command that opens it."""
    servers = [c for c in env.containers if c.name in names and c.is_server]
    if not servers:
        raise AtelierError(f"{', '.join(names)}: no server among them; VS Code's configs are in the "
                           "servers' ~/workspace (<os>-pg<N>-active, -standby, -standalone)")
    rows = []
    for server in servers:
        folder = f"{server.image.build.home}/workspace"
        rows.append((server.name, folder, f"code --remote ssh-remote+{server.name} {folder}"))
    lines = [f"Remote-SSH reads ~/.ssh/config: add `Include {config}` at its top "
             f"(or set remote.SSH.configFile to {config})"]
    if len(rows) == 1:
        name, folder, command = rows[0]
        lines += [f"host:   {name}", f"folder: {folder}", f"open:   {command}"]
    else:
        width = max(len(r[0]) for r in rows)
        lines += [f"{name:<{width}}  {command}" for name, _, command in rows]
    return lines
