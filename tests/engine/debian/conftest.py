"""The debian profile (PostgreSQL 15 on Debian 12, 17 on Debian 13, 18 on
Debian 14) with the pgbouncer service and monitoring, under a project, subnet and ports of
its own: one environment for the modules of this folder, brought up for the
first of them and removed after the last (package scope), so that it is not
left idling beside other modules' builds. test_replication.py runs last and
leaves its pairs in whatever state its drills end in."""

import pytest

from helpers import brought_up, project_settings


@pytest.fixture(scope="package")
def debian_environ(tmp_path_factory):
    state = tmp_path_factory.mktemp("debian-state")
    values = {**project_settings("ateliertest-repl", "172.20", 25000), "ATELIER_STATE_DIR": str(state),
              "ATELIER_BACKUP_DIR": str(state / "backups"), "ATELIER_BENCH_DIR": str(state / "bench-results"),
              "ATELIER_PGBOUNCER": "1", "ATELIER_PGBOUNCER_PORT": "25432",
              # Prometheus, Alertmanager and the exporters, with every alert's
              # `for:` shortened so that test_monitoring.py sees them fire at once.
              "ATELIER_MONITORING": "1", "ATELIER_PROMETHEUS_PORT": "25090", "ATELIER_ALERT_FOR": "0s"}
    yield from brought_up(values, "debian")
