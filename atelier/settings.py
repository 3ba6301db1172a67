"""Settings: `.env` and the process environment, validated once.

The process environment wins over `.env`, as with docker compose. Passwords
that are not set are generated on first use and kept in a git-ignored state
file, so they never need to be written into any tracked file or image.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AtelierError
from .keys import Keys, ensure_keys
from .matrix import OSES
from .state import short_lock, write_file

ROOT = Path(__file__).resolve().parent.parent

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
PROJECT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")
# A mirror URL goes into a Dockerfile's RUN line and into debootstrap's argv:
# letters, digits and URL punctuation only; no quotes, spaces, $ or backslashes.
MIRROR_PATTERN = re.compile(r"^(https?|ftp|file)://[A-Za-z0-9._~:/@%+,=-]+$")


@dataclass(frozen=True)
class Settings:
    project: str = "atelier"
    subnet: str = "172.30"
    ssh_port: int = 8022
    http_port: int = 8080
    squid_port: int | None = None  # published only when set
    bind_address: str = "127.0.0.1"
    superuser_password: str = ""
    replication_password: str = ""
    sudo_password: str = ""
    privileged: bool = False
    # OS name -> "debootstrap" or an image reference to pull.
    base_images: dict[str, str] = field(default_factory=dict)
    debian_mirror: str = "http://deb.debian.org/debian"
    debian_security_mirror: str = "http://deb.debian.org/debian-security"
    ubuntu_mirror: str = "http://archive.ubuntu.com/ubuntu"
    build_tries: int = 10
    build_jobs: int = 2
    state_dir: Path = ROOT / ".state" / "atelier"
    keys: Keys | None = None

    @property
    def subnet_cidr(self) -> str:
        return f"{self.subnet}.0.0/16"

    def address(self, third: int, fourth: int) -> str:
        return f"{self.subnet}.{third}.{fourth}"


def _int(env: dict, key: str, default: int | None, low: int, high: int) -> int | None:
    raw = env.get(key)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise AtelierError(f"{key}={raw} is not a whole number from {low} to {high}")
    return value


def _bool(env: dict, key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise AtelierError(f"{key}={raw} is not a yes/no value; valid: 1, 0, true, false, yes, no, on, off")


def _subnet(raw: str) -> str:
    parts = raw.split(".")
    if len(parts) != 2 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
        raise AtelierError(
            f"ATELIER_SUBNET={raw} is not two octets 0-255 like 172.30 "
            "(atelier uses SUBNET.0.0/16)"
        )
    return ".".join(str(int(p)) for p in parts)


def _bind_address(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise AtelierError(
            f"ATELIER_BIND_ADDRESS={raw} is not an IP address; valid: 127.0.0.1 (default), 0.0.0.0, or one of the host's addresses"
        ) from None


SECRET_KEYS = ("ATELIER_SUPERUSER_PASSWORD", "ATELIER_REPLICATION_PASSWORD", "ATELIER_SUDO_PASSWORD")


def _checked_secret(key: str, value: str) -> str:
    """Passwords reach .pgpass, chpasswd and SQL: one printable line each."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise AtelierError(f"{key} holds a newline or another control character; "
                           "use printable characters only")
    return value


def _mirror(env: dict, key: str, default: str) -> str:
    value = env.get(key) or default
    if not MIRROR_PATTERN.match(value):
        raise AtelierError(f"{key}={value!r} is not a plain URL; valid: http(s)://host/path with "
                           "letters, digits and . _ ~ : / @ % + , = - only")
    return value.rstrip("/")


