"""The ``minio`` kind against a real S3 server with signature checks (seaweedfs ``weed``), MinIO's health endpoints
reproduced by a small front, and hostile peers. Every case goes through ``run_probe`` (the real path)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
from minio import Minio
from pydantic import SecretStr, TypeAdapter, ValidationError

from prober.config import validate
from prober.errors import ConfigError
from prober.models import TargetBase
from prober.probes import ProbeContext, Target
from prober.probes.minio import CANARY_PREFIX, MinioTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import free_port, run_cli
from tests.peers import minio as peers
from tests.peers.minio import ACCESS_KEY, BUCKET, READ_QUORUM, SECRET_KEY, WRITE_QUORUM, MinioFront, running_weed
from tests.peers.minio import Weed as WeedServer

# the peers' fixtures, made visible to pytest in this module
weed = peers.weed
minio_front_session = peers.minio_front_session
minio_front = peers.minio_front

TARGETS = TypeAdapter[TargetBase](Target)


def target(endpoint: str, **fields: Any) -> MinioTarget:
    data = {"name": "store", "kind": "minio", "endpoint": endpoint, "timeout": "5s", **fields}
    made = TARGETS.validate_python(data)
    assert isinstance(made, MinioTarget)
    return made


def s3_fields(**extra: Any) -> dict[str, Any]:
    return {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "bucket": BUCKET, **extra}


def assert_no_secret(result: Result, secret: str = SECRET_KEY) -> None:
    assert secret not in result.message
    assert secret not in json.dumps(result.details, default=str)
    assert secret not in json.dumps(result.info)


def canary_objects(endpoint: str) -> list[str]:
    """Objects left under the canary prefix (read with a client of the test's own)."""
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=5))
    try:
        client = Minio(endpoint.split("://")[1], ACCESS_KEY, SECRET_KEY, secure=False, http_client=pool)
        return [o.object_name for o in client.list_objects(BUCKET, prefix=CANARY_PREFIX, recursive=True) if o.size]
    finally:
        pool.clear()


# --- the happy paths ---------------------------------------------------------------------------


async def test_ok_health_and_bucket(minio_front: MinioFront, ctx: ProbeContext) -> None:
    result = await run_probe(target(minio_front.url(), **s3_fields()), ctx)
    assert result.state is State.OK, result.message
    assert result.reason is None
    assert result.details["health"]["live_status"] == 200
    assert result.details["health"]["cluster_status"] == 200
    assert result.details["health"]["write_quorum"] == WRITE_QUORUM
    assert result.details["bucket"] == BUCKET
    assert set(result.phases) == {"health", "bucket"}
    assert "/minio/health/cluster/read" not in minio_front.seen  # only asked when write quorum is lost
    assert_no_secret(result)


async def test_canary_round_trip(minio_front: MinioFront, ctx: ProbeContext) -> None:
    result = await run_probe(target(minio_front.url(), **s3_fields(canary_object=True)), ctx)
    assert result.state is State.OK, result.message
    assert "canary round trip ok" in result.message
    assert {"health", "bucket", "canary_put", "canary_get", "canary_delete"} <= set(result.phases)
    assert result.details["canary_object"].startswith(CANARY_PREFIX + "store-")
    assert canary_objects(minio_front.url()) == []  # written, read back, deleted
    assert_no_secret(result)


async def test_any_s3_store_without_health_endpoints(weed: WeedServer, ctx: ProbeContext) -> None:
    """weed itself has no /minio/health/*: with health_endpoints off the same kind checks it."""
    result = await run_probe(target(weed.endpoint, health_endpoints=False, **s3_fields(canary_object=True)), ctx)
    assert result.state is State.OK, result.message
    assert "health" not in result.phases and "health" not in result.details


async def test_health_endpoints_on_a_store_without_them(weed: WeedServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(weed.endpoint, **s3_fields()), ctx)
    assert result.state is State.UNHEALTHY
    assert result.reason is Reason.ASSERTION
    assert "/minio/health/live answered HTTP" in result.message


async def test_keys_without_bucket_list_buckets(weed: WeedServer, ctx: ProbeContext) -> None:
    keys = {"access_key": ACCESS_KEY, "health_endpoints": False}
    good = await run_probe(target(weed.endpoint, secret_key=SECRET_KEY, **keys), ctx)
    assert good.state is State.OK, good.message
    assert good.details["buckets_visible"] >= 1 and "auth" in good.phases
    bad = await run_probe(target(weed.endpoint, secret_key="nope", **keys), ctx)
    assert (bad.state, bad.reason) == (State.UNHEALTHY, Reason.AUTH)


async def test_https_with_ca_file(minio_front: MinioFront, ctx: ProbeContext) -> None:
    """https: the health endpoints (aiohttp) and S3 (urllib3) both verify against ca_file."""
    probe = target(minio_front.url("tls"), ca_file=str(minio_front.ca_file), **s3_fields(canary_object=True))
    result = await run_probe(probe, ctx)
    assert result.state is State.OK, result.message
    assert {"health", "bucket", "canary_put", "canary_get", "canary_delete"} <= set(result.phases)


