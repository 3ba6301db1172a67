"""SSH keys of one environment, kept in its state folder (owner-only):
the client key atelier logs in with, and the host key the init containers
share behind HAProxy (one identity for the SSH entry, like a pool of bastions).
Only public keys and the bastion host key go into containers, at start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Keys:
    client_key_path: Path
    client_public: str  # "ssh-ed25519 AAAA... atelier-<project>"
    bastion_private: str  # OpenSSH private key text
    bastion_public: str  # "ssh-ed25519 AAAA..."


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _ensure_pair(private: Path, comment: str) -> str:
    public = private.with_name(private.name + ".pub")
    if not (private.exists() and public.exists()):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        _write_private(private, key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.OpenSSH,
                                                  serialization.NoEncryption()))
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()
        public.write_text(f"{line} {comment}\n")
    return public.read_text().strip()


def ensure_keys(state_dir: Path, project: str) -> Keys:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    client = state_dir / "id_ed25519"
    bastion = state_dir / "bastion_host_ed25519_key"
    client_public = _ensure_pair(client, f"atelier-{project}")
    bastion_public = _ensure_pair(bastion, f"atelier-{project}-bastion")
    return Keys(client, client_public, bastion.read_text(), " ".join(bastion_public.split()[:2]))
