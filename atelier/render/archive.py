"""Files as data, packed or written: a deterministic tar for the engine, or a
folder tree for review (`inv render`)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

File = tuple[bytes, int]  # content, mode


def tar_bytes(files: dict[str, File], folders: bool = True) -> bytes:
    """A deterministic tar (sorted, zero times and owners) of path -> (content, mode).

    Parent folders get entries of their own, as in a tar of a real folder:
    the builder's COPY checksum counts them, so with them `inv build` and a
    plain `docker build` of `inv render` output share one layer cache.
    Without `folders`, extracting it leaves existing folders' owners alone."""
    folders = {"/".join(path.split("/")[:i]) for path in files
               for i in range(1, path.count("/") + 1)} if folders else set()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(folders | set(files)):
            info = tarfile.TarInfo(path)
            info.mtime = 0
            if path in folders:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                content, info.mode = files[path]
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def write_tree(files: dict[str, File], out_dir: Path) -> None:
    for path, (content, mode) in files.items():
        target = out_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)


def folder_files(folder: Path, prefix: str) -> dict[str, File]:
    """Every file under a host folder, by its path under `prefix`, with its mode."""
    out: dict[str, File] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            out[f"{prefix}/{rel}"] = (path.read_bytes(), 0o755 if path.stat().st_mode & 0o111 else 0o644)
    return out
