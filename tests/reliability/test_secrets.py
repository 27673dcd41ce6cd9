"""A canary secret in every secret-bearing field of every kind never appears in /metrics, /status, any
log line at any level, `prober once` output, `check-config` output or error messages, including when a
peer echoes what the client sent."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from prober.probes import KINDS
from tests.daemon import Daemon
from tests.helpers import run_cli
from tests.peers.web import Peers

CANARY = "Canary7f3eSecret91"
URL_FIELDS = ("url", "dsn", "uri")  # fields that may carry userinfo (a password) or credentials in the query


def required_cases() -> set[tuple[str, str]]:
    """(kind, field) for every secret field and every URL field of every kind in the registry: a kind
    added without its canary case fails :func:`test_every_secret_field_of_every_kind_has_a_canary`."""
    cases = set()
    for name, kind in KINDS.items():
        fields = set(kind.model.SECRET_FIELDS) | {f for f in URL_FIELDS if f in kind.model.model_fields}
        if "headers" in kind.model.model_fields:
            fields.add("headers")
        cases |= {(name, field) for field in fields}
    return cases


def covered_cases(text: str) -> set[tuple[str, str]]:
    """(kind, field) of every target field that holds the canary."""
    targets = yaml.safe_load(text)["targets"]
    return {(t["kind"], field) for t in targets for field, value in t.items() if CANARY in json.dumps(value)}


def test_every_secret_field_of_every_kind_has_a_canary(peers: Peers, tmp_path: Path) -> None:
    missing = required_cases() - covered_cases(config(peers, tmp_path / "token"))
    assert not missing, f"no canary case for {sorted(missing)}"


def config(peers: Peers, token_file: Path) -> str:
    closed, echo, garbage, http = (peers.address(n) for n in ("closed", "echo", "garbage", "http"))
    targets = [
        f"{{name: web-userinfo, kind: http, url: 'http://probe:{CANARY}@{http}/echo-auth', body_status_field: status}}",
        f"{{name: web-bearer, kind: http, url: 'http://{http}/echo-auth', bearer_token: {CANARY}, "
        "body_status_field: status}",
        f"{{name: web-header, kind: http, url: 'http://{echo}/', headers: {{X-Api-Key: {CANARY}}}}}",
        # a condition quoting a value the peer echoed back: the canary is in the value it saw
        f"{{name: web-condition, kind: http, url: 'http://{http}/echo-auth', bearer_token: {CANARY}, "
        "degraded_if: [\"body.status.startsWith('Bearer')\"]}",
        f"{{name: pg-dsn, kind: postgres, dsn: 'postgresql://app:{CANARY}@{echo}/app'}}",
        f"{{name: pg-password, kind: postgres, dsn: 'postgresql://app@{closed}/app', password: {CANARY}}}",
        f"{{name: pg-garbage, kind: postgres, dsn: 'postgresql://app:{CANARY}@{garbage}/app'}}",
        f"{{name: redis-url, kind: redis, url: 'redis://:{CANARY}@{echo}/0'}}",
        f"{{name: redis-password, kind: redis, url: 'redis://{garbage}/0', password: {CANARY}}}",
        f"{{name: redis-sentinel, kind: redis, url: 'redis://x/0', password: {CANARY}, sentinels: ['{echo}'], "
        f"master_name: m, sentinel_password: {CANARY}}}",
        f"{{name: bullmq-url, kind: bullmq, url: 'redis://:{CANARY}@{echo}/0', queues: [email]}}",
        f"{{name: bullmq-password, kind: bullmq, url: 'redis://{garbage}/0', password: {CANARY}, queues: all}}",
        f"{{name: bullmq-sentinel, kind: bullmq, url: 'redis://x/0', password: {CANARY}, sentinels: ['{echo}'], "
        f"master_name: m, sentinel_password: {CANARY}, queues: [email]}}",
        f"{{name: mongo-uri, kind: mongodb, uri: 'mongodb://app:{CANARY}@{echo}/'}}",
        f"{{name: mongo-password, kind: mongodb, uri: 'mongodb://app@{closed}/', password: {CANARY}}}",
        f"{{name: minio, kind: minio, endpoint: 'http://{echo}', access_key: app, secret_key: {CANARY}, "
        "bucket: uploads}",
        f"{{name: minio-closed, kind: minio, endpoint: 'http://{closed}', access_key: app, secret_key: {CANARY}, "
        "bucket: uploads, health_endpoints: false}",
        f"{{name: ch-url, kind: clickhouse, url: 'http://app:{CANARY}@{http}/db'}}",
        f"{{name: ch-password, kind: clickhouse, url: 'http://app@{echo}/db', password: {CANARY}}}",
    ]
    return (
        f"server:\n  bearer_token_file: {token_file}\n"
        "defaults: {interval: 1s, timeout: 800ms}\n"
        "targets:\n" + "".join(f"  - {t}\n" for t in targets)
    )


def test_canary_never_leaks(peers: Peers, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(f"{CANARY}-token\n")
    path = tmp_path / "prober.yaml"
    path.write_text(config(peers, token))
    outputs: dict[str, str] = {}

    checked = run_cli("check-config", "-c", str(path))
    assert checked.returncode == 0, checked.stderr
    outputs["check-config"] = checked.stdout + checked.stderr
    for flags in ((), ("--json",)):
        once = run_cli("once", "-c", str(path), "--log-level", "debug", *flags)
        assert once.returncode in (1, 2), once.stderr
        outputs[f"once {flags}"] = once.stdout + once.stderr
    statuses = json.loads(run_cli("once", "-c", str(path), "--json").stdout)["checks"]
    assert all(
        check["status"] == "unhealthy"
        for name, check in statuses.items()
        if name not in ("web-userinfo", "web-condition")
    )
    assert statuses["web-condition"]["status"] == "degraded"
    assert statuses["web-condition"]["message"].startswith("degraded: body.status.startsWith('Bearer') (Bearer ***")

    daemon = Daemon(path, "--log-level", "debug")
    try:
        auth = {"Authorization": f"Bearer {CANARY}-token"}
        daemon.wait_until(lambda: daemon.get("/readyz")[0] == 200, what="first results")
        time.sleep(1.5)  # a few more runs, state changes logged
        outputs["/metrics"] = daemon.get("/metrics", headers=auth)[1].decode()
        outputs["/status"] = daemon.get("/status", headers=auth)[1].decode()
        path.write_text(f"targets:\n  - {{name: bad, kind: http, url: 'ftp://u:{CANARY}@host/'}}\n")
        reload = daemon.request("/-/reload", method="POST", headers=auth)
        assert reload[0] == 400
        outputs["/-/reload"] = reload[2].decode()
    finally:
        daemon.stop()
    outputs["log"] = daemon.log()
    bad = run_cli("check-config", "-c", str(path))
    assert bad.returncode == 2
    outputs["check-config (invalid)"] = bad.stdout + bad.stderr

    assert "prober_up" in outputs["/metrics"] and "pg-dsn" in outputs["/status"]
    assert "reload rejected" in outputs["log"] and "ftp://u:***@host/" in outputs["check-config (invalid)"]
    for where, text in outputs.items():
        assert CANARY not in text, f"the canary leaked into {where}"
