"""The expert note's alert rules (files/prometheus/etc/prometheus/atelier-rules/), without the
engine: promtool's own unit tests with synthetic series (each alert fires
above its threshold once its `for` has passed, not before, not below, and
resolves), and the rules are the note's, word for word."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from atelier.render.templates import FILES

RULES = FILES / "prometheus/etc/prometheus/atelier-rules/postgresql-alerts.yml"
TESTS = Path(__file__).resolve().parent / "data/promtool/postgresql-alerts.test.yml"


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is not installed here (.ci/setup unpacks it from Debian's prometheus package)")
    return found


def test_the_rules_are_the_notes():
    rules = {r["alert"]: r for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    assert {name: (" ".join(r["expr"].split()), r["for"], r["labels"]) for name, r in rules.items()} == {
        "HighConnectionUsage": ("pg_stat_activity_count / pg_settings_max_connections > 0.8", "5m",
                                {"severity": "warning"}),
        "LowCacheHitRatio": ("pg_stat_database_blks_hit / (pg_stat_database_blks_hit + pg_stat_database_blks_read) "
                             "< 0.95", "15m", {"severity": "warning"}),
        "ReplicationLag": ("pg_replication_lag_bytes > 100000000", "5m", {"severity": "critical"}),
    }


def test_promtool_accepts_the_rules():
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert run.returncode == 0 and "3 rules found" in run.stdout, run.stdout + run.stderr


def test_each_alert_fires_after_its_for_above_its_threshold_and_resolves():
    run = subprocess.run([promtool(), "test", "rules", TESTS.name], cwd=TESTS.parent, capture_output=True, text=True)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


def test_promtool_names_a_broken_rule(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("> 100000000", "> > 100000000"))
    run = subprocess.run([promtool(), "check", "rules", str(broken)], capture_output=True, text=True)
    assert run.returncode != 0 and "ReplicationLag" in run.stdout + run.stderr


def test_the_unit_tests_would_see_a_wrong_threshold(tmp_path):
    """promtool's unit tests can fail: the same series against a rule whose
    threshold moved find the alert where it should not be."""
    moved = tmp_path / "rules.yml"
    moved.write_text(RULES.read_text().replace("> 0.8", "> 0.95"))
    tests = tmp_path / "tests.yml"
    tests.write_text(TESTS.read_text().replace("../../../files/prometheus/etc/prometheus/atelier-rules/postgresql-alerts.yml", "rules.yml"))
    run = subprocess.run([promtool(), "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode != 0 and "HighConnectionUsage" in run.stdout + run.stderr
