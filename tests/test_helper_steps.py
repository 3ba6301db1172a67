"""The helpers' shell steps at the seam, against Invoke's MockContext: what
each helper asks the container's shell to do, and what it never does. The
real runs are in test_pg_helpers.py and test_faults.py."""

from __future__ import annotations

import re

import pytest
from invoke import MockContext, Result

from atelier.core.errors import AtelierError
from atelier.pg import build, git, identity, source, step, workspace
from atelier.ssh.guard import guarded


def context(**answers):
    """A MockContext whose run() answers by regex; everything else exits 0."""
    table = {re.compile(".*" + pattern, re.S): Result(stdout=out) for pattern, out in answers.items()}
    table[re.compile(".*", re.S)] = Result()
    return MockContext(run=table, sudo=Result())


def commands(ctx) -> list[str]:
    return [call.args[0] for call in ctx.run.call_args_list]


def test_every_step_is_guarded_unless_it_reads_stdin():
    ctx = context()
    step.step(ctx, "one", "make -s")
    assert commands(ctx)[0] == guarded(step.PRELUDE + "make -s")
    assert ctx.run.call_args.kwargs["in_stream"] is False


def test_pg_user_sends_the_password_through_stdin_never_argv():
    ctx = context()
    identity.pg_user(ctx, "experdba", "s3cr:et\\pw")
    (call,) = ctx.run.call_args_list
    assert "s3cr" not in call.args[0]
    assert call.kwargs["in_stream"].getvalue() == "*:*:*:experdba:s3cr\\:et\\\\pw\n"
    assert "umask 077" in call.args[0]


def test_git_clone_ends_options_before_the_url():
    ctx = context()
    source.get_source_git(ctx, "--upload-pack=touch /tmp/x")
    clone = next(c for c in commands(ctx) if "git clone" in c)
    assert "git clone -- " in clone and clone.index("git clone -- ") < clone.index("--upload-pack=")


@pytest.mark.parametrize("what", ["world; rm -rf ~", "$(id)", "-C /", "world && x", ""])
def test_make_takes_make_words_only(what):
    with pytest.raises(AtelierError, match="is not a list of make targets"):
        build.make(context(), args=what)


def test_make_quotes_each_word():
    ctx = context()
    build.make(ctx, jobs=2, args="world-bin PROFILE=-O0")
    assert any("make -s -j2 world-bin PROFILE=-O0" in c for c in commands(ctx))


def test_configure_stops_on_untracked_files_and_cleans_nothing():
    ctx = context(**{"ls-files --others": "new_test.sql\n.atelier-configure.debug\nsrc/Makefile.custom\n",
                     "pg_config --configure": "'--prefix=/usr' 'CFLAGS=-O2'\n"})
    with pytest.raises(AtelierError, match=r"holds 1 file\(s\) git neither tracks nor ignores: new_test.sql;"):
        build.configure(ctx, "debug")
    assert not any("git clean" in c or "distclean" in c for c in commands(ctx))


def test_configure_with_force_removes_ignored_files_only():
    ctx = context(**{"ls-files --others": "new_test.sql\n", "pg_config --configure": "'--prefix=/usr'\n"})
    build.configure(ctx, "debug", force=True)
    cleans = [c for c in commands(ctx) if "git clean" in c]
    assert len(cleans) == 1 and "git clean -Xdfq" in cleans[0] and "-xdf" not in cleans[0]


def test_git_clean_is_a_dry_run_unless_told():
    ctx = context()
    git.clean(ctx)
    assert "git clean -xdn" in commands(ctx)[0] and "git clean -xdf" not in commands(ctx)[0]
    git.clean(ctx, dry_run=False)
    assert "git clean -xdf" in commands(ctx)[1]


def test_workspace_replacement_unpacks_beside_then_moves_the_old_tree_aside():
    ctx = context(**{"kept=\\$\\(mktemp -d": "/var/lib/postgresql/workspace/.replaced-1\n"})
    kept = workspace.replace_workspace(ctx, "/tmp/w.tar")
    unpack, swap = commands(ctx)
    assert "tar -C \"$PG_HOME/workspace/.atelier-sync\" -xf /tmp/w.tar" in unpack
    assert "rm -rf \"$PG_HOME/workspace/.atelier-sync\"; exit $code" in unpack  # a failed unpack leaves it
    assert "rm -rf" not in swap.split("kept=$(mktemp -d")[1].replace("rm -f /tmp/w.tar", "")
    assert kept == "/var/lib/postgresql/workspace/.replaced-1"
