"""Monitoring without the engine (ATELIER_MONITORING=1): what the model adds,
what atelier writes into the prometheus, alertmanager and server containers,
the settings' one-line refusals, and the reading of Prometheus's alerts."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import yaml

from atelier.core.errors import AtelierError
from atelier.core.model import Environment, select
from atelier.core.settings import parse_settings
from atelier.dba.prometheus import alert_line, alerts_of, summary
from atelier.render.runtime import RULES_FILE, roles_sql, runtime_files, shortened_rules
from atelier.render.spec import container_spec
from atelier.render.templates import build_context, dockerfile


@pytest.fixture
def monitored(settings):
    def make(**changes):
        return Environment(dataclasses.replace(settings, monitoring=True, **changes), select("debian"),
                           nofile_ceiling=20000)

    return make


def test_monitoring_adds_prometheus_and_alertmanager_and_publishes_only_a_given_port(settings, monitored):
    assert "prometheus" not in Environment(settings, select()).services
    env = monitored()
    assert ("prometheus", "alertmanager") == tuple(s for s in env.services if s in ("prometheus", "alertmanager"))
    assert container_spec(env, env.container("prometheus"), 2).ports == ()
    published = monitored(prometheus_port=19090)
    assert container_spec(published, published.container("prometheus"), 2).ports == ((9090, 19090),)
    assert {i.name for i in env.images} >= {"atelier-prometheus"}
    assert env.container("alertmanager").image.name == "atelier-prometheus"


def test_prometheus_scrapes_every_server_with_its_labels_and_maps_the_notes_names(monitored):
    env = monitored()
    files = runtime_files(env, env.container("prometheus"))
    config = yaml.safe_load(files["etc/atelier/prometheus.yml"][0])
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "postgres")
    assert job["file_sd_configs"] == [{"files": ["/etc/atelier/targets/*.json"]}]
    renames = [(r["regex"], r["replacement"]) for r in job["metric_relabel_configs"]]
    assert renames == [("pg_stat_activity_count", "pg_stat_activity_state_count"),
                       ("pg_atelier_activity_count", "pg_stat_activity_count")]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"{env.service_address('alertmanager')}:9093"]
    assert config["rule_files"] == ["/etc/prometheus/atelier-rules/*.yml"]  # the note's, as built
    servers = files["etc/atelier/prometheus-servers"][0].decode().splitlines()
    assert "debian12-pg15-standby 172.30.12.45 debian12 15" in servers and len(servers) == len(env.servers)
    assert "etc/atelier/rules/postgresql-alerts.yml" not in files
    assert "etc/atelier/alertmanager.yml" in runtime_files(env, env.container("alertmanager"))


def test_alert_for_shortens_every_for_in_the_running_copy_only(monitored):
    env = monitored(alert_for="30s")
    files = runtime_files(env, env.container("prometheus"))
    assert yaml.safe_load(files["etc/atelier/prometheus.yml"][0])["rule_files"] == ["/etc/atelier/rules/*.yml"]
    copy = files["etc/atelier/rules/postgresql-alerts.yml"][0].decode()
    rules = yaml.safe_load(copy)["groups"][0]["rules"]
    assert [r["for"] for r in rules] == ["30s", "30s", "30s"]
    assert copy.startswith("# ATELIER_ALERT_FOR=30s: every `for:` below is shortened")
    shipped = yaml.safe_load(RULES_FILE.read_text())["groups"][0]["rules"]
    assert [r["for"] for r in shipped] == ["5m", "15m", "5m"]
    assert [r["expr"] for r in rules] == [r["expr"] for r in shipped]


def test_the_shortened_rules_pass_promtool(tmp_path):
    (tmp_path / "rules.yml").write_text(shortened_rules("0s"))
    run = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_servers_get_the_exporters_login_and_a_monitor_role_only_when_monitoring(settings, monitored):
    plain = Environment(settings, select("debian"))
    assert "etc/atelier/postgres-exporter.env" not in runtime_files(plain, plain.container("debian12-pg15-active"))
    assert "atelier_monitor" not in roles_sql(settings)
    env = monitored(monitor_password="p@ss/w:rd")
    for name in ("debian12-pg15-active", "debian12-pg15-standby", "debian13-pg17-standalone"):
        content, mode = runtime_files(env, env.container(name))["etc/atelier/postgres-exporter.env"]
        assert mode == 0o600
        assert content.decode() == ("DATA_SOURCE_NAME=postgresql://atelier_monitor:p%40ss%2Fw%3Ard@127.0.0.1:5432/"
                                    "postgres?sslmode=disable\n")
    sql = roles_sql(env.settings)
    role = next(line for line in sql.splitlines() if line.startswith("ALTER ROLE atelier_monitor"))
    # INHERIT: pg_monitor's rights are its own only through inheritance.
    assert "LOGIN NOSUPERUSER" in role and " INHERIT " in role and "NOINHERIT" not in role
    assert "GRANT pg_monitor TO atelier_monitor;" in sql


def test_every_server_image_carries_the_exporter_and_the_prometheus_image_checks_the_rules(monitored):
    env = Environment(monitored().settings, select("full"))
    for image in env.images:
        text = dockerfile(image, env.settings)
        if image.kind == "pg":
            assert ("prometheus-postgres-exporter" if image.os.startswith(("debian", "ubuntu"))
                    else "postgres_exporter") in text, image.name
            assert "atelier-postgres-exporter.service" in text
    prometheus = next(i for i in env.images if i.name == "atelier-prometheus")
    context = build_context(prometheus, env.settings)
    assert "RUN promtool check rules /etc/prometheus/atelier-rules/*.yml" in context["Dockerfile"][0].decode()
    assert "prometheus/etc/prometheus/atelier-rules/postgresql-alerts.yml" in context
    assert context["prometheus/usr/local/sbin/atelier-prometheus-targets"][1] == 0o755


def test_the_targets_loop_and_the_entry_script_pass_shellcheck():
    from atelier.render.templates import FILES

    scripts = [FILES / "prometheus/usr/local/sbin" / name for name in ("atelier-monitoring", "atelier-prometheus-targets")]
    scripts.append(FILES / "postgres/usr/local/sbin/atelier-postgres-exporter")
    run = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


@pytest.mark.parametrize("key, value, message", [
    ("ATELIER_ALERT_FOR", "soon", "ATELIER_ALERT_FOR=soon is not a Prometheus duration; valid: empty (the rules' own), "
                                  "or a number and a unit of ms, s, m, h, d, w, y, like 0s, 30s or 2m"),
    ("ATELIER_MONITORING", "maybe", "ATELIER_MONITORING=maybe is not a yes/no value"),
    ("ATELIER_PROMETHEUS_PORT", "8022", "must differ"),
])
def test_bad_monitoring_settings_are_one_line(key, value, message):
    with pytest.raises(AtelierError) as refused:
        parse_settings({key: value}, Path("."))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_alerts_are_read_from_prometheus_answer_firing_first():
    data = {"alerts": [
        {"labels": {"alertname": "LowCacheHitRatio", "severity": "warning", "container": "d14-s", "datname": "cold"},
         "state": "pending", "activeAt": "2026-12-02T18:00:00.5Z", "value": "0.41"},
        {"labels": {"alertname": "ReplicationLag", "severity": "critical", "container": "d12-a",
                    "standby": "d12_s", "seen_from": "primary"},
         "state": "firing", "activeAt": "2026-12-02T18:00:10.123456789Z", "value": "1.3e+08"}]}
    found = alerts_of(data)
    assert [(a.name, a.state, a.server) for a in found] == [
        ("ReplicationLag", "firing", "d12-a (standby d12_s)"), ("LowCacheHitRatio", "pending", "d14-s (datname cold)")]
    assert found[0].critical_and_firing and not found[1].critical_and_firing
    line = alert_line(found[0], found[0].since + 42)
    assert line.startswith("FIRING   ReplicationLag") and "value 1.3e+08" in line and "(42 s)" in line
    assert summary(found) == "alerts: 1 firing (1 critical), 1 pending; `inv db.alerts` lists them"
    assert summary([]) == "alerts: 0 firing (0 critical), 0 pending"
    assert summary([], "0s") == "alerts: 0 firing (0 critical), 0 pending (every `for:` shortened to 0s)"


def test_since_takes_a_number_and_a_unit_or_is_one_line():
    from atelier.dba.prometheus import parse_since

    assert [parse_since(x) for x in ("90s", "30m", "1h", "2d")] == [90, 1800, 3600, 172800]
    for bad in ("nonsense", "0m", "1.5h", "-1h", "10"):
        with pytest.raises(AtelierError) as refused:
            parse_since(bad)
        assert str(refused.value) == (f"--since {bad} is not a duration; valid: a number and s, m, h or d, "
                                      "like 30m or 1h")


def test_the_chart_draws_each_expression_per_server(tmp_path):
    from atelier.dba.prometheus import NOTE_EXPRESSIONS, chart

    now = 1_796_000_000
    series = {title: {"debian12-pg15-active": [(now + 5 * i, 0.1 * i) for i in range(10)],
                      "debian12-pg15-standby": [(now + 5 * i, 0.05 * i) for i in range(10)]}
              for title, _, _ in NOTE_EXPRESSIONS}
    path = tmp_path / "metrics" / "chart.png"
    chart(series, path, "1h")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
