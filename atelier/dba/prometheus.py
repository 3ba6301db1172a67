"""The prometheus service (ATELIER_MONITORING=1): its HTTP API, asked through
the engine (curl inside its own container), so that it answers whether or not
ATELIER_PROMETHEUS_PORT publishes it, on a local or a remote engine."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from atelier.core.errors import AtelierError
from atelier.core.matrix import PROMETHEUS_PORT
from atelier.core.model import Environment

NOT_ENABLED = "monitoring is not enabled: set ATELIER_MONITORING=1 in .env, then `inv up`"


def require(env: Environment) -> None:
    if not env.settings.monitoring:
        raise AtelierError(NOT_ENABLED)


def api(engine, env: Environment, path: str, **params) -> dict | list:
    """GET /api/v1/<path> of the project's Prometheus: its `data`, or one line."""
    require(env)
    container = engine.container(env.project, "prometheus")
    if container is None or container.status != "running":
        raise AtelierError("the prometheus container is not running: `inv up`")
    url = f"http://localhost:{PROMETHEUS_PORT}/api/v1/{path}" + (f"?{urlencode(params)}" if params else "")
    result = container.exec_run(["curl", "-sS", "-m", "10", url], demux=True)
    out, err = (part.decode(errors="replace") if part else "" for part in result.output)
    if result.exit_code:
        raise AtelierError(f"prometheus did not answer {path}: {err.strip() or result.exit_code}")
    try:
        answer = json.loads(out)
    except ValueError:
        raise AtelierError(f"prometheus answered {path} with something other than JSON: {out[:80]!r}") from None
    if answer.get("status") != "success":
        raise AtelierError(f"prometheus refused {path}: {answer.get('error', out[:80])}")
    return answer["data"]


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # pending | firing
    severity: str
    server: str  # the container, and what in it (a database, a standby) when the alert is about that
    value: float
    since: float  # epoch seconds the alert became active

    @property
    def critical_and_firing(self) -> bool:
        return self.state == "firing" and self.severity == "critical"


def parse_time(text: str) -> float:
    """Prometheus's RFC 3339 times (2026-12-02T18:03:04.123456789Z) as epoch
    seconds; Python reads at most microseconds."""
    from datetime import datetime

    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


def alerts_of(data: dict) -> list[Alert]:
    """The alerts in /api/v1/alerts's data, in a stable order. Pure."""
    out = []
    for item in data.get("alerts", []):
        labels = item.get("labels", {})
        server = labels.get("container", labels.get("instance", "?"))
        detail = [f"{key} {labels[key]}" for key in ("datname", "standby") if labels.get(key)]
        if detail:
            server += f" ({', '.join(detail)})"
        out.append(Alert(labels.get("alertname", "?"), item.get("state", "?"), labels.get("severity", "-"), server,
                         float(item.get("value", "nan")), parse_time(item["activeAt"]) if item.get("activeAt") else 0.0))
    return sorted(out, key=lambda a: (a.state != "firing", a.name, a.server))


def alerts(engine, env: Environment) -> list[Alert]:
    return alerts_of(api(engine, env, "alerts"))


def alert_line(alert: Alert, now: float) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(alert.since)) if alert.since else "-"
    return (f"{alert.state.upper():8} {alert.name:20} {alert.severity:8} {alert.server}  "
            f"value {alert.value:.4g}  since {since} ({max(0, now - alert.since):.0f} s)")


def rules_note(env: Environment) -> str:
    s = env.settings
    return (f"rules: the expert note's, every `for:` shortened to {s.alert_for} (ATELIER_ALERT_FOR)"
            if s.alert_for else "rules: the expert note's, with its own `for:` durations")


def summary(found: list[Alert], alert_for: str = "") -> str:
    """One line for `inv status`; it says when ATELIER_ALERT_FOR shortens the rules."""
    firing = [a for a in found if a.state == "firing"]
    critical = [a for a in firing if a.severity == "critical"]
    pending = len(found) - len(firing)
    return (f"alerts: {len(firing)} firing ({len(critical)} critical), {pending} pending"
            + (f" (every `for:` shortened to {alert_for})" if alert_for else "")
            + ("; `inv db.alerts` lists them" if found else ""))


