"""Commands and files in containers, over SSH through HAProxy: run, shell, put, get."""

from __future__ import annotations

import os
import sys

from atelier.core.errors import AtelierError
from atelier.render.ssh_config import vscode_lines, write_ssh_config
from atelier.ssh.fanout import fan_out, run_on
from atelier.ssh.targets import LOCAL, command_after_dashes, remote_command

from .common import TARGET_HELP, USER_HELP, atelier_task, engine_of, finish, selected_environment, targets
from .common import session as open_session


@atelier_task(help={"target": TARGET_HELP, "user": USER_HELP,
                    "cmd": "the command (or give it after --: inv run -t X -- psql -c 'select 1')",
                    "agent": "forward your SSH agent (git push with your own key; it stays on this host)"})
def run(c, target=None, user=None, cmd=None, agent=False):
    """Run a command in one container or many at once; output prefixed by container."""
    command = cmd or remote_command(command_after_dashes(sys.argv))
    if not command:
        raise AtelierError("no command: give it after -- (inv run -t X -- hostname) or with --cmd")
    with open_session(c, forward_agent=agent) as session:
        finish(run_on(session, targets(session, target), command, user))


@atelier_task(help={"target": "one container name", "user": USER_HELP,
                    "no_agent": "do not forward your SSH agent"})
def shell(c, target=None, user=None, no_agent=False):
    """An interactive login shell in a container, your SSH agent forwarded (a pty over the same SSH path)."""
    with open_session(c, forward_agent=not no_agent) as session:
        names = targets(session, target)
        if len(names) != 1:
            raise AtelierError(f"shell takes one container; {target!r} matches {', '.join(names)}")
        name = names[0]
        connection = session.context(name, user or session.user_for(name))
        if hasattr(connection, "shell"):
            connection.shell()
        else:
            connection.run("bash --login", pty=True, warn=True)


@atelier_task(help={"target": TARGET_HELP, "user": USER_HELP, "local": "file on this host",
                    "remote": "path in the container(s) (default: the login user's home)"})
def put(c, local, remote="", target=None, user=None):
    """Copy a file from this host into one container or many."""
    _transfer(c, target, user, lambda ctx, name: ctx.put(local, remote or None))


@atelier_task(help={"target": TARGET_HELP, "user": USER_HELP, "remote": "path in the container(s)",
                    "local": "where to put it here; {name} is replaced by the container's name "
                             "(default: ./{name}/<file name>)"})
def get(c, remote, local="", target=None, user=None):
    """Copy a file from one container or many to this host."""
    def fetch(ctx, name):
        path = (local or os.path.join("{name}", os.path.basename(remote))).replace("{name}", name)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        ctx.get(remote, path)

    _transfer(c, target, user, fetch)


def _transfer(c, target, user, action) -> None:
    with open_session(c) as session:
        names = targets(session, target)
        if LOCAL in names:
            raise AtelierError("put/get copy between this host and containers; `local` is not one")
        finish(fan_out(session, names, lambda ctx, **streams: action(ctx, ctx.host), user))


@atelier_task(name="ssh-config")
def ssh_config(c):
    """Write .state/<project>/ssh_config (plain ssh, tmux, VS Code) and print the Include line for ~/.ssh/config."""
    path = write_ssh_config(selected_environment(c, "full"), engine_of(c).entry_host)
    print(f"wrote {path}; add this line at the top of ~/.ssh/config to use it everywhere:")
    print(f"Include {path}")


@atelier_task(help={"target": TARGET_HELP})
def vscode(c, target=None):
    """How to open a server's ~/workspace in VS Code over Remote-SSH (host, folder, `code` command)."""
    with open_session(c) as current:
        names = targets(current, target)
    path = write_ssh_config(current.matrix, current.engine.entry_host)
    print("\n".join(vscode_lines(current.matrix, names, path)))
