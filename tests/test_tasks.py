"""Tasks at the seam: run under Invoke's MockContext with settings of the
test's choosing on c.config.atelier, and the command line's shape."""

from __future__ import annotations

import pytest
from invoke import Config, MockContext
from invoke.exceptions import Exit

from atelier.tasks import lifecycle, namespace


@pytest.fixture
def context(settings):
    return MockContext(config=Config(overrides={"atelier": {"settings": settings, "root": None}}))


def test_render_runs_with_the_settings_it_is_given(context, settings, tmp_path):
    lifecycle.render(context, profile="debian", out=str(tmp_path / "out"))
    compose = (tmp_path / "out" / "compose.yml").read_text()
    assert "debian13-pg17-standby" in compose and settings.subnet in compose
    assert not (tmp_path / "out" / "containers" / "debian12-pg15-active" / "etc/atelier/roles.sql").exists()


def test_a_bad_selection_is_one_line_before_any_engine(context):
    with pytest.raises(Exit) as stopped:
        lifecycle.up(context, pg="13")
    assert stopped.value.code == 1
    assert str(stopped.value.message) == "atelier: unknown PostgreSQL major '13' (did you mean 19, 18, 17?); " \
                                         "valid: 14, 15, 16, 17, 18, 19"


def short_flags():
    ns = namespace()
    found = {}
    for name in ns.task_names:
        task = ns[name]
        for argument in task.get_arguments():
            long = argument.names[0]
            for short in argument.names[1:]:
                found.setdefault(short, set()).add(long)
    return found


def test_one_letter_means_one_thing_in_every_task():
    found = short_flags()
    assert all(len(longs) == 1 for longs in found.values()), found
    assert found["t"] == {"target"} and found["u"] == {"user"} and found["y"] == {"yes"}


@pytest.mark.parametrize("option", ["profile", "os", "pg"])
def test_an_option_given_empty_is_refused_not_taken_as_absent(context, option):
    with pytest.raises(Exit) as stopped:
        lifecycle.up(context, **{option: ""})
    assert stopped.value.code == 1
    message = str(stopped.value.message)
    assert message.startswith("atelier: ") and "\n" not in message and "valid: " in message


def test_a_reader_that_leaves_early_gets_no_traceback():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    listing = subprocess.Popen([sys.executable, "-m", "invoke", "--list"], cwd=root, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    listing.stdout.close()  # what `| head` does, before the listing is written: every write fails
    err = listing.stderr.read().decode()
    listing.wait(timeout=30)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_two_installs_at_once_are_one_line_before_any_engine(context):
    from atelier.tasks import pg

    with pytest.raises(Exit) as stopped:
        pg.install(context, target="debian12-pg15-active", docs=True, core=True)
    assert stopped.value.code == 1
    assert str(stopped.value.message) == "atelier: --docs and --core ask for different installs; choose one"


def test_up_and_status_say_a_major_past_its_end_of_life_on_stderr(capsys):
    lifecycle.say_end_of_life([15, 14])
    lifecycle.say_end_of_life([18])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [captured.err.strip()]  # one line, for 14 only
    assert captured.err.startswith("past end of life: PostgreSQL 14 (last release 2026-11-12)")