def _secrets(state_dir: Path, env: dict) -> dict[str, str]:
    """Each password from the environment, else the kept one, else a new one,
    kept for next time. Under a lock, so two first runs agree on one value."""
    from dotenv import dotenv_values

    wanted = {k: _checked_secret(k, env[k]) for k in SECRET_KEYS if env.get(k)}
    if len(wanted) == len(SECRET_KEYS):
        return wanted
    path = state_dir / "secrets.env"
    with short_lock(state_dir, "secrets"):
        kept = {k: v for k, v in dotenv_values(path, interpolate=False).items() if v} if path.exists() else {}
        missing = {k: secrets.token_urlsafe(18) for k in SECRET_KEYS if k not in kept}
        if missing:
            kept.update(missing)
            text = "".join(f"{k}='{v}'\n" for k, v in sorted(kept.items()))
            write_file(path, "# generated by atelier on first use; keep out of git\n" + text)
    return {k: wanted.get(k) or _checked_secret(k, kept[k]) for k in SECRET_KEYS}


def read_env(root: Path = ROOT, environ: dict | None = None) -> dict:
    from dotenv import dotenv_values

    # No ${...} expansion: a password may hold a $ and must stay as written.
    env = {k: v for k, v in dotenv_values(root / ".env", interpolate=False).items() if v is not None}
    env.update({k: v for k, v in (os.environ if environ is None else environ).items()
                if k.startswith("ATELIER_")})
    return env


def load_settings(root: Path = ROOT, environ: dict | None = None) -> Settings:
    env = read_env(root, environ)
    project = env.get("ATELIER_PROJECT", "atelier")
    if not PROJECT_PATTERN.match(project):
        raise AtelierError(
            f"ATELIER_PROJECT={project} is not a valid name; use lowercase letters, digits, - or _, up to 31 characters"
        )
    ports = {
        key: _int(env, key, default, 1, 65535)
        for key, default in (("ATELIER_SSH_PORT", 8022), ("ATELIER_HTTP_PORT", 8080),
                             ("ATELIER_SQUID_PORT", None))
    }
    published = {k: v for k, v in ports.items() if v is not None}
    if len(set(published.values())) != len(published):
        raise AtelierError(
            "ATELIER_SSH_PORT, ATELIER_HTTP_PORT and ATELIER_SQUID_PORT must differ; got "
            + ", ".join(f"{k}={v}" for k, v in published.items())
        )

    base_images = {}
    for name, os_info in OSES.items():
        value = env.get(f"ATELIER_BASE_{name.upper()}", os_info.default_base)
        if value == "debootstrap" and os_info.family == "rocky":
            raise AtelierError(
                f"ATELIER_BASE_{name.upper()}=debootstrap cannot make a Rocky base; give an image reference like {os_info.default_base}"
            )
        base_images[name] = value

    state_dir = Path(env.get("ATELIER_STATE_DIR") or root / ".state" / project)
    passwords = _secrets(state_dir, env)

    return Settings(
        project=project,
        subnet=_subnet(env.get("ATELIER_SUBNET", "172.30")),
        ssh_port=ports["ATELIER_SSH_PORT"],
        http_port=ports["ATELIER_HTTP_PORT"],
        squid_port=ports["ATELIER_SQUID_PORT"],
        bind_address=_bind_address(env.get("ATELIER_BIND_ADDRESS", "127.0.0.1")),
        superuser_password=passwords["ATELIER_SUPERUSER_PASSWORD"],
        replication_password=passwords["ATELIER_REPLICATION_PASSWORD"],
        sudo_password=passwords["ATELIER_SUDO_PASSWORD"],
        privileged=_bool(env, "ATELIER_PRIVILEGED", False),
        base_images=base_images,
        debian_mirror=_mirror(env, "ATELIER_DEBIAN_MIRROR", Settings.debian_mirror),
        debian_security_mirror=_mirror(env, "ATELIER_DEBIAN_SECURITY_MIRROR", Settings.debian_security_mirror),
        ubuntu_mirror=_mirror(env, "ATELIER_UBUNTU_MIRROR", Settings.ubuntu_mirror),
        build_tries=_int(env, "ATELIER_BUILD_TRIES", 10, 1, 100),
        # Builds wait on mirrors as much as on cores: two per core, at most four.
        build_jobs=_int(env, "ATELIER_BUILD_JOBS", min(4, 2 * (os.cpu_count() or 1)), 1, 64),
        state_dir=state_dir,
        keys=ensure_keys(state_dir, project),
    )
