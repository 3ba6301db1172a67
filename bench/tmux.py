"""tmux: atelier's reconcile against the original's tmux-session.py, on the
same 60-pane layout (4 windows of 6, 18, 18 and 18 panes running a plain
shell; ../shared/bench/tmux-layout60.yml), each on a tmux server of its own.

- in process: the layout from nothing (aim < 0.4 s), and a reconcile with
  nothing changed (aim < 0.1 s);
- whole processes, in turns (A B A B ...): from nothing, and a reload with
  nothing changed, against the original script when its path is given:
  python3 bench/tmux.py [--original PATH/tmux-session.py]
  (the original calls `docker compose ps`; a stub that lists no service
  stands in for it, which only makes the original faster);
- with --containers (the debian profile's images built): `inv tmux
  --no-attach` with no session until every pane shows its prompt, and
  `ssh <container> true` through the generated config with its master
  connection warm, against a cold `inv run -t <container> -- true`.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, alternate, compare, report

sys.path.insert(0, str(ROOT / "bench"))
from tmux_apply import layout_from  # noqa: E402

from atelier.tmux.session import reconcile  # noqa: E402

LAYOUT = ROOT.parent / "shared" / "bench" / "tmux-layout60.yml"
RUNS = 7


def fresh_server():
    """A tmux server of its own: its own TMUX_TMPDIR, the default socket there."""
    folder = tempfile.mkdtemp(prefix="atelier-tmux-bench-")
    return folder, {**os.environ, "TMUX_TMPDIR": folder}


def stop(environ):
    subprocess.run(["tmux", "kill-server"], env=environ, capture_output=True)
    shutil.rmtree(environ["TMUX_TMPDIR"], ignore_errors=True)


def in_process():
    import libtmux

    session, layout = layout_from(str(LAYOUT))
    cold, warm = [], []
    for _ in range(RUNS):
        folder, environ = fresh_server()
        server = libtmux.Server(socket_path=f"{folder}/atelier-bench")
        started = time.perf_counter()
        reconcile(server, session, layout)
        cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        steps = reconcile(server, session, layout)
        warm.append(time.perf_counter() - started)
        assert steps.empty
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)
    report("in process, 60 panes from nothing", cold, "< 0.4 s")
    report("in process, reconcile with nothing changed", warm, "< 0.1 s")


def whole(command, environ) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=environ, check=True, capture_output=True)
    return time.perf_counter() - started


def whole_processes(original: str | None):
    ours = [sys.executable, str(ROOT / "bench" / "tmux_apply.py"), str(LAYOUT)]
    stub = Path(tempfile.mkdtemp(prefix="atelier-docker-stub-"))
    (stub / "docker").write_text("#!/bin/sh\nexit 0\n")
    (stub / "docker").chmod(0o755)
    theirs = [sys.executable, original, str(LAYOUT), "anchor"] if original else None

    def cold(command, extra=None):
        _, environ = fresh_server()
        environ.update(extra or {})
        seconds = whole(command, environ)
        stop(environ)
        return seconds

    def warm(command, extra=None):
        _, environ = fresh_server()
        environ.update(extra or {})
        whole(command, environ)
        seconds = whole(command, environ)
        stop(environ)
        return seconds

    theirs_env = {"TMUX_DETACH": "1", "PATH": f"{stub}{os.pathsep}{os.environ['PATH']}"}
    if theirs:
        a, b = alternate(lambda: cold(ours), lambda: cold(theirs, theirs_env), RUNS)
        compare("atelier, whole process, from nothing", a, "original tmux-session.py, from nothing", b)
        a, b = alternate(lambda: warm(ours), lambda: warm(theirs, theirs_env), RUNS)
        compare("atelier, whole process, nothing changed", a, "original tmux-session.py, nothing changed", b)
    else:
        report("atelier, whole process, from nothing", [cold(ours) for _ in range(RUNS)])
        report("atelier, whole process, nothing changed", [warm(ours) for _ in range(RUNS)])
    shutil.rmtree(stub, ignore_errors=True)


def with_containers():
    import libtmux

    from common import BENCH_ENV, env, timed

    from atelier.core.settings import load_settings
    from atelier.tmux.session import wait_for_prompts

    socket = f"atelierbench-{os.getpid()}"
    environ = {**env(), "ATELIER_TMUX_SOCKET": socket}
    subprocess.run(["inv", "build", "--profile", "debian"], cwd=ROOT, env=environ, check=True, capture_output=True)
    subprocess.run(["inv", "up", "--profile", "debian"], cwd=ROOT, env=environ, check=True, capture_output=True)
    server = libtmux.Server(socket_name=socket)
    try:
        runs = []
        for _ in range(3):
            if server.is_alive():
                server.kill()
            started = time.perf_counter()
            subprocess.run(["inv", "tmux", "--no-attach"], cwd=ROOT, env=environ, check=True, capture_output=True)
            wait_for_prompts(server, BENCH_ENV["ATELIER_PROJECT"], "@d1", timeout=120)
            runs.append(time.perf_counter() - started)
        report("inv tmux --no-attach, debian profile, no session, until every pane's prompt", runs)
        config = str(load_settings(environ=BENCH_ENV).state_dir / "ssh_config")
        target = "debian12-pg15-active"
        timed(["ssh", "-F", config, target, "true"])  # the master connection starts
        warm, cold = alternate(lambda: timed(["ssh", "-F", config, target, "true"]),
                               lambda: timed(["inv", "run", "-t", target, "--", "true"]), RUNS)
        compare("ssh through ssh_config, master warm", warm, "inv run, fresh process", cold)
    finally:
        if server.is_alive():
            server.kill()
        subprocess.run(["inv", "down", "--volumes", "--yes"], cwd=ROOT, env=environ, capture_output=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original", help="path of the original's tmux-session.py")
    parser.add_argument("--containers", action="store_true", help="also time inv tmux and ssh with containers")
    arguments = parser.parse_args()
    in_process()
    whole_processes(arguments.original)
    if arguments.containers:
        with_containers()
