"""The daemon end to end, as a real subprocess: /status, /metrics, /healthz, /readyz, reloads, auth,
graceful stop."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import Daemon
from tests.helpers import client_sockets, require
from tests.peers.web import Peers


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def base_config(peers: Peers, extra: str = "", server: str = "") -> str:
    return (
        f"server:\n  enable_reload_endpoint: true\n{server}"
        "defaults:\n  interval: 1s\n  timeout: 500ms\n"
        "targets:\n"
        f"  - {{name: api, kind: http, url: '{peers.url('/nest/ok')}', body_status_field: status}}\n"
        f"  - {{name: cache, kind: tcp, critical: false, address: '{peers.address('closed')}'}}\n" + extra
    )


@pytest.fixture
def daemon(peers: Peers, tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(write(tmp_path / "prober.yaml", base_config(peers)))
    yield running
    running.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_status_and_metrics(daemon: Daemon) -> None:
    daemon.wait_until(lambda: daemon.get("/readyz")[0] == 200, what="first results")
    code, body = daemon.status()
    assert code == 200  # an optional target down: degraded, still 200
    assert body["status"] == "degraded"
    assert set(body) == {"status", "timestamp", "uptime_seconds", "version", "checks"}
    api, cache = body["checks"]["api"], body["checks"]["cache"]
    assert api["status"] == "ok" and api["critical"] is True and api["kind"] == "http"
    assert api["latency_ms"] > 0 and api["last_success"] and api["message"] == "HTTP 200, status=ok"
    assert cache["status"] == "unhealthy" and cache["reason"] == "refused" and cache["last_success"] is None
    text = daemon.metrics()
    assert value(text, "prober_up", target="api", kind="http") == 1
    assert value(text, "prober_up", target="cache", kind="tcp") == 0
    assert value(text, "prober_status", target="cache", kind="tcp", status="unhealthy") == 1
    assert value(text, "prober_status", target="cache", kind="tcp", status="ok") == 0
    assert value(text, "prober_overall_status", status="degraded") == 1
    assert value(text, "prober_target_critical", target="cache", kind="tcp") == 0
    assert (value(text, "prober_probe_failures_total", target="cache", kind="tcp", reason="refused") or 0) >= 1
    assert value(text, "prober_failure_reason_info", target="cache", kind="tcp", reason="refused") == 1
    assert (value(text, "prober_probes_total", target="api", kind="http") or 0) >= 1
    assert (value(text, "prober_probe_duration_seconds_count", target="api", kind="http") or 0) >= 1
    assert value(text, "prober_probe_phase_duration_seconds", target="api", kind="http", phase="request") is not None
    assert value(text, "prober_config_last_reload_successful") == 1
    assert value(text, "prober_scheduler_jobs") == 2
    assert any(name == "prober_build_info" for name, _ in samples(text))


def test_promtool_check_metrics_is_clean(daemon: Daemon) -> None:
    promtool = require("promtool")
    daemon.wait_until(lambda: daemon.get("/readyz")[0] == 200, what="first results")
    checked = subprocess.run([promtool, "check", "metrics"], input=daemon.metrics(), capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stdout + checked.stderr


def test_openmetrics_when_asked(daemon: Daemon) -> None:
    status, headers, body = daemon.request(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_unhealthy_critical_target_answers_503(peers: Peers, tmp_path: Path) -> None:
    config = write(
        tmp_path / "p.yaml",
        "defaults: {interval: 1s, timeout: 500ms}\n"
        f"targets:\n  - {{name: api, kind: http, url: '{peers.url('/nest/unhealthy')}', body_status_field: status}}\n",
    )
    running = Daemon(config)
    try:
        running.wait_until(lambda: running.status()[1].get("status") == "unhealthy", what="unhealthy")
        code, body = running.status()
        assert code == 503
        assert body["checks"]["api"]["reason"] == "assertion"
        assert "HTTP 503" in body["checks"]["api"]["message"]
    finally:
        running.stop()


def test_readyz_waits_for_first_results(peers: Peers, tmp_path: Path) -> None:
    config = write(
        tmp_path / "p.yaml",
        "defaults: {interval: 10s, timeout: 3s}\n"
        f"targets:\n  - {{name: slow, kind: http, url: '{peers.url('/slow?ms=1500')}'}}\n",
    )
    running = Daemon(config)
    try:
        assert running.get("/readyz")[0] == 503
        assert running.status()[0] == 503  # unknown before any result
        running.wait_until(lambda: running.get("/readyz")[0] == 200, what="readyz")
    finally:
        running.stop()


def test_sighup_with_a_broken_config_keeps_the_old_one(daemon: Daemon) -> None:
    daemon.wait_until(lambda: daemon.get("/readyz")[0] == 200, what="first results")
    daemon.config.write_text("targets:\n  - {name: api, kind: http, url: 'ftp://nope'}\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_until(lambda: value(daemon.metrics(), "prober_config_last_reload_successful") == 0, what="reload=0")
    assert set(daemon.status()[1]["checks"]) == {"api", "cache"}
    assert value(daemon.metrics(), "prober_scheduler_jobs") == 2
    assert "reload rejected, the previous config keeps running" in daemon.log()
    assert "url: expected an http:// or https:// URL" in daemon.log()


def test_reload_adds_removes_and_keeps_counters(daemon: Daemon, peers: Peers) -> None:
    daemon.wait_until(
        lambda: (value(daemon.metrics(), "prober_probes_total", target="api", kind="http") or 0) >= 2, what="2 runs"
    )
    before = value(daemon.metrics(), "prober_probes_total", target="api", kind="http") or 0
    daemon.config.write_text(
        "server:\n  enable_reload_endpoint: true\n"
        "defaults:\n  interval: 1s\n  timeout: 500ms\n"
        "targets:\n"
        f"  - {{name: api, kind: http, url: '{peers.url('/nest/ok')}', body_status_field: status}}\n"
        f"  - {{name: spring, kind: http, url: '{peers.url('/spring/up')}', body_status_field: status}}\n"
    )
    status, _, body = daemon.request("/-/reload", method="POST")
    assert status == 200, body
    daemon.wait_until(lambda: "spring" in daemon.status()[1]["checks"], what="new target")
    text = daemon.metrics()
    assert (value(text, "prober_probes_total", target="api", kind="http") or 0) >= before  # kept, not reset
    assert value(text, "prober_up", target="cache", kind="tcp") is None  # removed: its series vanished
    assert "cache" not in daemon.status()[1]["checks"]
    assert value(text, "prober_scheduler_jobs") == 2
    assert "config reloaded" in daemon.log()


def test_reload_endpoint_rejects_an_invalid_config(daemon: Daemon) -> None:
    daemon.config.write_text("targets: [{name: x, kind: tcp}]\n")
    status, _, body = daemon.request("/-/reload", method="POST")
    assert status == 400
    assert b"address: required field is missing" in body
    assert value(daemon.metrics(), "prober_config_last_reload_successful") == 0


def test_reload_endpoint_is_off_by_default(peers: Peers, tmp_path: Path) -> None:
    running = Daemon(
        write(tmp_path / "p.yaml", f"targets:\n  - {{name: t, kind: tcp, address: '{peers.address('http')}'}}\n")
    )
    try:
        assert running.request("/-/reload", method="POST")[0] == 403
    finally:
        running.stop()


def test_bearer_token_protects_metrics_status_and_reload(peers: Peers, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-3141592653\n")
    config = write(
        tmp_path / "p.yaml",
        "server:\n  bearer_token_file: token\n"
        f"targets:\n  - {{name: t, kind: tcp, address: '{peers.address('http')}'}}\n",
    )
    running = Daemon(config)
    try:
        for path in ("/metrics", "/status"):
            assert running.get(path)[0] == 401
            assert running.get(path, headers={"Authorization": "Bearer wrong"})[0] == 401
            assert running.get(path, headers={"Authorization": "Bearer tok-3141592653"})[0] in (200, 503)
        assert running.request("/-/reload", method="POST")[0] == 401
        good = {"Authorization": "Bearer tok-3141592653"}
        assert running.request("/-/reload", method="POST", headers=good)[0] == 200
        assert running.get("/healthz")[0] == 200  # the orchestrator needs no token
        assert "tok-3141592653" not in running.log()
    finally:
        running.stop()


def test_sigterm_with_hanging_probes_exits_0_quickly(peers: Peers, tmp_path: Path) -> None:
    hanging = "".join(
        f"  - {{name: hang{i}, kind: http, url: 'http://{peers.address('hang')}/', timeout: 20s}}\n" for i in range(20)
    )
    config = write(tmp_path / "p.yaml", f"defaults: {{interval: 30s, timeout: 20s}}\ntargets:\n{hanging}")
    running = Daemon(config)
    port = peers.ports["hang"]
    running.wait_until(lambda: client_sockets(port) >= 20, what="20 runs in flight")
    tasks = Path(f"/proc/{running.process.pid}/task").glob("*/children")
    assert all(not path.read_text().strip() for path in tasks)  # the daemon starts no child processes
    started = time.monotonic()
    running.signal(signal.SIGTERM)
    code = running.process.wait(10)
    elapsed = time.monotonic() - started
    running.stop()
    assert code == 0, running.log()
    assert elapsed < 5, elapsed
    assert "stopped" in running.log()
    assert client_sockets(port) == 0  # every connection it had open is closed
    assert not Path(f"/proc/{running.process.pid}").exists()


def test_state_changes_are_logged_once(daemon: Daemon) -> None:
    daemon.wait_until(lambda: (value(daemon.metrics(), "prober_probes_total", target="cache", kind="tcp") or 0) >= 3)
    log = daemon.log()
    assert log.count("target=cache kind=tcp unknown -> unhealthy reason=refused") == 1
    assert log.count("target=api kind=http unknown -> ok") == 1


def test_json_logs(peers: Peers, tmp_path: Path) -> None:
    import json

    running = Daemon(write(tmp_path / "p.yaml", base_config(peers)), "--log-format", "json")
    try:
        running.wait_until(lambda: "unknown -> unhealthy" in running.log())
    finally:
        running.stop()
    lines = [json.loads(line) for line in running.log().splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)


def test_two_shards_split_the_targets(peers: Peers, tmp_path: Path) -> None:
    names = [f"svc-{i}" for i in range(12)]
    lines = "".join(f"  - {{name: {n}, kind: tcp, address: '{peers.address('http')}'}}\n" for n in names)
    config = write(tmp_path / "p.yaml", f"targets:\n{lines}")
    shards = [Daemon(config, "--shard", f"{index}/2") for index in range(2)]
    try:
        seen = [set(shard.status()[1]["checks"]) for shard in shards]
        assert seen[0] | seen[1] == set(names) and not seen[0] & seen[1]
        for shard, mine in zip(shards, seen, strict=True):
            text = shard.metrics()
            assert value(text, "prober_targets") == len(mine)
            assert value(text, "prober_config_targets") == len(names)
    finally:
        for shard in shards:
            shard.stop()


def test_bad_shard_is_a_clean_error(tmp_path: Path) -> None:
    from tests.helpers import run_cli

    done = run_cli("run", "-c", str(write(tmp_path / "p.yaml", "targets: []\n")), "--shard", "2/2")
    assert done.returncode == 2
    assert "--shard: shard index must be in 0..1" in done.stderr


def test_uvloop_opt_in(peers: Peers, tmp_path: Path) -> None:
    running = Daemon(write(tmp_path / "p.yaml", base_config(peers)), env={"PROBER_UVLOOP": "1"})
    try:
        running.wait_until(lambda: running.get("/readyz")[0] == 200, what="first results")
        assert running.status()[1]["checks"]["api"]["status"] == "ok"
        pid = running.process.pid
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "uvloop" in maps  # the loop really is uvloop's
    finally:
        assert running.stop() == 0


def test_duration_buckets_from_the_config_and_on_reload(daemon: Daemon, peers: Peers) -> None:
    def buckets() -> set[str]:
        found = samples(daemon.metrics())
        return {
            dict(labels)["le"]
            for (name, labels) in found
            if name == "prober_probe_duration_seconds_bucket" and dict(labels).get("target") == "api"
        }

    daemon.wait_until(lambda: len(buckets()) == 12, what="the default 11 buckets and +Inf")
    daemon.config.write_text(
        base_config(peers).replace("targets:\n", "metrics:\n  duration_buckets: [0.5]\ntargets:\n")
    )
    daemon.signal(signal.SIGHUP)
    daemon.wait_until(lambda: buckets() == {"0.5", "+Inf"}, what="the configured bucket")
    assert "run latency histograms use buckets [0.5]" in daemon.log()
