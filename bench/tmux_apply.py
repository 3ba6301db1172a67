"""atelier's tmux reconcile as a whole process, for bench/tmux.py: read a
tmuxp-style layout file (session, windows, panes' commands), make or
reconcile that session on the default tmux server (TMUX_TMPDIR chooses it),
print the attach command. The counterpart of the original's tmux-session.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from atelier.tmux.session import attach_command, reconcile, tmux_server  # noqa: E402
from atelier.tmux.plan import Layout, PaneSpec  # noqa: E402


def layout_from(path: str) -> tuple[str, Layout]:
    config = yaml.safe_load(Path(path).read_text())
    windows = tuple((w["name"], tuple(PaneSpec(f"{w['name']}-{i}", p["command"]) for i, p in enumerate(w["panes"])))
                    for w in config["windows"])
    return config["session"], Layout(windows)


if __name__ == "__main__":
    session, layout = layout_from(sys.argv[1])
    server = tmux_server()
    reconcile(server, session, layout)
    print(" ".join(attach_command(server, session)))