@pytest.mark.parametrize("health", [True, False], ids=["health-endpoints", "s3-only"])
async def test_https_unknown_ca_is_tls(minio_front: MinioFront, ctx: ProbeContext, health: bool) -> None:
    result = await run_probe(target(minio_front.url("tls"), health_endpoints=health, **s3_fields()), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TLS), result.message
    assert "certificate verify failed" in result.message or "certificate verification failed" in result.message


# --- S3 failures -------------------------------------------------------------------------------


async def test_wrong_secret_is_auth(minio_front: MinioFront, ctx: ProbeContext) -> None:
    wrong = "definitely-not-the-secret-42"
    result = await run_probe(target(minio_front.url(), **s3_fields(secret_key=wrong)), ctx)
    assert result.state is State.UNHEALTHY
    assert result.reason is Reason.AUTH
    assert "SignatureDoesNotMatch" in result.message
    assert_no_secret(result, wrong)


async def test_unknown_access_key_is_auth(weed: WeedServer, ctx: ProbeContext) -> None:
    result = await run_probe(
        target(weed.endpoint, health_endpoints=False, **s3_fields(access_key="no-such-key", region="us-east-1")), ctx
    )
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH)
    assert "InvalidAccessKeyId" in result.message


async def test_missing_bucket_is_assertion(minio_front: MinioFront, ctx: ProbeContext) -> None:
    result = await run_probe(target(minio_front.url(), **s3_fields(bucket="no-such-bucket")), ctx)
    assert result.state is State.UNHEALTHY
    assert result.reason is Reason.ASSERTION
    assert "'no-such-bucket' does not exist" in result.message
    assert_no_secret(result)


async def test_stopped_s3_server_is_refused(tmp_path: Path, ctx: ProbeContext) -> None:
    with running_weed(tmp_path / "weed") as server:
        probe = target(server.endpoint, health_endpoints=False, **s3_fields())
        before = await run_probe(probe, ctx)
        assert before.state is State.OK, before.message
    after = await run_probe(probe, ctx)
    assert (after.state, after.reason) == (State.UNHEALTHY, Reason.REFUSED), after.message
    assert_no_secret(after)


async def test_nothing_listening_on_health_endpoint_is_refused(ctx: ProbeContext) -> None:
    result = await run_probe(target(f"http://127.0.0.1:{free_port()}"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED), result.message


# --- MinIO's health states ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "verdict", "reason", "words"),
    [
        ("healthy", State.OK, None, "cluster healthy"),
        ("no_write_quorum", State.DEGRADED, None, "no write quorum"),
        ("healing", State.DEGRADED, None, "2 drives healing"),
        ("no_read_quorum", State.UNHEALTHY, Reason.ASSERTION, "no read quorum"),
        ("offline", State.UNHEALTHY, Reason.ASSERTION, "server status offline"),
        ("not_live", State.UNHEALTHY, Reason.ASSERTION, "/minio/health/live answered HTTP 503"),
    ],
)
async def test_health_states(
    minio_front: MinioFront, ctx: ProbeContext, state: str, verdict: State, reason: Reason | None, words: str
) -> None:
    minio_front.state = state
    result = await run_probe(target(minio_front.url()), ctx)
    assert result.state is verdict, result.message
    assert result.reason is reason
    assert words in result.message


async def test_health_headers_reported(minio_front: MinioFront, ctx: ProbeContext) -> None:
    minio_front.state = "no_write_quorum"
    result = await run_probe(target(minio_front.url(), **s3_fields()), ctx)
    assert result.state is State.DEGRADED, result.message
    health = result.details["health"]
    assert health["cluster_status"] == 503 and health["cluster_read_status"] == 200
    assert health["write_quorum"] == WRITE_QUORUM and health["read_quorum"] == READ_QUORUM
    assert health["storage_class_defaults"] is True
    assert health["server"] == "MinIO"


async def test_no_write_quorum_skips_the_canary(minio_front: MinioFront, ctx: ProbeContext) -> None:
    minio_front.state = "no_write_quorum"
    result = await run_probe(target(minio_front.url(), **s3_fields(canary_object=True)), ctx)
    assert result.state is State.DEGRADED, result.message
    assert result.details["canary"] == "skipped: no write quorum"
    assert "canary_put" not in result.phases and "bucket" in result.phases


async def test_healing_with_bad_keys_is_auth(minio_front: MinioFront, ctx: ProbeContext) -> None:
    """A degraded cluster does not hide a failing S3 check."""
    minio_front.state = "healing"
    result = await run_probe(target(minio_front.url(), **s3_fields(secret_key="wrong-secret-1")), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH)


