"""The SSH path's speed (run with the images of the debian profile built):
- one command's round trip from a fresh `inv run` process, against OpenSSH
  over the same path (ProxyJump through HAProxy and an init container, the
  same key and pinned known_hosts) (aim: within 2x);
- one command on an already open connection;
- one command fanned out to 4 targets against 1 target, fresh processes
  (aim: under 1.5x)."""

import tempfile
import time
from pathlib import Path

from common import BENCH_ENV, alternate, compare, report, timed

from atelier.ssh.session import Session
from atelier.core.state import known_hosts_path
from atelier.core.settings import load_settings

RUNS = 10
TARGET = "debian12-pg15-active"
FOUR = "debian12-pg15-active,debian12-pg15-standby,debian13-pg17-active,debian13-pg17-standby"

timed(["inv", "build", "--profile", "debian"])
timed(["inv", "up", "--profile", "debian"])
settings = load_settings(environ=BENCH_ENV)

config = Path(tempfile.mkdtemp()) / "ssh_config"
config.write_text(f"""\
Host atelier-entry
    HostName 127.0.0.1
    Port {settings.ssh_port}
    User atelier
Host {TARGET}
    User postgres
    ProxyJump atelier-entry
Host *
    IdentityFile {settings.keys.client_key_path}
    IdentitiesOnly yes
    UserKnownHostsFile {known_hosts_path(settings)}
    StrictHostKeyChecking yes
    BatchMode yes
""")

timed(["inv", "run", "-t", TARGET, "--", "hostname"])
timed(["ssh", "-F", str(config), TARGET, "hostname"])
inv_one, openssh = alternate(lambda: timed(["inv", "run", "-t", TARGET, "--", "hostname"]),
                             lambda: timed(["ssh", "-F", str(config), TARGET, "hostname"]), RUNS)
inv_four, inv_one_again = alternate(lambda: timed(["inv", "run", "-t", FOUR, "--", "hostname"]),
                                    lambda: timed(["inv", "run", "-t", TARGET, "--", "hostname"]), RUNS)

session = Session(settings)
connection = session.context(TARGET, "postgres")
connection.run("hostname", hide=True)
open_runs = []
for _ in range(20):
    started = time.perf_counter()
    connection.run("hostname", hide=True)
    open_runs.append(time.perf_counter() - started)
session.close()
timed(["inv", "down", "--volumes", "--yes"])

compare("inv run, 1 target, fresh process", inv_one, "OpenSSH ssh -J, same path, fresh process", openssh,
        "< 1.3")
report("command on an open connection", open_runs)
compare("inv run, 4 targets, fresh process", inv_four, "inv run, 1 target, fresh process", inv_one_again,
        "< 1.5")
