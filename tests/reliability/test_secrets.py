"""A canary secret in every secret-bearing field of every kind never appears in /metrics, /status, any
log line at any level, `prober once` output, `check-config` output or error messages, including when a
peer echoes what the client sent. Nor does one in a URL's credential query parameter (``?api_key=``,
``password=``, ``X-Amz-Signature=``) or one interpolated from a variable whose name marks a secret, wherever
it lands (a URL path, a host, an access key)."""

from __future__ import annotations

import asyncio
import json
import signal
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
        # maps of secrets (headers, metadata, auth payloads)
        fields |= {n for n, f in kind.model.model_fields.items() if str(f.annotation).startswith("dict[str, pydantic")}
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
        f"{{name: ws-url, kind: websocket, url: 'ws://app:{CANARY}@{echo}/'}}",
        f"{{name: ws-bearer, kind: websocket, url: 'ws://{echo}/', bearer_token: {CANARY}}}",
        f"{{name: ws-header, kind: websocket, url: 'ws://{echo}/', headers: {{X-Api-Key: {CANARY}}}}}",
        f"{{name: sio-auth, kind: websocket, url: 'ws://{echo}/', protocol: socketio, auth: {{token: {CANARY}}}}}",
        f"{{name: grpc-bearer, kind: grpc, address: '{echo}', bearer_token: {CANARY}}}",
        f"{{name: grpc-metadata, kind: grpc, address: '{garbage}', metadata: {{x-api-key: {CANARY}}}}}",
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


# --- secrets wherever they are: URL query strings and secret-named variables -------------------------

VARIABLE_CANARY = f"{CANARY}-from-a-variable"
QUERY_CANARY = f"{CANARY}-in-a-query"
# the variables, each name marking a secret (KEY, TOKEN, SECRET, PASSWORD, PWD, CREDENTIAL, AUTH)
VARIABLES = {
    "APP_API_KEY": f"{VARIABLE_CANARY}-1",
    "DB_SECRET_NAME": f"{VARIABLE_CANARY}-2",
    "REDIS_AUTH_USER": f"{VARIABLE_CANARY}-3",
    "MONGO_DB_TOKEN": f"{VARIABLE_CANARY}-4",
    "CH_DB_PWD": f"{VARIABLE_CANARY}-5",
    "MINIO_ACCESS_KEY": f"{VARIABLE_CANARY}-6",
    "S3_CREDENTIAL_BUCKET": f"{VARIABLE_CANARY}-7".lower(),
    "WS_SESSION_TOKEN": f"{VARIABLE_CANARY}-8",
    "QUEUE_AUTH_USER": f"{VARIABLE_CANARY}-9",
}
URL_KINDS = {
    "http": "url",
    "postgres": "dsn",
    "redis": "url",
    "mongodb": "uri",
    "clickhouse": "url",
    "minio": "endpoint",
    "websocket": "url",
    "bullmq": "url",
}


def places_config(peers: Peers) -> str:
    echo, http, closed = (peers.address(n) for n in ("echo", "http", "closed"))
    targets = [
        # a credential query parameter, in every kind whose URL may carry one
        f"{{name: web-query, kind: http, url: 'http://{echo}/configuration?api_key={QUERY_CANARY}-1&language=en'}}",
        f"{{name: web-query-sig, kind: http, url: 'http://{http}/nest/ok?X-Amz-Signature={QUERY_CANARY}-2'}}",
        f"{{name: pg-query, kind: postgres, dsn: 'postgresql://app@{echo}/app?password={QUERY_CANARY}-3'}}",
        f'{{name: pg-keyword, kind: postgres, dsn: "host={closed.split(":")[0]} port={closed.split(":")[1]} '
        f"user=app password='{QUERY_CANARY}-4' dbname=app\"}}",
        f"{{name: mongo-query, kind: mongodb, uri: 'mongodb://{echo}/?tlsCertificateKeyFilePassword={QUERY_CANARY}-5'}}",
        f"{{name: ch-query, kind: clickhouse, url: 'http://{echo}/db?http_header_X-Api-Key={QUERY_CANARY}-6'}}",
        f"{{name: ws-query, kind: websocket, url: 'ws://{echo}/socket?access_token={QUERY_CANARY}-11'}}",
        # a value from a secret-named variable, landing where no secret field is
        f"{{name: web-var, kind: http, url: 'http://{echo}/${{APP_API_KEY}}/health'}}",
        f"{{name: pg-var, kind: postgres, dsn: 'postgresql://app@{echo}/${{DB_SECRET_NAME}}'}}",
        f"{{name: redis-var, kind: redis, url: 'redis://${{REDIS_AUTH_USER}}@{echo}/0'}}",
        f"{{name: mongo-var, kind: mongodb, uri: 'mongodb://{echo}/${{MONGO_DB_TOKEN}}'}}",
        f"{{name: ch-var, kind: clickhouse, url: 'http://{http}/${{CH_DB_PWD}}'}}",
        f"{{name: ws-var, kind: websocket, url: 'ws://{echo}/${{WS_SESSION_TOKEN}}'}}",
        f"{{name: queue-var, kind: bullmq, url: 'redis://${{QUEUE_AUTH_USER}}@{echo}/0', queues: [email]}}",
        f"{{name: minio-var, kind: minio, endpoint: 'http://{echo}', access_key: '${{MINIO_ACCESS_KEY}}', "
        "secret_key: not-the-canary, bucket: '${S3_CREDENTIAL_BUCKET}'}",
    ]
    return "defaults: {interval: 1s, timeout: 800ms}\ntargets:\n" + "".join(f"  - {t}\n" for t in targets)


