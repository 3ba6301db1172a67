"""pg.configure's rewriting: every rule of the original, on real-shaped input."""

import pytest

from atelier.pg.configure import configure_line, parse_pg_config, rewrite
from atelier.core.errors import AtelierError

DEBIAN = parse_pg_config(
    "'--build=x86_64-linux-gnu' '--prefix=/usr' '--includedir=${prefix}/include' "
    "'--runstatedir=/run' '--with-icu' '--with-llvm' 'LLVM_CONFIG=/usr/bin/llvm-config-14' "
    "'--enable-debug' '--disable-rpath' 'build_alias=x86_64-linux-gnu' "
    "'CFLAGS=-g -O2 -ffile-prefix-map=/build/x=. -fstack-protector-strong -Wformat -fno-omit-frame-pointer' "
    "'LDFLAGS=-Wl,-z,relro -Wl,-z,now' "
    "'CPPFLAGS=-Wdate-time -D_FORTIFY_SOURCE=2' "
    "'CXXFLAGS=-g -O2 -fstack-protector-strong'")
ROCKY = parse_pg_config(
    "'--enable-rpath' '--prefix=/usr/pgsql-16' '--with-lz4' "
    "'CFLAGS=-O2 -flto=auto -ffat-lto-objects -fexceptions -g -grecord-gcc-switches -pipe -Wall "
    "-Wp,-D_FORTIFY_SOURCE=2 -Wp,-D_GLIBCXX_ASSERTIONS -fstack-protector-strong' "
    "'LDFLAGS=-Wl,-z,relro -flto=auto -ffat-lto-objects -Wl,--as-needed' "
    "'CXXFLAGS=-O3 -flto -g'")


def var(args, name):
    return next(a.split("=", 1)[1].split() for a in args if a.startswith(name + "="))


def test_release_keeps_the_packaged_build_but_runstatedir():
    out = rewrite(DEBIAN, "release")
    assert "--runstatedir=/run" not in out
    assert out == [a for a in DEBIAN if not a.startswith("--runstatedir")]


def test_shell_quoted_values_survive_parsing():
    assert "CFLAGS=-g -O2 -ffile-prefix-map=/build/x=. -fstack-protector-strong -Wformat -fno-omit-frame-pointer" in DEBIAN
    assert "--includedir=${prefix}/include" in DEBIAN


@pytest.mark.parametrize("mode", ["debug", "valgrind", "coverage"])
def test_every_optimisation_level_becomes_og(mode):
    for args in (DEBIAN, ROCKY):
        out = rewrite(args, mode)
        for name in ("CFLAGS", "CXXFLAGS"):
            flags = var(out, name)
            assert "-Og" in flags
            assert not any(f in flags for f in ("-O2", "-O3", "-O", "-Os"))


@pytest.mark.parametrize("mode", ["debug", "valgrind", "coverage"])
def test_fortify_source_goes_in_both_forms(mode):
    assert "-D_FORTIFY_SOURCE=2" not in var(rewrite(DEBIAN, mode), "CPPFLAGS")
    cflags = var(rewrite(ROCKY, mode), "CFLAGS")
    assert "-Wp,-D_FORTIFY_SOURCE=2" not in cflags
    assert "-Wp,-D_GLIBCXX_ASSERTIONS" in cflags  # only FORTIFY goes


def test_g_becomes_ggdb_and_other_g_flags_stay():
    flags = var(rewrite(ROCKY, "debug"), "CFLAGS")
    assert "-ggdb" in flags and "-g" not in flags and "-grecord-gcc-switches" in flags


def test_debug_adds_cassert_and_debug_once():
    out = rewrite(DEBIAN, "debug")
    assert out.count("--enable-debug") == 1 and out.count("--enable-cassert") == 1
    assert rewrite(out, "debug") == out


def test_valgrind_adds_use_valgrind_once():
    out = rewrite(DEBIAN, "valgrind")
    assert var(out, "CPPFLAGS") == ["-Wdate-time", "-DUSE_VALGRIND"]
    assert rewrite(out, "valgrind") == out
    no_cppflags = rewrite(ROCKY, "valgrind")
    assert "CPPFLAGS=-DUSE_VALGRIND" in no_cppflags


def test_coverage_drops_lto_and_adds_enable_coverage_once():
    out = rewrite(ROCKY, "coverage")
    for name in ("CFLAGS", "LDFLAGS", "CXXFLAGS"):
        assert not any("lto" in f for f in var(out, name)), name
    assert "-Wl,--as-needed" in var(out, "LDFLAGS")
    assert out.count("--enable-coverage") == 1
    assert rewrite(out, "coverage") == out
    assert any("lto" in f for f in var(rewrite(ROCKY, "debug"), "CFLAGS"))  # only coverage drops LTO


def test_unknown_mode_names_the_valid_ones():
    with pytest.raises(AtelierError) as err:
        rewrite(DEBIAN, "profile")
    assert "unknown mode 'profile'" in str(err.value) and "release, debug, valgrind, coverage" in str(err.value)


def test_configure_line_is_shell_quoted():
    line = configure_line(["--prefix=/usr", "CFLAGS=-g -Og"])
    assert line == "./configure --prefix=/usr 'CFLAGS=-g -Og'"
