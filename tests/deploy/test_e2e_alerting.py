"""End to end: a dependency fails, and an alert arrives.

Real PostgreSQL and Redis, the prober daemon (``python -m prober run``), the Debian Prometheus with 1 s
scrape and evaluation intervals loading the shipped alerts.yml (``for:`` shortened by the documented
sed override), and the Debian Alertmanager with the shipped routing tree, its receivers pointed at a
webhook server in this test. The delays from each fault to each notification are printed (run with -s
to see them); the only timed assertion is a generous bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.deploy.stack import (
    Alertmanager,
    Postgres,
    Prober,
    Prometheus,
    Redis,
    alertmanager_config,
    prometheus_config,
    render_alerts,
    wait_until,
)
from tests.helpers import free_port

BOUND = 90.0  # seconds: generous; the measured delays are printed, not asserted
TOKEN = "webhook-T0ken-for-tests"


@dataclass
class Notification:
    received: float  # time.monotonic()
    path: str
    authorization: str
    body: dict[str, Any]


class Webhook:
    """An aiohttp server collecting Alertmanager's webhook notifications."""

    def __init__(self) -> None:
        self.port = free_port()
        self.notifications: list[Notification] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.notifications.append(
            Notification(time.monotonic(), request.path, request.headers.get("Authorization", ""), body)
        )
        self.arrived.set()
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{receiver}", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def find(
        self, alertname: str, status: str, after: float, **labels: str
    ) -> tuple[Notification, dict[str, Any]] | None:
        for note in self.notifications:
            if note.received < after:
                continue
            for alert in note.body["alerts"]:
                if alert["labels"].get("alertname") != alertname or alert["status"] != status:
                    continue
                if all(alert["labels"].get(k) == v for k, v in labels.items()):
                    return note, alert
        return None

    async def wait_for(
        self, alertname: str, status: str, after: float, **labels: str
    ) -> tuple[Notification, dict[str, Any]]:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            found = self.find(alertname, status, after, **labels)
            if found is not None:
                return found
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout=1.0)
            except TimeoutError:
                pass
        seen = [
            (n.path, [(a["labels"].get("alertname"), a["status"]) for a in n.body["alerts"]])
            for n in self.notifications
        ]
        raise AssertionError(f"no {status} {alertname} {labels} within {BOUND:g}s; notifications: {seen}")


@dataclass
class Stack:
    postgres: Postgres
    redis: Redis
    prober: Prober
    prometheus: Prometheus
    alertmanager: Alertmanager
    webhook_port: int


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    postgres, redis = Postgres().init(), Redis()
    started: list[Any] = []
    try:
        postgres.start()
        redis.start()
        (tmp_path / "pg-password").write_text(postgres.password + "\n")
        (tmp_path / "redis-password").write_text(redis.password + "\n")
        config = {
            "defaults": {"interval": "1s", "timeout": "800ms"},
            "targets": [
                {
                    "name": "db",
                    "kind": "postgres",
                    "critical": True,
                    "dsn": postgres.dsn,
                    "password_file": str(tmp_path / "pg-password"),
                },
                {
                    "name": "cache",
                    "kind": "redis",
                    "critical": False,
                    "url": redis.url,
                    "password_file": str(tmp_path / "redis-password"),
                },
            ],
        }
        prober = Prober(config, tmp_path)
        started.append(prober)
        webhook_port = free_port()
        token_file = tmp_path / "webhook-token"
        token_file.write_text(TOKEN + "\n")
        alertmanager = Alertmanager(alertmanager_config(f"http://127.0.0.1:{webhook_port}", token_file), tmp_path)
        started.append(alertmanager)
        rules = render_alerts("1s", tmp_path / "alerts.fast.yml")
        prometheus = Prometheus(prometheus_config(prober.address, rules, alertmanager.address), tmp_path)
        started.append(prometheus)
        yield Stack(postgres, redis, prober, prometheus, alertmanager, webhook_port)
    finally:
        for process in reversed(started):
            process.stop()
        redis.remove()
        postgres.remove()


