"""Every PromQL expression of the Grafana dashboard and of the Grafana alert rules parses, and returns data
from a real Prometheus that scraped a real prober daemon.

The daemon probes real peers chosen so that every series and every alert exists (health groups, one with
a critical target down, and a health body with components included): PostgreSQL (connection
usage), Redis with maxmemory (memory usage) and a Redis replica (replication lag), BullMQ queues on that Redis
(queue series), backup files 30 hours old and fresh (ProberBackupStale, the backup age), HTTPS and HTTP
applications (phases, a degraded answer), TLS endpoints with a certificate expiring in 10 days and an
expired one, a closed port (refused), and a listener that never answers (a run that never completes:
ProberProbeStale). A second scrape job points at a closed port (ProberDown).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client
import yaml

from tests.deploy.stack import (
    ALERTS,
    Postgres,
    Prober,
    Prometheus,
    Redis,
    prometheus_config,
    render_alerts,
    wait_until,
)
from tests.helpers import ROOT, free_port, require
from tests.peers.web import Peers

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "prober.json"
GRAFANA_RULES = ROOT / "deploy" / "grafana" / "provisioning" / "alerting" / "prober-rules.yml"
# Grafana's variables, replaced as Grafana would with "All" selected.
VARIABLES = {"$__rate_interval": "10s", "$__range": "1m", "$job": ".*", "$instance": ".*", "$target": ".*"}


def substitute(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    return expr


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"{panel['title']} [{target['refId']}]", target["expr"]))
    return found


def dashboard_variables() -> list[tuple[str, str, str]]:
    """(name, metric selector, label) of each label_values(...) variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        found.append((variable["name"], match[1], match[2]))
    return found


def grafana_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(GRAFANA_RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def prometheus_rules() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule for group in document["groups"] for rule in group["rules"]}


def test_every_expression_parses_with_promtool(tmp_path: Path) -> None:
    """promtool parses each expression (as a recording rule), independent of any server."""
    promtool = require("promtool")
    expressions = [substitute(expr) for _, expr in dashboard_queries()]
    expressions += [substitute(selector) for _, selector, _ in dashboard_variables()]
    expressions += [rule["data"][0]["model"]["expr"] for rule in grafana_rules()]
    rules = {
        "groups": [{"name": "parse", "rules": [{"record": f"check:{i}", "expr": e} for i, e in enumerate(expressions)]}]
    }
    path = tmp_path / "parse.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in done.stdout


def test_grafana_rules_are_the_prometheus_rules() -> None:
    """Same alerts, same expressions (verbatim), same for:, labels and runbook links."""
    grafana = {rule["title"]: rule for rule in grafana_rules()}
    prometheus = prometheus_rules()
    assert set(grafana) == set(prometheus)
    for name, rule in prometheus.items():
        mine = grafana[name]
        query = next(d for d in mine["data"] if d["refId"] == "A")
        assert query["model"]["expr"] == rule["expr"], name
        assert query["datasourceUid"] == "prometheus"
        assert mine["for"] == rule["for"], name
        assert mine["labels"] == rule.get("labels", {}), name
        assert mine["annotations"]["runbook_url"] == rule["annotations"]["runbook_url"], name
        threshold = next(d for d in mine["data"] if d["refId"] == mine["condition"])
        assert threshold["model"]["conditions"][0]["evaluator"] == {"type": "gt", "params": [0]}


