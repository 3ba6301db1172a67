"""State atelier keeps on the host, in `.state/<project>/` (owner-only):
secrets, keys, known_hosts, the last engine facts, and the project lock.

Every file is written whole or not at all (a temporary file, then a rename),
so an interrupted or concurrent run never leaves half a file; files that must
be made once (a key) are made with an exclusive link, so two first runs
cannot each make their own."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import AtelierError

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