# ---- db.metrics: the note's four expressions per server ---------------------------------------

# (title, PromQL with {match} for the servers asked about, unit). The note's
# expressions, summed per server where the note's is per database.
NOTE_EXPRESSIONS = (
    ("connection use", "pg_stat_activity_count{{{match}}} / pg_settings_max_connections{{{match}}}", "ratio"),
    ("cache hit ratio", "sum by (container) (pg_stat_database_blks_hit{{{match}}}) / "
                        "(sum by (container) (pg_stat_database_blks_hit{{{match}}}) + "
                        "sum by (container) (pg_stat_database_blks_read{{{match}}}))", "ratio"),
    ("transactions per second", "sum by (container) (rate(pg_stat_database_xact_commit{{{match}}}[5m]) + "
                                "rate(pg_stat_database_xact_rollback{{{match}}}[5m]))", "per s"),
    ("replication lag", "max by (container) (pg_replication_lag_bytes{{{match}}})", "bytes"),
)
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> int:
    """--since: a number and s, m, h or d, as seconds; else one line."""
    match = re.fullmatch(r"([1-9][0-9]*)([smhd])", str(text).strip())
    if not match:
        raise AtelierError(f"--since {text} is not a duration; valid: a number and s, m, h or d, like 30m or 1h")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def server_match(names: list[str]) -> str:
    """The label matcher of the servers asked about (their names are [a-z0-9-])."""
    return f'job="postgres",container=~"{"|".join(names)}"'


def latest(engine, env: Environment, names: list[str]) -> dict[str, dict[str, float]]:
    """server -> title -> the expression's value now."""
    out: dict[str, dict[str, float]] = {name: {} for name in names}
    for title, expr, _ in NOTE_EXPRESSIONS:
        for row in api(engine, env, "query", query=expr.format(match=server_match(names)))["result"]:
            name = row["metric"].get("container")
            if name in out:
                out[name][title] = float(row["value"][1])
    return out


def ranges(engine, env: Environment, names: list[str], seconds: int) -> dict[str, dict[str, list]]:
    """title -> server -> [(epoch seconds, value)] over the last `seconds`."""
    end = time.time()
    step = max(5, seconds // 240)
    out: dict[str, dict[str, list]] = {}
    for title, expr, _ in NOTE_EXPRESSIONS:
        result = api(engine, env, "query_range", query=expr.format(match=server_match(names)),
                     start=f"{end - seconds:.0f}", end=f"{end:.0f}", step=str(step))["result"]
        out[title] = {row["metric"].get("container", "?"): [(float(t), float(v)) for t, v in row["values"]]
                      for row in result}
    return out


def chart(series: dict[str, dict[str, list]], path, since: str) -> None:
    """The four expressions, one panel each, one line per server: a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from datetime import datetime

    figure, panels = plt.subplots(2, 2, figsize=(13, 8), sharex=True)
    for axes, (title, _, unit) in zip(panels.flat, NOTE_EXPRESSIONS):
        for name, points in sorted(series.get(title, {}).items()):
            axes.plot([datetime.fromtimestamp(t) for t, _ in points], [v for _, v in points], label=name)
        axes.set_title(title)
        axes.set_ylabel(unit)
        axes.grid(True, alpha=0.3)
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        if series.get(title):
            axes.legend(fontsize=7)
    for axes, level in ((panels.flat[0], 0.8), (panels.flat[1], 0.95), (panels.flat[3], 1e8)):
        axes.axhline(level, color="red", linestyle=":", linewidth=1)  # the note's alert levels
    figure.suptitle(f"the expert note's expressions, last {since}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def where_the_ui_is(env: Environment) -> str:
    port = env.settings.prometheus_port
    if port:
        return f"Prometheus: http://{env.settings.bind_address}:{port}/ (its graph page and /alerts)"
    return "Prometheus's UI is not published: set ATELIER_PROMETHEUS_PORT in .env, then `inv up`"
