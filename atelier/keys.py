"""SSH keys of one environment, kept in its state folder (owner-only):
the client key atelier logs in with, and the host key the init containers
share behind HAProxy (one identity for the SSH entry, like a pool of bastions).
Only public keys and the bastion host key go into containers, at start."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .state import create_once, ensure_dir, write_file


@dataclass(frozen=True)
class Keys:
    client_key_path: Path
    client_public: str  # "ssh-ed25519 AAAA... atelier-<project>"
    bastion_private: str  # OpenSSH private key text
    bastion_public: str  # "ssh-ed25519 AAAA..."


def _public_of(private: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def _ensure_pair(private: Path, comment: str) -> str:
    """The private key is made once (exclusive create); the public key is
    always derived from whichever private key is on disk, so they match."""
    public = private.with_name(private.name + ".pub")
    if not private.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        create_once(private, Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    if not public.exists():
        write_file(public, f"{_public_of(private)} {comment}\n", 0o644)
    return public.read_text().strip()


def ensure_keys(state_dir: Path, project: str) -> Keys:
    ensure_dir(state_dir)
    client = state_dir / "id_ed25519"
    bastion = state_dir / "bastion_host_ed25519_key"
    client_public = _ensure_pair(client, f"atelier-{project}")
    bastion_public = _ensure_pair(bastion, f"atelier-{project}-bastion")
    return Keys(client, client_public, bastion.read_text(), " ".join(bastion_public.split()[:2]))
