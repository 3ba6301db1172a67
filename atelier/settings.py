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

ROOT = Path(__file__).resolve().parent.parent

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
PROJECT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")


@dataclass(frozen=True)
class Settings:
    project: str = "atelier"
    subnet: str = "172.30"
    ssh_port: int = 8022
    http_port: int = 8080
    squid_port: int = 3128
    bind_address: str = "127.0.0.1"
    superuser_password: str = ""
    replication_password: str = ""
    sudo_password: str = ""
    privileged: bool = False
    # OS name -> "debootstrap" or an image reference to pull.
    base_images: dict[str, str] = field(default_factory=dict)
    debian_mirror: str = "http://deb.debian.org/debian"
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


def _int(env: dict, key: str, default: int, low: int, high: int) -> int:
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


def _secret(state: dict, env: dict, key: str) -> tuple[str, bool]:
    """The value from the environment, else the kept one, else a new one."""
    if env.get(key):
        return env[key], False
    if state.get(key):
        return state[key], False
    return secrets.token_urlsafe(18), True


def read_env(root: Path = ROOT, environ: dict | None = None) -> dict:
    from dotenv import dotenv_values

    env = {k: v for k, v in dotenv_values(root / ".env").items() if v is not None}
    env.update({k: v for k, v in (os.environ if environ is None else environ).items()
                if k.startswith("ATELIER_")})
    return env


def load_settings(root: Path = ROOT, environ: dict | None = None) -> Settings:
    from dotenv import dotenv_values

    from .model import OSES

    env = read_env(root, environ)
    project = env.get("ATELIER_PROJECT", "atelier")
    if not PROJECT_PATTERN.match(project):
        raise AtelierError(
            f"ATELIER_PROJECT={project} is not a valid name; use lowercase letters, digits, - or _, up to 31 characters"
        )
    ports = {
        key: _int(env, key, default, 1, 65535)
        for key, default in (("ATELIER_SSH_PORT", 8022), ("ATELIER_HTTP_PORT", 8080),
                             ("ATELIER_SQUID_PORT", 3128))
    }
    if len(set(ports.values())) != len(ports):
        raise AtelierError(
            "ATELIER_SSH_PORT, ATELIER_HTTP_PORT and ATELIER_SQUID_PORT must differ; got "
            + ", ".join(f"{k}={v}" for k, v in ports.items())
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
    state_file = state_dir / "secrets.env"
    state = {k: v for k, v in dotenv_values(state_file).items() if v} if state_file.exists() else {}
    superuser, new_superuser = _secret(state, env, "ATELIER_SUPERUSER_PASSWORD")
    replication, new_replication = _secret(state, env, "ATELIER_REPLICATION_PASSWORD")
    sudo, new_sudo = _secret(state, env, "ATELIER_SUDO_PASSWORD")
    generated = {key: value for key, value, new in (
        ("ATELIER_SUPERUSER_PASSWORD", superuser, new_superuser),
        ("ATELIER_REPLICATION_PASSWORD", replication, new_replication),
        ("ATELIER_SUDO_PASSWORD", sudo, new_sudo)) if new}
    if generated:
        _keep_secrets(state_file, {**state, **generated})

    return Settings(
        project=project,
        subnet=_subnet(env.get("ATELIER_SUBNET", "172.30")),
        ssh_port=ports["ATELIER_SSH_PORT"],
        http_port=ports["ATELIER_HTTP_PORT"],
        squid_port=ports["ATELIER_SQUID_PORT"],
        bind_address=_bind_address(env.get("ATELIER_BIND_ADDRESS", "127.0.0.1")),
        superuser_password=superuser,
        replication_password=replication,
        sudo_password=sudo,
        privileged=_bool(env, "ATELIER_PRIVILEGED", False),
        base_images=base_images,
        debian_mirror=env.get("ATELIER_DEBIAN_MIRROR", Settings.debian_mirror),
        ubuntu_mirror=env.get("ATELIER_UBUNTU_MIRROR", Settings.ubuntu_mirror),
        build_tries=_int(env, "ATELIER_BUILD_TRIES", 10, 1, 100),
        # Builds wait on mirrors as much as on cores: two per core, at most four.
        build_jobs=_int(env, "ATELIER_BUILD_JOBS", min(4, 2 * (os.cpu_count() or 1)), 1, 64),
        state_dir=state_dir,
        keys=ensure_keys(state_dir, project),
    )


def _keep_secrets(path: Path, values: dict) -> None:
    """Generated secrets only (url-safe, so single quotes hold them)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = "".join(f"{k}='{v}'\n" for k, v in sorted(values.items()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# generated by atelier on first use; keep out of git\n" + text)