def _state(stack: Stack, target: str) -> str:
    rows = stack.prometheus.query(f'prober_status{{target="{target}"}} == 1')
    return str(rows[0]["metric"]["status"]) if rows else "none"


async def test_dependency_failure_reaches_alertmanager_webhook(stack: Stack) -> None:
    webhook = Webhook()
    webhook.port = stack.webhook_port
    await webhook.start()
    try:
        await _scenario(stack, webhook)
    finally:
        await webhook.stop()


async def _scenario(stack: Stack, webhook: Webhook) -> None:
    # Everything healthy, as Prometheus sees it, before any fault.
    await asyncio.to_thread(
        wait_until,
        lambda: _state(stack, "db") == "ok" and _state(stack, "cache") == "ok",
        60,
        "db and cache ok in Prometheus",
        stack.prober.log,
    )
    delays: dict[str, float] = {}

    # 1. The optional Redis stops: the application is degraded, not unhealthy.
    fault = time.monotonic()
    await asyncio.to_thread(stack.redis.stop)
    note, alert = await webhook.wait_for("ProberDependencyDegraded", "firing", fault, target="cache")
    delays["redis stopped -> ProberDependencyDegraded{target=cache} firing"] = note.received - fault
    assert alert["labels"]["kind"] == "redis"
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["reason"] == "refused", alert["labels"]
    assert note.path == "/team", note.path  # severity=warning routes to the team receiver
    assert note.authorization == f"Bearer {TOKEN}"  # the token came from credentials_file
    assert alert["annotations"]["runbook_url"] == "docs/runbooks/ProberDependencyDegraded.md"
    note, alert = await webhook.wait_for("ProberDependencyUnhealthy", "firing", fault, target="cache")
    delays["redis stopped -> ProberDependencyUnhealthy{target=cache,severity=warning} firing"] = note.received - fault
    assert alert["labels"]["severity"] == "warning"
    # ProberOverallUnhealthy must not fire: cache is optional. Give it as long again as Degraded took.
    await asyncio.sleep(min(delays[next(iter(delays))], 10.0))
    assert stack.prometheus.firing("ProberOverallUnhealthy") == []
    assert webhook.find("ProberOverallUnhealthy", "firing", fault) is None
    assert stack.prober.status()["status"] == "degraded"

    # 2. The critical PostgreSQL stops: the application is unhealthy.
    fault = time.monotonic()
    await asyncio.to_thread(stack.postgres.stop)
    note, alert = await webhook.wait_for("ProberDependencyUnhealthy", "firing", fault, target="db")
    delays["postgres stopped -> ProberDependencyUnhealthy{target=db,severity=critical} firing"] = note.received - fault
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["kind"] == "postgres"
    assert alert["labels"]["reason"] == "refused", alert["labels"]
    assert note.path == "/oncall", note.path  # severity=critical routes to the on-call receiver
    note, alert = await webhook.wait_for("ProberOverallUnhealthy", "firing", fault)
    delays["postgres stopped -> ProberOverallUnhealthy firing"] = note.received - fault
    assert alert["labels"]["severity"] == "critical"
    assert "db (postgres)" in alert["annotations"]["description"]
    assert note.path == "/oncall"

    # 3. Both come back: every alert resolves.
    fault = time.monotonic()
    await asyncio.to_thread(stack.postgres.start)
    await asyncio.to_thread(stack.redis.start)
    for name, labels in (
        ("ProberDependencyDegraded", {"target": "cache"}),
        ("ProberDependencyUnhealthy", {"target": "cache"}),
        ("ProberDependencyUnhealthy", {"target": "db"}),
        ("ProberOverallUnhealthy", {}),
    ):
        note, _ = await webhook.wait_for(name, "resolved", fault, **labels)
        delays[f"both restarted -> {name}{labels} resolved"] = note.received - fault
    assert stack.prober.status()["status"] == "ok"

    print("\nfault-to-notification delays (Prometheus 1s scrape/eval, for: 1s, Alertmanager group_wait 1s):")
    for what, seconds in delays.items():
        print(f"  {seconds:6.2f}s  {what}")