def covered_places(text: str) -> tuple[set[str], set[str]]:
    """The kinds with a query-string canary, and those with a variable canary, in a URL field."""
    targets = yaml.safe_load(text)["targets"]
    query = {t["kind"] for t in targets if QUERY_CANARY in str(t.get(URL_KINDS[t["kind"]], ""))}
    variable = {t["kind"] for t in targets if "${" in json.dumps(t)}
    return query, variable


def test_every_kind_that_takes_a_url_has_a_canary_in_each_place(peers: Peers) -> None:
    assert set(URL_KINDS) <= set(KINDS), "a kind was renamed"
    url_kinds = {name for name, kind in KINDS.items() if set(kind.model.model_fields) & {*URL_FIELDS, "endpoint"}}
    query, variable = covered_places(places_config(peers))
    # redis (and bullmq, with redis's URL) and minio take no credential query parameter: refused at load (REFUSED)
    assert url_kinds - {"redis", "bullmq", "minio", "tls", "tcp"} <= query, url_kinds - query
    assert url_kinds - {"tls", "tcp"} <= variable, url_kinds - variable


# URLs whose credential parameter the kind refuses: the config error must not echo it
REFUSED = [
    "{name: redis-token, kind: redis, url: 'redis://h:6379/0?token=" + QUERY_CANARY + "-7'}",
    "{name: ch-jwt, kind: clickhouse, url: 'http://h:8123/db?access_token=" + QUERY_CANARY + "-8'}",
    "{name: minio-signed, kind: minio, endpoint: 'http://h:9000/?X-Amz-Signature=" + QUERY_CANARY + "-9'}",
    "{name: pg-typo, kind: postgres, dsn: 'postgresql://h/db?passwrd=" + QUERY_CANARY + "-10'}",
]


def test_canaries_in_query_strings_and_variables_never_leak(peers: Peers, tmp_path: Path) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text(places_config(peers))
    env = {**VARIABLES, "PROBER_CONFIG": ""}
    outputs: dict[str, str] = {}
    for log_format in ("text", "json"):
        checked = run_cli("check-config", "-c", str(path), "--log-format", log_format, env=env)
        assert checked.returncode == 0, checked.stderr
        outputs[f"check-config {log_format}"] = checked.stdout + checked.stderr
        for flags in ((), ("--json",)):
            once = run_cli("once", "-c", str(path), "--log-level", "debug", "--log-format", log_format, *flags, env=env)
            assert once.returncode in (1, 2), once.stderr
            outputs[f"once {log_format} {flags}"] = once.stdout + once.stderr
    assert "web-var" in outputs["check-config text"] and "api_key=***" in outputs["check-config text"]

    daemon = Daemon(path, "--log-level", "debug", "--log-format", "json", env=env)
    try:
        daemon.wait_until(lambda: daemon.get("/readyz")[0] == 200, what="first results")
        time.sleep(1.5)
        outputs["/metrics"] = daemon.get("/metrics")[1].decode()
        outputs["/status"] = daemon.get("/status")[1].decode()
        path.write_text("targets:\n" + "".join(f"  - {t}\n" for t in REFUSED))
        daemon.signal(signal.SIGHUP)
        daemon.wait_until(lambda: "reload rejected" in daemon.log(), what="the reload error")
    finally:
        daemon.stop()
    outputs["log (json, debug)"] = daemon.log()
    refused = run_cli("check-config", "-c", str(path), env=env)
    assert refused.returncode == 2
    outputs["check-config (refused parameters)"] = refused.stdout + refused.stderr
    assert refused.stderr.count("targets[") == len(REFUSED), refused.stderr

    assert "prober_up" in outputs["/metrics"] and "minio-var" in outputs["/status"]
    for where, text in outputs.items():
        assert CANARY.lower() not in text.lower(), f"the canary leaked into {where}"


