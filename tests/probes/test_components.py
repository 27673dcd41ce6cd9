"""Components from health bodies: @nestjs/terminus, Spring Boot Actuator and the IETF health+json draft, as
real applications write them, read from a real HTTP server; one-hot in /metrics and under the check in
/status (the latter through the real daemon)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prober.metrics import ProberCollector, render_collector
from prober.probes import ProbeContext
from prober.probes._components import LIMIT, Style, components, detect
from prober.probes.http import HttpTarget
from prober.runner import run_probe
from prober.status import Board, Reason, Result, State
from tests.daemon import Daemon
from tests.peers.web import Peers

TERMINUS = {  # what @nestjs/terminus answers (503) when the Redis indicator fails
    "status": "error",
    "info": {"database": {"status": "up"}, "storage": {"status": "up"}},
    "error": {"redis": {"status": "down", "message": "connect ECONNREFUSED 127.0.0.1:6379"}},
    "details": {
        "database": {"status": "up"},
        "storage": {"status": "up"},
        "redis": {"status": "down", "message": "connect ECONNREFUSED 127.0.0.1:6379"},
    },
}
SPRING = {  # Spring Boot Actuator with show-components, a composite db
    "status": "UP",
    "components": {
        "db": {"status": "UP", "components": {"primary": {"status": "UP"}, "reports": {"status": "OUT_OF_SERVICE"}}},
        "diskSpace": {"status": "UP", "details": {"free": 1}},
        "ping": {"status": "UP"},
    },
}
IETF = {  # draft-inadarei-api-health-check
    "status": "warn",
    "checks": {
        "postgres:responseTime": [{"componentId": "p1", "status": "pass"}, {"componentId": "p2", "status": "warn"}],
        "uptime": [{"status": "pass", "observedValue": 1209600}],
    },
}


def target(url: str, **fields: Any) -> HttpTarget:
    return HttpTarget.model_validate({"name": "api", "kind": "http", "url": url, "timeout": "2s", **fields})


def states(result: Result) -> dict[str, tuple[str, str]]:
    return {name: (c.state.value, c.reported) for name, c in result.components.items()}


@pytest.mark.parametrize(("body", "style"), [(TERMINUS, "terminus"), (SPRING, "spring"), (IETF, "ietf")])
def test_each_convention_is_recognised_by_its_shape(body: dict[str, Any], style: Style) -> None:
    assert detect(body) == style
    assert components(body, "auto") == components(body, style)


async def test_terminus(peers: Peers, ctx: ProbeContext) -> None:
    url = peers.script("terminus-error", TERMINUS, status=503)
    result = await run_probe(target(url, components="auto", expect_status=[200, 503]), ctx)
    assert states(result) == {"database": ("ok", "up"), "storage": ("ok", "up"), "redis": ("unhealthy", "down")}
    assert (result.state, result.message) == (State.DEGRADED, "components: redis unhealthy")


async def test_spring_nested_components_are_named_with_dots(peers: Peers, ctx: ProbeContext) -> None:
    result = await run_probe(target(peers.script("spring", SPRING), components="spring"), ctx)
    assert states(result) == {
        "db.primary": ("ok", "UP"),
        "db.reports": ("unhealthy", "OUT_OF_SERVICE"),
        "diskSpace": ("ok", "UP"),
        "ping": ("ok", "UP"),
    }


async def test_ietf_takes_the_worst_of_each_check(peers: Peers, ctx: ProbeContext) -> None:
    result = await run_probe(target(peers.script("ietf", IETF), components="ietf"), ctx)
    assert states(result) == {"postgres:responseTime": ("degraded", "degraded"), "uptime": ("ok", "ok")}
    assert result.state is State.DEGRADED


async def test_a_critical_component_down_is_unhealthy_even_when_the_app_says_degraded(
    peers: Peers, ctx: ProbeContext
) -> None:
    body = {"status": "degraded", "checks": {"database": {"status": "down"}, "redis": {"status": "up"}}}
    made = target(peers.script("critical", body), components="auto", critical_components=["database"],
                  body_status_field="status")  # fmt: skip
    result = await run_probe(made, ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION)
    assert result.message == "critical component database down"


async def test_a_critical_component_missing_is_said(peers: Peers, ctx: ProbeContext) -> None:
    body = {"status": "ok", "checks": {"redis": {"status": "up"}}}
    made = target(peers.script("missing", body), components="auto", critical_components=["database"])
    result = await run_probe(made, ctx)
    assert (result.state, result.message) == (State.DEGRADED, "critical component database not reported")


async def test_names_are_sanitised_and_capped(peers: Peers, ctx: ProbeContext) -> None:
    body = {"checks": {f'dep {i}/"x"': {"status": "up"} for i in range(LIMIT + 7)}}
    result = await run_probe(target(peers.script("many", body), components="auto"), ctx)
    assert len(result.components) == LIMIT and result.details["components_omitted"] == 7
    assert "dep_0__x_" in result.components


async def test_components_are_one_hot_in_metrics(peers: Peers, ctx: ProbeContext) -> None:
    made = target(peers.script("terminus-metrics", TERMINUS, status=200), components="terminus")
    board = Board()
    board.apply([made])
    board.targets["api"].record(await run_probe(made, ctx), 1, 1)
    text = render_collector(ProberCollector(board), openmetrics=False)
    lines = [line for line in text.splitlines() if line.startswith("prober_component_status{")]
    assert 'prober_component_status{component="redis",kind="http",status="unhealthy",target="api"} 1.0' in lines
    assert 'prober_component_status{component="redis",kind="http",status="ok",target="api"} 0.0' in lines
    assert len(lines) == 3 * 4  # three components, one line per state


def test_components_under_the_check_in_status(peers: Peers, tmp_path: Path) -> None:
    url = peers.script("terminus-status", TERMINUS, status=503)
    path = tmp_path / "prober.yaml"
    path.write_text(
        "defaults: {interval: 1s, timeout: 500ms}\ntargets:\n"
        f"  - {{name: api, kind: http, url: '{url}', components: auto, expect_status: [200, 503]}}\n"
    )
    daemon = Daemon(path)
    try:
        daemon.wait_until(lambda: daemon.get("/readyz")[0] == 200, what="first result")
        check = daemon.status()[1]["checks"]["api"]
    finally:
        daemon.stop()
    assert check["components"]["redis"] == {"status": "unhealthy", "reported": "down"}
    assert json.dumps(check["details"]).find("redis") == -1  # components are not repeated in details
