"""A real OpenSSH server on this machine, standing in for a remote engine
host: the tests and benchmarks of the ssh:// engine use it. It runs as its
own process with its own config, host key and authorized key, on one
address and three ports:

- `open`: a user's ordinary engine host;
- `noforward`: sshd with AllowTcpForwarding no;
- `nodocker`: a login whose PATH has no docker CLI;
- `nosocket`: sshd with AllowStreamLocalForwarding no (atelier then falls
  back to the SDK's own ssh mode)."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
ROOT = Path(__file__).resolve().parents[2]
CLIENT_IMAGE = "atelier-test-client"
CLIENT_DOCKERFILE = """FROM atelier-base:debian12
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv openssh-client \\
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/atelier && ln -s /opt/atelier/bin/atelier /usr/local/bin/atelier
CMD ["sleep", "infinity"]
"""
INSTALL = "chmod 700 /root/.ssh && /opt/atelier/bin/pip install -q --no-index --find-links /wheels atelier"


@dataclass
class EngineSshd:
    folder: Path
    address: str
    ports: dict
    process: subprocess.Popen
    client_key: Path  # the private key authorized to log in as root
    known_hosts_line: str  # the host key, as a known_hosts line for every port

    def url(self, which: str = "open") -> str:
        return f"ssh://root@{self.address}:{self.ports[which]}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)


def available() -> str:
    """Why an engine host cannot be stood up here, or ''."""
    if not Path(SSHD).exists():
        return f"{SSHD} is missing (.ci/setup installs openssh-server)"
    if os.geteuid() != 0:
        return "sshd logs in as root here and must run as root"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen is missing"
    return ""


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def start(folder: Path, address: str) -> EngineSshd:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("host_ed25519", "client_ed25519"):
        if not (folder / name).exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)],
                           check=True)
    (folder / "authorized_keys").write_text((folder / "client_ed25519.pub").read_text())
    ports = {name: _free_port(address) for name in ("open", "noforward", "nodocker", "nosocket")}
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    config = "\n".join([
        *(f"ListenAddress {address}:{port}" for port in ports.values()),
        f"HostKey {folder / 'host_ed25519'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        f"PidFile {folder / 'sshd.pid'}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "MaxSessions 64",
        "MaxStartups 64:30:128",
        f"Match LocalPort {ports['noforward']}",
        "    AllowTcpForwarding no",
        f"Match LocalPort {ports['nosocket']}",
        "    AllowStreamLocalForwarding no",
        f"Match LocalPort {ports['nodocker']}",
        "    ForceCommand /bin/sh -c 'PATH=/nonexistent; eval \"$SSH_ORIGINAL_COMMAND\"'",
        ""])
    (folder / "sshd_config").write_text(config)
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
                               stdout=subprocess.DEVNULL, stderr=open(folder / "sshd.log", "w"))
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((address, ports["open"]), timeout=1) as s:
                if s.recv(8).startswith(b"SSH-"):
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not start: {(folder / 'sshd.log').read_text()[-500:]}")
        time.sleep(0.1)
    host_key = (folder / "host_ed25519.pub").read_text().split()
    names = ",".join(f"[{address}]:{port}" for port in ports.values())
    return EngineSshd(folder, address, ports, process, folder / "client_ed25519",
                      f"{names} {host_key[0]} {host_key[1]}\n")


def client_files(sshd: EngineSshd) -> dict[str, tuple[bytes, int]]:
    """~/.ssh of a client that may log in to the engine host: its key and
    the engine host's key in known_hosts (so nothing is asked)."""
    return {".ssh/id_ed25519": (sshd.client_key.read_bytes(), 0o600),
            ".ssh/known_hosts": (sshd.known_hosts_line.encode(), 0o644)}


def tar_of(files: dict[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def client_image_and_files(client, sshd: EngineSshd, folder: Path) -> bytes:
    """Build the client image (Debian 12, Python, OpenSSH's client; no
    docker) and return what goes into a client container before INSTALL:
    the wheels of atelier (this checkout) and its dependencies, and root's
    ~/.ssh."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(folder),
                    str(ROOT)], check=True, capture_output=True)
    client.images.build(fileobj=io.BytesIO(CLIENT_DOCKERFILE.encode()), tag=CLIENT_IMAGE, rm=True)
    files = {f"root/{path}": item for path, item in client_files(sshd).items()}
    files.update({f"wheels/{w.name}": (w.read_bytes(), 0o644) for w in folder.glob("*.whl")})
    files["root/work/.keep"] = (b"", 0o644)
    return tar_of(files)
