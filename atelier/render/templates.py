"""What an image is built from: its Dockerfile and the files it copies, from
the model and the jinja2 templates. Pure: no side effects."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from atelier.render.archive import File
from atelier.core.matrix import OSES
from atelier.core.model import Image
from atelier.core.settings import Settings


def _data_folder(name: str) -> Path:
    """dockerfiles/ and files/ ship inside the package (pyproject maps them to
    atelier/dockerfiles and atelier/files); in a checkout they sit beside it."""
    from importlib.resources import files

    packaged = files("atelier") / name
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / name


TEMPLATES = _data_folder("dockerfiles")
FILES = _data_folder("files")

# Which folders of files/ each kind of image copies in (folder -> path in context).
IMAGE_FILES = {"init": ("common",), "pg": ("postgres", "home"), "service": ()}
SERVICE_FILES = {"prometheus": ("prometheus",)}


@lru_cache(maxsize=1)
def _jinja():
    import jinja2

    # Compiling the templates costs ~0.1 s per command; jinja2 keeps compiled
    # ones (checked against the template's mtime) in the user's cache folder.
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "atelier" / "jinja"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        bytecode_cache = jinja2.FileSystemBytecodeCache(str(cache))
    except OSError:
        bytecode_cache = None
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(TEMPLATES), str(FILES)]),
        bytecode_cache=bytecode_cache,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )


def render_template(name: str, **context) -> str:
    return _jinja().get_template(name).render(**context)


def local_extension_sources(image: Image, settings: Settings) -> dict[str, Path]:
    """Extension name -> its tarball, for the git extensions of a pg image
    that ATELIER_EXTENSION_SOURCES holds (the others are cloned)."""
    folder = settings.extension_sources
    if image.build is None or folder is None:
        return {}
    found = {e.name: folder / f"{e.name}.tar.gz" for e in image.build.extensions if e.git}
    return {name: path for name, path in found.items() if path.is_file()}


def dockerfile(image: Image, settings: Settings) -> str:
    os_info = OSES[image.os]
    if image.kind == "service":
        name = f"service/{image.service}.Dockerfile.j2"
    else:
        name = f"{os_info.package_manager}/{image.kind}.Dockerfile.j2"
    return render_template(name, image=image, os=os_info, build=image.build, settings=settings,
                           local_sources=set(local_extension_sources(image, settings)))


def _image_files(image: Image) -> dict[str, File]:
    """The files/ folders an image copies, templates (*.j2) rendered for it."""
    out: dict[str, File] = {}
    folders = SERVICE_FILES.get(image.service, ()) if image.kind == "service" else IMAGE_FILES[image.kind]
    for folder in folders:
        for path in sorted((FILES / folder).rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(FILES).as_posix()
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            if rel.endswith(".j2"):
                text = render_template(rel, build=image.build, os=OSES[image.os], image=image)
                out[rel[:-3]] = (text.encode(), mode)
            else:
                out[rel] = (path.read_bytes(), mode)
    return out


def build_context(image: Image, settings: Settings) -> dict[str, File]:
    """Everything `docker build` needs for one image: Dockerfile and files."""
    files = {"Dockerfile": (dockerfile(image, settings).encode(), 0o644)}
    files.update(_image_files(image))
    for name, path in local_extension_sources(image, settings).items():
        files[f"ext-src/{name}.tar.gz"] = (path.read_bytes(), 0o644)
    return files
