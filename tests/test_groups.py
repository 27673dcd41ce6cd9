"""Health groups: ``/status/<group>`` answers for its targets alone, with the same body and 200/503 rule,
so an application's Kubernetes liveness probe can point at a group no dependency failure can fail, and its
readiness at one that includes them. Through the real daemon, the metrics and ``prober once --group``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.daemon import Daemon
from tests.helpers import run_cli
from tests.peers.web import Peers


def config(peers: Peers, server: str = "") -> str:
    return (
        f"{server}defaults: {{interval: 1s, timeout: 500ms}}\n"
        "targets:\n"
        f"  - {{name: api-live, kind: http, url: '{peers.url('/plain')}'}}\n"
        f"  - {{name: api-ready, kind: http, url: '{peers.url('/nest/ok')}', body_status_field: status}}\n"
        f"  - {{name: db, kind: tcp, address: '{peers.address('closed')}'}}\n"  # critical, down
        f"  - {{name: cache, kind: tcp, critical: false, address: '{peers.address('http')}'}}\n"
        "groups:\n"
        "  live: [api-live]\n"
        "  ready: [api-ready, kind:tcp]\n"
        "  optional: ['critical:false']\n"
    )


@pytest.fixture
def daemon(peers: Peers, tmp_path: Path) -> Daemon:
    path = tmp_path / "prober.yaml"
    path.write_text(config(peers))
    running = Daemon(path)
    running.wait_until(lambda: running.get("/readyz")[0] == 200, what="first results")
    return running


def test_groups_answer_for_their_targets_alone(daemon: Daemon) -> None:
    try:
        live_code, live = daemon.get("/status/live")
        ready_code, ready = daemon.get("/status/ready")
        whole_code, whole = daemon.get("/status")
        missing_code, missing = daemon.get("/status/nope")
        metrics = daemon.metrics()
    finally:
        daemon.stop()
    live_body, ready_body, whole_body = json.loads(live), json.loads(ready), json.loads(whole)
    assert (live_code, live_body["status"], live_body["group"]) == (200, "ok", "live")
    assert set(live_body["checks"]) == {"api-live"}  # the dependency that is down is not live's business
    assert (ready_code, ready_body["status"]) == (503, "unhealthy")
    assert set(ready_body["checks"]) == {"api-ready", "db", "cache"}
    assert whole_code == 503 and whole_body["groups"] == {
        "live": {"status": "ok", "targets": ["api-live"]},
        "ready": {"status": "unhealthy", "targets": ["api-ready", "db", "cache"]},
        "optional": {"status": "ok", "targets": ["cache"]},
    }
    assert missing_code == 404 and json.loads(missing)["groups"] == ["live", "optional", "ready"]
    assert 'prober_group_status{group="live",status="ok"} 1.0' in metrics
    assert 'prober_group_status{group="ready",status="unhealthy"} 1.0' in metrics
    assert 'prober_group_status{group="ready",status="ok"} 0.0' in metrics


def test_group_status_needs_the_token_like_status(peers: Peers, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("group-token\n")
    path = tmp_path / "prober.yaml"
    path.write_text(config(peers, server=f"server:\n  bearer_token_file: {tmp_path / 'token'}\n"))
    daemon = Daemon(path)
    try:
        assert daemon.get("/status/live")[0] == 401
        assert daemon.get("/status/live", headers={"Authorization": "Bearer group-token"})[0] in (200, 503)
    finally:
        daemon.stop()


def test_once_probes_one_group_and_exits_by_it(peers: Peers, tmp_path: Path) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text(config(peers))
    live = run_cli("once", "-c", str(path), "--group", "live", "--json")
    assert live.returncode == 0, live.stderr
    assert set(json.loads(live.stdout)["checks"]) == {"api-live"}
    ready = run_cli("once", "-c", str(path), "--group", "ready")
    assert ready.returncode == 2 and "group ready: unhealthy" in ready.stdout
    unknown = run_cli("once", "-c", str(path), "--group", "nope")
    assert unknown.returncode == 3 and "no health group 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
