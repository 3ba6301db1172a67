"""State atelier keeps on the host, in `.state/<project>/` (owner-only):
generated passwords, SSH keys, known_hosts, facts of the engine, and the
project lock. This module is the only one that writes there.

Every file is written whole or not at all (a temporary file, then a rename),
so an interrupted or concurrent run never leaves half a file; files that must
be made once (a key) are made with an exclusive link, so two first runs
cannot each make their own."""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from atelier.core.errors import AtelierError

LOCK_FILE = "lock"


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise AtelierError(f"cannot make the state folder {path}: {exc.strerror}") from None
    return path


def _temporary(path: Path, data: bytes, mode: int) -> Path:
    ensure_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise AtelierError(f"cannot write {path}: {exc.strerror or exc}") from None
    return temporary


def write_file(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Replace `path` with `data` in one step: readers see the old or the new file."""
    if isinstance(data, str):
        data = data.encode()
    temporary = _temporary(path, data, mode)
    try:
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise AtelierError(f"cannot write {path}: {exc.strerror or exc}") from None


def create_once(path: Path, data: bytes | str, mode: int = 0o600) -> bool:
    """Make `path` with `data` unless it exists; True if this call made it.
    Of two processes racing, exactly one wins and both then read its file."""
    if isinstance(data, str):
        data = data.encode()
    temporary = _temporary(path, data, mode)
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise AtelierError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def short_lock(state_dir: Path, name: str):
    """A lock held for a read-modify-write of one state file (milliseconds)."""
    fd = os.open(ensure_dir(state_dir) / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def project_lock(state_dir: Path, what: str, timeout: float = 600.0, say=print):
    """The project's lock, held by every task that changes the environment
    (build, up, down, reseed). A second run says what it waits for, and gives
    up after `timeout` seconds with one line. The kernel frees the lock when
    its holder exits, however it exits."""
    path = ensure_dir(state_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if time.monotonic() >= deadline:
                    raise AtelierError(f"gave up after {timeout:.0f}s waiting for {holder} to finish "
                                       f"(lock {path}); try again when it is done") from None
                if not told:
                    say(f"waiting for {holder} to finish (lock {path})")
                    told = True
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        pid, _, what = path.read_text().strip().partition(" ")
    except OSError:
        return "another atelier command"
    return f"`inv {what}` (pid {pid})" if pid else "another atelier command"


# ---- generated passwords ---------------------------------------------------------------

def ensure_secrets(state_dir: Path, given: dict[str, str], keys: tuple[str, ...]) -> dict[str, str]:
    """Each of `keys` from `given`, else the kept value, else a new one, kept
    for next time. Under a lock, so two first runs agree on one value."""
    from dotenv import dotenv_values

    if all(given.get(k) for k in keys):
        return {k: given[k] for k in keys}
    path = state_dir / "secrets.env"
    with short_lock(state_dir, "secrets"):
        kept = {k: v for k, v in dotenv_values(path, interpolate=False).items() if v} if path.exists() else {}
        missing = {k: secrets.token_urlsafe(18) for k in keys if k not in kept}
        if missing:
            kept.update(missing)
            text = "".join(f"{k}='{v}'\n" for k, v in sorted(kept.items()))
            write_file(path, "# generated by atelier on first use; keep out of git\n" + text)
    return {k: given.get(k) or kept[k] for k in keys}


# ---- SSH keys ----------------------------------------------------------------------------
# The client key atelier logs in with, and the host key the init containers
# share behind HAProxy (one identity for the SSH entry, like a pool of
# bastions). Only public keys and the bastion host key go into containers.

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


# ---- known hosts -----------------------------------------------------------------------
# Every container's host key, read through the engine (a trusted channel) and
# recorded here; connections accept no other.

class Reachable(Protocol):
    """What known_hosts needs of the settings (settings.Settings has it)."""

    state_dir: Path
    keys: Keys
    entry_address: tuple[str, int]


def known_hosts_path(settings: Reachable) -> Path:
    return settings.state_dir / "known_hosts"


def known_hosts_text(settings: Reachable, host_keys: dict[str, str]) -> str:
    """The SSH entry's (shared bastion) key, then each container's key by name."""
    host, port = settings.entry_address
    lines = [f"[{host}]:{port} {settings.keys.bastion_public}"]
    lines += [f"{name} ssh-ed25519 {key}" for name, key in host_keys.items()]
    return "\n".join(lines) + "\n"


def recorded_keys(settings: Reachable) -> dict[str, str]:
    """Container name -> host key, as recorded."""
    path = known_hosts_path(settings)
    if not path.exists():
        return {}
    return {words[0]: words[2] for words in (line.split() for line in path.read_text().splitlines())
            if len(words) >= 3 and not words[0].startswith(("[", "#"))}


def record_host_keys(settings: Reachable, host_keys: dict[str, str], keep=()) -> None:
    """Record `host_keys`, keeping the recorded keys of the names in `keep`."""
    with short_lock(settings.state_dir, "known_hosts"):
        kept = {n: k for n, k in recorded_keys(settings).items() if n in set(keep)}
        write_file(known_hosts_path(settings), known_hosts_text(settings, {**kept, **host_keys}))


# ---- the last selection ------------------------------------------------------------------

def remember_selection(state_dir: Path, options: dict) -> None:
    """The --profile/--os/--pg that the last successful `up` used."""
    import json

    write_file(state_dir / "selection.json", json.dumps(options, sort_keys=True) + "\n")


def last_selection(state_dir: Path) -> dict:
    import json

    try:
        options = json.loads((state_dir / "selection.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in options.items() if k in ("profile", "os", "pg") and isinstance(v, str)}


def remember_leaders(state_dir: Path, leaders: dict[str, str]) -> None:
    """Under Patroni: which member led each pair when `down` stopped it."""
    import json

    write_file(state_dir / "patroni-leaders.json", json.dumps({**last_leaders(state_dir), **leaders},
                                                               sort_keys=True) + "\n")


def forget_leaders(state_dir: Path) -> None:
    """With the volumes gone, the clusters are new: any member may lead."""
    (state_dir / "patroni-leaders.json").unlink(missing_ok=True)


def last_leaders(state_dir: Path) -> dict[str, str]:
    import json

    try:
        found = json.loads((state_dir / "patroni-leaders.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(found, dict) else {}


def pool_moves(state_dir: Path) -> dict[str, str]:
    """db.cutover: the pool's entries that point at another server than the
    model's (entry -> server), until --back."""
    import json

    try:
        found = json.loads((state_dir / "pool-moves.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(found, dict) else {}


def remember_pool_move(state_dir: Path, entry: str, server: str) -> None:
    import json

    write_file(state_dir / "pool-moves.json", json.dumps({**pool_moves(state_dir), entry: server},
                                                          sort_keys=True) + "\n")


def forget_pool_move(state_dir: Path, entry: str | None = None) -> None:
    """One entry back to the model's (or all of them, with the volumes gone)."""
    import json

    left = {k: v for k, v in pool_moves(state_dir).items() if entry is not None and k != entry}
    if left:
        write_file(state_dir / "pool-moves.json", json.dumps(left, sort_keys=True) + "\n")
    else:
        (state_dir / "pool-moves.json").unlink(missing_ok=True)


def placements(state_dir: Path) -> dict[str, str]:
    """ATELIER_NODES: the node each container was placed on (its volumes
    stay there after `down`), so that the next `up` places it there again."""
    import json

    try:
        found = json.loads((state_dir / "placement.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(found, dict) else {}


def remember_placements(state_dir: Path, placed: dict[str, str]) -> None:
    import json

    write_file(state_dir / "placement.json", json.dumps({**placements(state_dir), **placed}, sort_keys=True) + "\n")


def forget_placements(state_dir: Path) -> None:
    """With the volumes gone, nothing ties a container to a node."""
    (state_dir / "placement.json").unlink(missing_ok=True)