class BlackHole:
    """A listening socket that never accepts: connections complete in the backlog and never get an answer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def prometheus(peers: Peers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    directory = tmp_path_factory.mktemp("promql")
    postgres, redis, replica, hole = Postgres().init(), Redis(), Redis(), BlackHole()
    started: list[Any] = []
    try:
        postgres.start()
        redis.start_args = ["--maxmemory", "64mb"]
        redis.start()
        with redis_client.Redis(port=redis.port, password=redis.password) as client:  # a BullMQ queue, empty
            client.hset("bull:email:meta", "opts.maxLenEvents", "10000")
        backups = directory / "backups"
        backups.mkdir()
        for name, age in (("stale.dump", 30 * 3600), ("fresh.dump", 60)):
            (backups / name).write_bytes(b"dump" * 1024)
            os.utime(backups / name, (time.time() - age, time.time() - age))
        replica.password = redis.password
        replica.start_args = ["--replicaof", "127.0.0.1", str(redis.port), "--masterauth", redis.password]
        replica.start()
        ca = str(peers.certs.ca_file)
        config = {
            "defaults": {"interval": "1s", "timeout": "800ms"},
            "targets": [
                {"name": "db", "kind": "postgres", "dsn": postgres.dsn, "password": postgres.password},
                {"name": "cache", "kind": "redis", "critical": False, "url": redis.url, "password": redis.password},
                {
                    "name": "cache-replica",
                    "kind": "redis",
                    "critical": False,
                    "url": replica.url,
                    "password": replica.password,
                },
                {"name": "web", "kind": "http", "url": peers.url("/nest/ok", "https"), "ca_file": ca}
                | {"components": "auto"},
                {
                    "name": "web-degraded",
                    "kind": "http",
                    "critical": False,
                    "url": peers.url("/nest/degraded"),
                    "body_status_field": "status",
                },
                {"name": "cert-soon", "kind": "tls", "critical": False, "address": peers.address("tls-soon")}
                | {"server_name": "localhost", "ca_file": ca},
                {"name": "cert-expired", "kind": "tls", "address": peers.address("tls-expired")}
                | {"server_name": "localhost", "ca_file": ca},
                {"name": "down", "kind": "tcp", "critical": False, "address": f"127.0.0.1:{peers.ports['closed']}"},
                {"name": "jobs", "kind": "bullmq", "critical": False, "url": redis.url, "password": redis.password}
                | {"queues": ["email"]},
                {"name": "backup-stale", "kind": "file", "critical": False, "path": str(backups / "stale.dump")},
                {"name": "backup-fresh", "kind": "file", "critical": False, "path": str(backups / "fresh.dump")},
                {
                    "name": "stuck",
                    "kind": "http",
                    "critical": False,
                    "url": f"http://127.0.0.1:{hole.port}/",
                    "interval": "1h",
                    "timeout": "50m",
                },
            ],
            "groups": {"live": ["web"], "ready": ["db", "cert-expired", "web"]},  # ready: a critical target is down
        }
        prober = Prober(config, directory)
        started.append(prober)
        rules = render_alerts("1s", directory / "alerts.fast.yml")
        scrape = prometheus_config(prober.address, rules, alertmanager=None)
        gone = {**scrape["scrape_configs"][0], "job_name": "prober-gone"}
        gone["static_configs"] = [{"targets": [f"127.0.0.1:{free_port()}"]}]
        scrape["scrape_configs"].append(gone)
        server = Prometheus(scrape, directory)
        started.append(server)
        # Every alert of the shipped rules fires in this setup; wait for all of them (and so for enough
        # samples for the dashboard's rate() windows).
        names = set(prometheus_rules())

        def all_firing() -> bool:
            alerts = server.api("alerts")["data"]["alerts"]
            return names <= {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

        wait_until(all_firing, 60, f"all of {sorted(names)} firing", prober.log)
        time.sleep(3)  # a few more scrapes for rate()/increase() over 10s windows
        yield server
    finally:
        for process in reversed(started):
            process.stop()
        hole.close()
        replica.remove()
        redis.remove()
        postgres.remove()


@pytest.mark.parametrize(("panel", "expr"), dashboard_queries(), ids=[p for p, _ in dashboard_queries()])
def test_dashboard_query_returns_data(prometheus: Prometheus, panel: str, expr: str) -> None:
    result = prometheus.query(substitute(expr))
    assert result, f"{panel}: no data for {substitute(expr)}"


@pytest.mark.parametrize(
    ("name", "selector", "label"), dashboard_variables(), ids=[v[0] for v in dashboard_variables()]
)
def test_dashboard_variable_has_values(prometheus: Prometheus, name: str, selector: str, label: str) -> None:
    values = {row["metric"].get(label) for row in prometheus.query(substitute(selector))}
    values.discard(None)
    assert values, f"variable {name}: no {label} values from {selector}"


@pytest.mark.parametrize("rule", grafana_rules(), ids=[r["title"] for r in grafana_rules()])
def test_grafana_rule_query_returns_positive_values(prometheus: Prometheus, rule: dict[str, Any]) -> None:
    """Query A returns the alerting series, each with a value > 0 (what Grafana's threshold C needs)."""
    expr = next(d for d in rule["data"] if d["refId"] == "A")["model"]["expr"]
    result = prometheus.query(expr)
    assert result, f"{rule['title']}: no data"
    for row in result:
        assert float(row["value"][1]) > 0, (rule["title"], row)


EXPECTED_ALERTS = {
    # alert -> (labels) that must be among its firing alerts in this setup
    "ProberDependencyUnhealthy": [
        {"target": "cert-expired", "kind": "tls", "severity": "critical", "reason": "tls"},
        {"target": "down", "kind": "tcp", "severity": "warning", "reason": "refused"},
    ],
    "ProberDependencyDegraded": [
        {"target": "down", "reason": "refused"},
        {"target": "web-degraded", "kind": "http", "reason": "none"},
        {"target": "cert-soon", "kind": "tls", "reason": "none"},
    ],
    "ProberOverallUnhealthy": [{"job": "prober"}],
    "ProberTLSCertificateExpiringSoon": [{"target": "cert-soon", "kind": "tls"}],
    "ProberTLSCertificateExpired": [{"target": "cert-expired", "kind": "tls"}],
    "ProberProbeStale": [{"target": "stuck", "kind": "http", "reason": "none"}],
    "ProberBackupStale": [{"target": "backup-stale", "kind": "file", "reason": "none"}],
    "ProberDown": [{"job": "prober-gone"}],
}


@pytest.mark.parametrize("alertname", sorted(EXPECTED_ALERTS))
def test_prometheus_rule_fires_for_the_right_targets(prometheus: Prometheus, alertname: str) -> None:
    firing = [a["labels"] for a in prometheus.firing(alertname)]
    for expected in EXPECTED_ALERTS[alertname]:
        assert any(expected.items() <= labels.items() for labels in firing), (expected, firing)
    # and never for the healthy targets
    for labels in firing:
        assert labels.get("target") not in {"db", "cache", "cache-replica", "web", "jobs", "backup-fresh"}, labels
