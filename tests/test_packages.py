"""What the Rocky and Ubuntu images install, checked without building them
(these machines reach neither archive): every package name in the rendered
Dockerfiles of the full profile is in a list of tests/data/ that says where
it was checked; and every option of the packaged configure line that needs
something finds the package that provides it (files/postgres/etc/atelier/
configure-needs, which atelier-check-configure also reads at image build)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from atelier.core.matrix import MAJORS, OSES
from atelier.render.templates import FILES, dockerfile
from packages import installed_packages

DATA = Path(__file__).resolve().parent / "data"
FAMILY_LIST = {"rocky": "rocky-packages.txt", "ubuntu": "ubuntu-packages.txt"}
RELEASE = {"rocky8": "8", "rocky9": "9", "ubuntu22": "jammy", "ubuntu24": "noble"}


def checked_names(os_name: str) -> set[str]:
    """The names tests/data lists for this OS, {major} filled in for every major."""
    names = set()
    for line in (DATA / FAMILY_LIST[OSES[os_name].family]).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        words = line.split()
        name, releases = words[0], [w for w in words[1:] if w in ("8", "9", "jammy", "noble")]
        if RELEASE[os_name] in releases:
            names |= {name.format(major=m) for m in MAJORS} if "{major}" in name else {name}
    return names


def rendered(make_env, os_name: str) -> list[str]:
    env = make_env("full")
    images = [i for i in env.images if i.os == os_name and i.kind != "service"]
    return [dockerfile(image, env.settings) for image in images]


@pytest.mark.parametrize("os_name", sorted(RELEASE))
def test_every_package_name_was_checked_where_it_comes_from(make_env, os_name):
    installed = set().union(*(installed_packages(text) for text in rendered(make_env, os_name)))
    assert len(installed) > 50
    unchecked = sorted(installed - checked_names(os_name))
    assert not unchecked, f"{os_name} installs packages no list of tests/data/ vouches for: {unchecked}"


def test_the_package_lists_would_catch_a_name_nobody_checked(make_env):
    text = "FROM x\nRUN dnf install -y --setopt=install_weak_deps=False jed plocate \\\n && dnf clean all\n"
    assert {"jed", "plocate"} <= installed_packages(text)
    assert not {"jed", "plocate"} & checked_names("rocky9")  # neither is in EL 9: the images must not ask


# ---- what the packaged configure line needs -----------------------------------------------------

def needs() -> list[tuple[str, str, list[str], str, list[str]]]:
    """(option, kind, what it needs, rocky package, apt packages) per line."""
    rows = []
    for line in (FILES / "postgres/etc/atelier/configure-needs").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        option, kind, wanted, rocky, apt = line.split()
        rows.append((option, kind, wanted.split("|"), rocky, apt.split("|")))
    return rows


OPTIONS = [row[0] for row in needs()]
# Options PGDG's configure line has only from a major on, or not on EL 8
# (postgresql-18.spec: "RHEL 8 does not have io_uring support").
SINCE = {"--with-liburing": 18, "--with-libnuma": 18, "--with-libcurl": 18}
NOT_ON = {("--with-liburing", "rocky8")}


def test_the_checks_cover_every_option_that_needs_a_tool_or_a_header():
    assert {"--enable-dtrace", "--enable-nls", "--enable-tap-tests", "--with-llvm", "--with-icu", "--with-libxml",
            "--with-ldap", "--with-gssapi", "--with-openssl", "--with-pam", "--with-selinux", "--with-systemd",
            "--with-uuid=e2fs", "--with-lz4", "--with-zstd", "--with-liburing", "--with-libnuma", "--with-libcurl",
            "--with-perl", "--with-python", "--with-tcl", "--with-libxslt"} <= set(OPTIONS)


@pytest.mark.parametrize("option", OPTIONS)
def test_each_option_finds_its_package_in_every_rocky_and_ubuntu_image(make_env, option):
    _, _, _, rocky, apt = next(row for row in needs() if row[0] == option)
    build_depends = {w for w in (DATA / "apt-build-depends.txt").read_text().split() if not w.startswith("#")}
    env = make_env("full")
    for os_name in RELEASE:
        for major in MAJORS:
            if major < SINCE.get(option, 0) or (option, os_name) in NOT_ON:
                continue
            image = env.container(f"{os_name}-pg{major}-active").image
            text = dockerfile(image, env.settings) + dockerfile(env.container(f"{os_name}-init").image, env.settings)
            installed = installed_packages(text)
            if OSES[os_name].family == "rocky":
                assert rocky in installed, f"{os_name}/{major}: {option} needs {rocky}"
            else:
                assert f"apt-get build-dep -y postgresql-{major}" in text
                assert set(apt) & (installed | build_depends), f"{os_name}/{major}: {option} needs {apt}"


def check_configure(root: Path, line: str):
    return subprocess.run(["bash", str(FILES / "postgres/usr/local/sbin/atelier-check-configure")],
                          env={"ATELIER_CHECK_ROOT": str(root), "PG_CONFIG_LINE": line, "PATH": "/usr/bin:/bin",
                               "ATELIER_CONFIGURE_NEEDS": str(FILES / "postgres/etc/atelier/configure-needs")},
                          capture_output=True, text=True)


def provide(root: Path, kind: str, wanted: str) -> None:
    """Make what a need looks for exist under a fake root."""
    where, text = {
        "header": (root / "usr/include" / wanted.replace("*", "3.11"), ""),
        "tool": (root / "usr/bin" / wanted, "#!/bin/sh\n"),
        "perl": (root / "perl" / (wanted.replace("::", "/") + ".pm"), "1;\n"),
        "perlcore": (root / "perl/CORE" / wanted, ""),
    }[kind]
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(text)
    if kind == "tool":
        where.chmod(0o755)


@pytest.mark.parametrize("option", OPTIONS)
def test_atelier_check_configure_fails_the_image_when_an_option_lacks_what_it_needs(tmp_path, option):
    _, kind, wanted, _, _ = next(row for row in needs() if row[0] == option)
    line = f"'--prefix=/usr' '{option}' '--enable-debug'"
    missing = check_configure(tmp_path, line)
    assert missing.returncode == 1
    assert f"{option} needs {wanted[0]}" in missing.stderr
    provide(tmp_path, kind, wanted[-1])  # any of its alternatives will do
    found = check_configure(tmp_path, line)
    assert found.returncode == 0, found.stderr
    absent = check_configure(tmp_path / "empty", "'--prefix=/usr'")  # an option not in the line needs nothing
    assert absent.returncode == 0, absent.stderr