# --- the rows of the hostile-input review --------------------------------------------------------------


async def test_a_secret_echoed_at_the_edge_of_the_cut_leaves_no_beginning_behind() -> None:
    """A Redis peer answers AUTH with an error quoting the command, password and all. The password is
    longer than a message may be, so the cut falls inside it: masking comes first, so not even its
    beginning shows (before, /status showed 'Canary7f3e...')."""
    from prober.errors import MESSAGE_LIMIT
    from prober.probes import ProbeContext
    from prober.probes.redis import RedisTarget
    from prober.runner import run_probe
    from tests.peers.redis import garbage_peer

    password = CANARY * (MESSAGE_LIMIT // len(CANARY) + 2)
    ctx = ProbeContext()
    try:
        async with garbage_peer("echo-error") as peer:
            target = RedisTarget.model_validate(
                {"name": "r", "kind": "redis", "url": f"redis://:{password}@127.0.0.1:{peer.port}/0", "timeout": "1s"}
            )
            result = await run_probe(target, ctx)
    finally:
        await ctx.close()
    assert "***" in result.message, result.message
    assert CANARY[:6] not in result.message, result.message


async def test_configured_headers_and_cookies_never_reach_another_origin() -> None:
    """An http target with an API key, a cookie and a token, redirected to another origin: the other
    origin receives none of them (only Authorization was dropped before)."""
    from prober.probes import ProbeContext
    from prober.probes.http import HttpTarget
    from prober.runner import run_probe

    received: list[bytes] = []

    async def other_origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    async def first_origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        location = f"http://localhost:{other_port}/landing"
        writer.write(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    other = await asyncio.start_server(other_origin, "127.0.0.1", 0)
    first = await asyncio.start_server(first_origin, "127.0.0.1", 0)
    other_port = other.sockets[0].getsockname()[1]
    ctx = ProbeContext()
    try:
        target = HttpTarget.model_validate(
            {
                "name": "web",
                "kind": "http",
                "url": f"http://127.0.0.1:{first.sockets[0].getsockname()[1]}/start",
                "follow_redirects": True,
                "bearer_token": CANARY,
                "headers": {"X-Api-Key": CANARY, "Cookie": f"session={CANARY}"},
            }
        )
        result = await run_probe(target, ctx)
    finally:
        await ctx.close()
        for server in (first, other):
            server.close()
    assert result.message == "HTTP 200", result.message
    first_request, other_request = received
    assert first_request.count(CANARY.encode()) == 3  # configured for the first origin: all sent there
    assert CANARY.encode() not in other_request, other_request


def test_check_config_masks_what_the_logs_mask(tmp_path: Path) -> None:
    """A password in a DSN's query string (libpq's ?password=) is masked by check-config as by the logs."""
    path = tmp_path / "prober.yaml"
    path.write_text(
        "targets:\n"
        f"  - {{name: db, kind: postgres, dsn: 'postgresql://app@127.0.0.1:1/app?password={CANARY}&sslmode=disable'}}\n"
        f"  - {{name: db2, kind: postgres, dsn: 'postgresql://app@127.0.0.1:1/app?sslmode=disable&password={CANARY}'}}\n"
    )
    checked = run_cli("check-config", "-c", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "password=***" in checked.stdout
    once = run_cli("once", "-c", str(path), "--log-level", "debug")
    for text in (checked.stdout + checked.stderr, once.stdout + once.stderr):
        assert CANARY not in text