# --- silent and hostile peers ------------------------------------------------------------------


@pytest.mark.parametrize("health", [True, False], ids=["health-endpoints", "s3-only"])
async def test_never_answering_server_times_out(minio_front: MinioFront, health: bool) -> None:
    ctx = ProbeContext(blocking_workers=1)
    try:
        probe = target(minio_front.url("hang"), timeout="1s", health_endpoints=health, **s3_fields())
        started = time.monotonic()
        result = await run_probe(probe, ctx)
        elapsed = time.monotonic() - started
        assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result.message
        assert elapsed < 2.5
        # the single worker thread is free again soon after the run: minio-py did not keep waiting
        await asyncio.wait_for(ctx.run_blocking(time.monotonic), 1.5)
    finally:
        await ctx.close()


@pytest.mark.parametrize("peer", ["garbage", "close", "html"])
@pytest.mark.parametrize("health", [True, False], ids=["health-endpoints", "s3-only"])
async def test_garbage_server(minio_front: MinioFront, ctx: ProbeContext, peer: str, health: bool) -> None:
    probe = target(minio_front.url(peer), timeout="2s", health_endpoints=health, **s3_fields(canary_object=True))
    result = await run_probe(probe, ctx)
    assert result.state is State.UNHEALTHY, result.message
    assert result.reason in (Reason.PROTOCOL, Reason.TIMEOUT), result.message
    assert "\n" not in result.message and len(result.message) < 200, result.message  # short, one line
    assert_no_secret(result)


async def test_html_server_fails_as_protocol_with_region_set(minio_front: MinioFront, ctx: ProbeContext) -> None:
    """Without GetBucketLocation, the listing itself must still refuse a non-S3 answer."""
    probe = target(minio_front.url("html"), health_endpoints=False, **s3_fields(region="us-east-1"))
    result = await run_probe(probe, ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL), result.message
    assert "not an S3 answer" in result.message


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"endpoint": "ftp://x:9000"}, "expected http://host:port"),
        ({"endpoint": "http://x:9000/path"}, "no path or query"),
        ({"endpoint": "http://user:pw@x:9000"}, "not in the endpoint"),
        ({"access_key": "a"}, "set both access_key and secret_key"),
        ({"canary_object": True}, "canary_object needs a bucket"),
        ({"health_endpoints": False}, "nothing else to check"),
        ({"access_key": "a", "secret_key": "b", "bucket": "Bad_Bucket!"}, "invalid bucket name"),
    ],
)
def test_config_rejects(fields: dict[str, Any], words: str) -> None:
    data = {"name": "store", "kind": "minio", "endpoint": "http://127.0.0.1:9000", **fields}
    with pytest.raises(ValidationError, match=words):
        TARGETS.validate_python(data)


def test_secret_key_file_is_read_and_redacted(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-a-file-123\n")
    document = {
        "targets": [
            {"name": "store", "kind": "minio", "endpoint": "http://127.0.0.1:9000", "access_key": "k"}
            | {"secret_key_file": "secret", "bucket": "b1b"}
        ]
    }
    config = validate(document, "test.yaml", {}, tmp_path)
    probe = config.targets[0]
    assert isinstance(probe, MinioTarget) and probe.secret_key == SecretStr("from-a-file-123")
    assert "from-a-file-123" in config.secrets()
    both = {"targets": [document["targets"][0] | {"secret_key": "x"}]}
    with pytest.raises(ConfigError, match="set either secret_key or secret_key_file"):
        validate(both, "test.yaml", {}, tmp_path)


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_once_json(minio_front: MinioFront, tmp_path: Path) -> None:
    (tmp_path / "minio-secret").write_text(SECRET_KEY + "\n")
    (tmp_path / "prober.yaml").write_text(
        f"""
targets:
  - name: objects
    kind: minio
    endpoint: {minio_front.url()}
    access_key: {ACCESS_KEY}
    secret_key_file: minio-secret
    bucket: {BUCKET}
    canary_object: true
    timeout: 5s
  - name: objects-wrong-key
    kind: minio
    critical: false
    endpoint: {minio_front.url()}
    access_key: {ACCESS_KEY}
    secret_key: not-the-right-one-77
    bucket: {BUCKET}
"""
    )
    done = run_cli("once", "-c", str(tmp_path / "prober.yaml"), "--json")
    assert SECRET_KEY not in done.stdout + done.stderr
    assert "not-the-right-one-77" not in done.stdout + done.stderr
    status = json.loads(done.stdout)
    good, bad = status["checks"]["objects"], status["checks"]["objects-wrong-key"]
    assert good["status"] == "ok", good
    assert good["kind"] == "minio"
    assert good["details"]["bucket"] == BUCKET
    assert (bad["status"], bad["reason"]) == ("unhealthy", "auth")
    assert status["status"] == "degraded"  # an optional target is unhealthy
    assert done.returncode == 1
