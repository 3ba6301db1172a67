"""Images: base images (pull or debootstrap), then builds in dependency order,
in parallel where parents allow, retried only on failures that look transient."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from dataclasses import dataclass

from atelier.core.errors import AtelierError
from atelier.core.matrix import OSES
from atelier.core.model import Environment, Image, base_image_name
from atelier.core.parallel import Pool, wait_any
from atelier.render.archive import tar_bytes
from atelier.render.templates import build_context
from atelier.core.settings import Settings
from atelier.core.table import format_table

# Messages that mean "the network or a mirror failed", worth another try. Any
# other failure (a typo, a missing package, a bad Dockerfile) fails at once.
TRANSIENT = re.compile(
    r"Temporary failure (resolving|in name resolution)|Could not resolve|Could not connect|"
    r"Connection (timed out|refused|reset|failed)|Failed to fetch|Hash Sum mismatch|"
    r"Unable to connect|Network is unreachable|TLS handshake timeout|i/o timeout|"
    r"Curl error|Cannot download|Error 50[234]|50[234] (Bad Gateway|Service Unavailable|Gateway)|"
    r"unexpected EOF|Undetermined Error|Some index files failed to download",
    re.IGNORECASE,
)


def is_transient(log: str) -> bool:
    return bool(TRANSIENT.search(log))


def retry_delays(tries: int, first: float = 2.0, cap: float = 60.0) -> list[float]:
    """Growing waits between tries: 2, 4, 8, ... seconds, at most `cap`."""
    return [min(cap, first * 2 ** i) for i in range(max(0, tries - 1))]


# ---- base images ------------------------------------------------------------------

def ensure_base(client, settings: Settings, os_name: str, say=print) -> str:
    """Make atelier-base:OS when it does not exist: pull it, or debootstrap it."""
    import docker

    name = base_image_name(os_name)
    try:
        client.images.get(name)
        return "exists"
    except docker.errors.ImageNotFound:
        pass
    source = settings.base_images[os_name]
    started = time.monotonic()
    if source == "debootstrap":
        _debootstrap(client, settings, os_name, name, say)
    else:
        say(f"[base] pulling {source} for {os_name}")
        try:
            image = client.images.pull(source)
        except docker.errors.APIError as exc:
            raise AtelierError(
                f"cannot pull {source} for {os_name} ({exc.explanation}); set "
                f"ATELIER_BASE_{os_name.upper()} to an image you have, or to debootstrap (Debian/Ubuntu)"
            ) from None
        image.tag(name)
    say(f"[base] {name} made in {time.monotonic() - started:.0f}s")
    return "made"


DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")


def debootstrap_script(codename: str, scripts: Path = DEBOOTSTRAP_SCRIPTS) -> list[str]:
    """debootstrap knows a release by a script of its name; one older than the
    release (forky is newer than Debian 12's debootstrap) gets sid's, which
    every Debian release since bullseye uses."""
    if (scripts / codename).exists() or not (scripts / "sid").exists():
        return []
    return [str(scripts / "sid")]


def _debootstrap(client, settings: Settings, os_name: str, name: str, say) -> None:
    os_info = OSES[os_name]
    if shutil.which("debootstrap") is None:
        raise AtelierError("debootstrap is not installed; `apt-get install debootstrap`, or set "
                           f"ATELIER_BASE_{os_name.upper()} to an image reference")
    mirror = settings.debian_mirror if os_info.family == "debian" else settings.ubuntu_mirror
    say(f"[base] debootstrap {os_info.codename} from {mirror}")
    with tempfile.TemporaryDirectory(prefix=f"atelier-{os_name}-") as root:
        run = subprocess.run(
            ["debootstrap", "--variant=minbase", os_info.codename, root, mirror, *debootstrap_script(os_info.codename)],
            capture_output=True, text=True)
        if run.returncode != 0:
            tail = (run.stdout + run.stderr).strip().splitlines()[-1:] or ["(no output)"]
            raise AtelierError(f"debootstrap of {os_info.codename} failed: {tail[0]}")
        # debootstrap leaves its downloaded packages behind: not part of an OS.
        subprocess.run(["sh", "-c", f"rm -rf {root}/var/cache/apt/archives/*.deb {root}/var/lib/apt/lists/*"],
                       check=True)
        import_folder(client, root, name)


def import_folder(client, root: str, name: str) -> None:
    """`tar -C root -c . | docker import - name`, tagged only when both worked:
    a truncated base would otherwise count as present for good."""
    import docker

    repository, tag = name.split(":")
    tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        answer = client.api.import_image_from_stream(tar.stdout, repository=f"atelier-import-{os.getpid()}",
                                                     tag=tag)
    except docker.errors.APIError as exc:
        answer = json.dumps({"error": exc.explanation or str(exc)})
    finally:
        tar.stdout.close()
        tar_error = tar.stderr.read().decode(errors="replace").strip()
        tar.wait()
    messages = [json.loads(line) for line in answer.splitlines() if line.strip().startswith("{")]
    image_id = next((m["status"] for m in messages if str(m.get("status", "")).startswith("sha256:")), "")
    error = next((m["error"] for m in messages if m.get("error")), "")
    if tar.returncode != 0 or error or not image_id:
        if image_id:
            client.images.remove(image_id, force=True)
        why = (tar_error.splitlines() or [""])[-1] if tar.returncode != 0 else error or "no image id"
        raise AtelierError(f"importing {root} as {name} failed: {why}; nothing was tagged")
    client.api.tag(image_id, repository, tag)
    client.images.remove(f"atelier-import-{os.getpid()}:{tag}")


# ---- builds -------------------------------------------------------------------------

@dataclass
class BuildResult:
    image: str
    seconds: float
    outcome: str  # cached | built | failed
    tries: int = 1
    error: str = ""


def _build_once(client, tag: str, context: bytes, proxy: dict, say, labels: dict,
                refresh: bool = False) -> tuple[bool, str, str]:
    """One docker build. Returns (ok, cached|built|failed, log)."""
    kwargs = dict(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                  decode=True, pull=False, labels=labels or None, nocache=refresh)
    if proxy:
        kwargs.update(buildargs=proxy["buildargs"], network_mode=proxy["network"])
    log_lines, ran_steps = [], 0
    for chunk in client.api.build(**kwargs):
        if "error" in chunk:
            log_lines.append(chunk["error"].strip())
            return False, "failed", "\n".join(log_lines)
        text = chunk.get("stream", "")
        if not text:
            continue
        log_lines.append(text.rstrip("\n"))
        if text.startswith("Step "):
            say(f"[{tag}] {text.strip()[:100]}")
        elif "Running in " in text:
            ran_steps += 1
    return True, ("built" if ran_steps else "cached"), "\n".join(log_lines)


def failure_reason(log: str) -> str:
    """What a failed build says went wrong: the package manager's own error
    (apt's `E:` line, dnf's `Error:`: it names the package or the archive),
    promtool's line naming the alert rule it rejects, else the build's last line."""
    lines = log.strip().splitlines()
    if not lines:
        return "no output"
    named = [line.strip() for line in lines if re.match(r"\s*(E:|Error:|No match for argument)", line)
             or re.search(r'rule \d+, "[^"]+"', line)]  # promtool's word on a rule it rejects
    return named[0] if named else lines[-1]


def build_image(client, tag: str, context: bytes, tries: int, proxy: dict | None = None,
                say=print, sleep=time.sleep, labels: dict | None = None, refresh: bool = False) -> BuildResult:
    """Build one image; on a failure that looks transient, wait longer each
    time and try again, up to `tries`; any other failure ends it at once."""
    import docker

    started = time.monotonic()
    delays = retry_delays(tries)
    for attempt in range(1, tries + 1):
        try:
            ok, outcome, log = _build_once(client, tag, context, proxy or {}, say, labels or {}, refresh)
        except docker.errors.APIError as exc:
            ok, outcome, log = False, "failed", str(exc)
        if ok:
            return BuildResult(tag, time.monotonic() - started, outcome, attempt)
        last = failure_reason(log)
        if attempt <= len(delays) and is_transient(log):
            say(f"[{tag}] try {attempt} failed ({last[:120]}); retrying in {delays[attempt - 1]:.0f}s")
            sleep(delays[attempt - 1])
            continue
        return BuildResult(tag, time.monotonic() - started, "failed", attempt, last)
    return BuildResult(tag, time.monotonic() - started, "failed", tries, "no try left")


def squid_proxy(client, env: Environment) -> dict:
    """Build arguments that route downloads through squid, if it is running.
    http_proxy is one of Docker's predefined build args: it stays out of the
    image history. Docker's documentation says it stays out of the layer
    cache key too, but Debian's docker.io 20.10 puts it there: an image built
    while squid ran misses the cache of one built while it did not."""
    import docker

    squid = next((c for c in env.containers if c.role == "squid"), None)
    if squid is None:
        return {}
    try:
        container = client.containers.get(env.docker_name(squid))
    except docker.errors.NotFound:
        return {}
    if container.status != "running":
        return {}
    url = f"http://{squid.address}:3128"
    return {"network": env.network,
            "buildargs": {"http_proxy": url, "HTTP_PROXY": url, "https_proxy": url, "HTTPS_PROXY": url}}


def build_all(engine, env: Environment, images: list[Image], say=print,
              refresh: bool = False) -> list[BuildResult]:
    """Build `images`, each after its parent, up to build_jobs at once.
    `refresh` builds every step again (new packages), skipping no cache."""
    client = engine.client
    settings = env.settings
    needed_bases = sorted({i.parent for i in images if i.parent.startswith("atelier-base:")})
    for base in needed_bases:
        ensure_base(client, settings, base.split(":", 1)[1], say)
    proxy = squid_proxy(client, env)
    if proxy:
        say(f"[build] downloads go through squid ({proxy['buildargs']['http_proxy']})")

    lock = threading.Lock()

    def log(line):
        with lock:
            say(line)

    inspect = Inspected(client)
    results: dict[str, BuildResult] = {}
    pending, running = list(images), {}
    names = {i.name for i in images}
    with Pool(settings.build_jobs) as pool:
        while pending or running:
            for image in list(pending):
                if len(running) >= settings.build_jobs:
                    break
                parent = image.parent
                if parent in results and results[parent].outcome == "failed":
                    pending.remove(image)
                    results[image.name] = BuildResult(image.name, 0, "failed", 0, f"parent {parent} failed")
                    continue
                if parent in names and parent not in results:
                    continue
                pending.remove(image)
                context = tar_bytes(build_context(image, settings))
                key = build_key(inspect, image, context)
                if not refresh and current_key(inspect, image.name) == key:
                    results[image.name] = BuildResult(image.name, 0.0, "cached")
                    log(f"[{image.name}] unchanged")
                    continue
                future = pool.submit(build_image, client, image.name, context, settings.build_tries,
                                     proxy, log, labels={KEY_LABEL: key}, refresh=refresh)
                running[future] = image
            if not running:
                continue
            for future in wait_any(running):
                image = running.pop(future)
                inspect.forget(image.name)
                result = results[image.name] = future.result()
                log(f"[{image.name}] {result.outcome} in {result.seconds:.1f}s"
                    + (f": {result.error}" if result.error else ""))
    return [results[i.name] for i in images]


KEY_LABEL = "atelier.build-key"


class Inspected:
    """Image inspections of one build run, each asked of the engine once
    (a parent is also an image of the run); forgotten when rebuilt."""

    def __init__(self, client):
        self.client, self.known = client, {}

    def __call__(self, name: str) -> dict | None:
        import docker

        if name not in self.known:
            try:
                self.known[name] = self.client.api.inspect_image(name)
            except docker.errors.ImageNotFound:
                self.known[name] = None
        return self.known[name]

    def forget(self, name: str) -> None:
        self.known.pop(name, None)


def build_key(inspect: Inspected, image: Image, context: bytes) -> str:
    """What Docker's layer cache keys an image on: its parent image and its
    build context (Dockerfile and files). Equal keys mean a build would only
    reuse cached layers, so it can be skipped without building."""
    parent = inspect(image.parent)["Id"]
    return hashlib.sha256(parent.encode() + b"\0" + context).hexdigest()[:32]


def current_key(inspect: Inspected, name: str) -> str | None:
    found = inspect(name)
    return (found["Config"].get("Labels") or {}).get(KEY_LABEL) if found else None


def summary_table(results: list[BuildResult]) -> str:
    return format_table(("image", "seconds", "result", "tries"),
                        [(r.image, f"{r.seconds:.1f}", r.outcome, r.tries) for r in results],
                        right=("seconds", "tries"))
