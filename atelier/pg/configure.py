"""pg.configure's argument rewriting, pure: the packaged server's own
`pg_config --configure` arguments, turned into a release, debug, valgrind or
coverage build of the same layout (so `make install-world` lands over the
packaged server and its service runs the new build).

The rules are the original's:
- drop --runstatedir (configure of older majors does not know it);
- debug, valgrind, coverage: in CFLAGS, CXXFLAGS and CPPFLAGS every -O level
  becomes -Og, _FORTIFY_SOURCE goes (also as -Wp,-D_FORTIFY_SOURCE=N), -g
  becomes -ggdb; and --enable-debug, --enable-cassert are added once;
- valgrind: -DUSE_VALGRIND added to CPPFLAGS once;
- coverage: link-time optimisation flags go (CFLAGS, CXXFLAGS, LDFLAGS) and
  --enable-coverage is added once.
"""

from __future__ import annotations

import re
import shlex

from atelier.core.errors import choice_error

MODES = ("release", "debug", "valgrind", "coverage")
FLAG_VARIABLES = ("CFLAGS", "CXXFLAGS", "CPPFLAGS")
LTO_VARIABLES = ("CFLAGS", "CXXFLAGS", "LDFLAGS")

OPTIMISATION = re.compile(r"^-O([0-3sgz]|fast)?$")
FORTIFY = re.compile(r"^(-Wp,)?-[DU]_FORTIFY_SOURCE(=\d+)?$")
LTO = re.compile(r"^-f(no-)?(lto(=.*)?|lto-.*|fat-lto-objects)$")


def parse_pg_config(text: str) -> list[str]:
    """`pg_config --configure` prints shell-quoted words."""
    return shlex.split(text)


def _variable(arg: str) -> tuple[str, str] | None:
    name, eq, value = arg.partition("=")
    if eq and re.fullmatch(r"[A-Z_]+", name):
        return name, value
    return None


def _debug_flags(flags: list[str]) -> list[str]:
    out = []
    for flag in flags:
        if FORTIFY.match(flag):
            continue
        if OPTIMISATION.match(flag):
            flag = "-Og"
        elif flag == "-g":
            flag = "-ggdb"
        out.append(flag)
    return out


def _add_once(args: list[str], option: str) -> list[str]:
    return args if option in args else args + [option]


def _add_flag_once(args: list[str], variable: str, flag: str) -> list[str]:
    for i, arg in enumerate(args):
        parsed = _variable(arg)
        if parsed and parsed[0] == variable:
            flags = parsed[1].split()
            if flag not in flags:
                args[i] = f"{variable}={' '.join(flags + [flag])}"
            return args
    return args + [f"{variable}={flag}"]


def rewrite(packaged: list[str], mode: str) -> list[str]:
    """The configure arguments for `mode`, from the packaged ones."""
    if mode not in MODES:
        raise choice_error("mode", mode, MODES)
    args = [a for a in packaged if not a.startswith("--runstatedir")]
    if mode == "release":
        return args
    out = []
    for arg in args:
        parsed = _variable(arg)
        if parsed:
            name, value = parsed
            flags = value.split()
            if name in FLAG_VARIABLES:
                flags = _debug_flags(flags)
            if mode == "coverage" and name in LTO_VARIABLES:
                flags = [f for f in flags if not LTO.match(f)]
            arg = f"{name}={' '.join(flags)}"
        out.append(arg)
    out = _add_once(_add_once(out, "--enable-debug"), "--enable-cassert")
    if mode == "valgrind":
        out = _add_flag_once(out, "CPPFLAGS", "-DUSE_VALGRIND")
    if mode == "coverage":
        out = _add_once(out, "--enable-coverage")
    return out


def configure_line(args: list[str]) -> str:
    return "./configure " + shlex.join(args)
