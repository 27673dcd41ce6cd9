"""The grpc probe against real grpcio servers running grpcio-health-checking's servicer (statuses switched
while the prober runs), and hostile peers: an HTTP/1.1 server on the port, TLS mismatches, garbage."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import ValidationError

from prober.probes import ProbeContext
from prober.probes.grpc import GrpcTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import run_cli
from tests.peers.grpc_health import NOT_SERVING, SERVING, TOKEN, GrpcServer
from tests.peers.web import Peers, hello_http_server


@pytest.fixture(scope="module")
def server() -> Iterator[GrpcServer]:
    started = GrpcServer()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[bytes, bytes], Path]:
    """(the CA file, the server's (chain, key), another CA's file)."""
    directory = tmp_path_factory.mktemp("grpc-tls")
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert(
        "localhost", "127.0.0.1", not_after=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=90)
    )
    ca_file, other_file = directory / "ca.pem", directory / "other.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other.cert_pem.write_to_path(str(other_file))
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return ca_file, (chain, leaf.private_key_pem.bytes()), other_file


def target(address: str, **fields: Any) -> GrpcTarget:
    return GrpcTarget.model_validate({"name": "api", "kind": "grpc", "address": address, "timeout": "2s", **fields})


async def probe(ctx: ProbeContext, address: str, **fields: Any) -> Result:
    return await run_probe(target(address, **fields), ctx)


async def test_serving(ctx: ProbeContext, server: GrpcServer) -> None:
    result = await probe(ctx, server.address)
    assert result.state is State.OK, result.message
    assert result.message == "health of the server: SERVING"
    assert result.details == {"status": "SERVING", "service": ""}
    assert set(result.phases) == {"connect", "check"}


async def test_statuses_switched_while_probing(ctx: ProbeContext, server: GrpcServer) -> None:
    server.set("orders", SERVING)
    orders = target(server.address, service="orders")
    assert (await run_probe(orders, ctx)).state is State.OK
    server.set("orders", NOT_SERVING)
    result = await run_probe(orders, ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION)
    assert result.message == "health of 'orders': NOT_SERVING"
    server.set("orders", SERVING)
    assert (await run_probe(orders, ctx)).state is State.OK


async def test_unknown_service_is_assertion(ctx: ProbeContext, server: GrpcServer) -> None:
    result = await probe(ctx, server.address, service="nope")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION)
    assert result.message == "health of 'nope': SERVICE_UNKNOWN"
    assert result.details["status"] == "SERVICE_UNKNOWN"


async def test_server_without_the_health_service_is_protocol(ctx: ProbeContext) -> None:
    bare = GrpcServer(with_health=False)
    try:
        result = await probe(ctx, bare.address)
    finally:
        bare.stop()
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL)
    assert result.message.startswith("the server has no health service (UNIMPLEMENTED"), result.message


async def test_metadata_and_bearer_token(ctx: ProbeContext) -> None:
    guarded = GrpcServer(token=True)
    try:
        missing = await probe(ctx, guarded.address)
        wrong = await probe(ctx, guarded.address, bearer_token="wrong-token")
        right = await probe(ctx, guarded.address, bearer_token=TOKEN)
        header = await probe(ctx, guarded.address, metadata={"authorization": f"Bearer {TOKEN}"})
    finally:
        guarded.stop()
    for failed in (missing, wrong):
        assert (failed.state, failed.reason) == (State.UNHEALTHY, Reason.AUTH)
        assert failed.message == "health check failed: UNAUTHENTICATED: missing or wrong token"
    assert right.state is State.OK, right.message
    assert header.state is State.OK, header.message


async def test_slow_server_is_deadline_exceeded(ctx: ProbeContext) -> None:
    slow = GrpcServer(slow=1.0)
    try:
        result = await probe(ctx, slow.address, timeout="500ms")
    finally:
        slow.stop()
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT)
    assert result.latency is not None and result.latency < 0.6


async def test_stopped_server_is_refused(ctx: ProbeContext) -> None:
    stopped = GrpcServer()
    assert (await probe(ctx, stopped.address)).state is State.OK
    stopped.stop()
    result = await probe(ctx, stopped.address)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED)
    assert result.message == "connection refused"


async def test_tls(ctx: ProbeContext, tls_files: tuple[Path, tuple[bytes, bytes], Path]) -> None:
    ca_file, pair, other_ca = tls_files
    secure = GrpcServer(tls=pair)
    try:
        ok = await probe(ctx, f"localhost:{secure.port}", ca_file=str(ca_file))
        untrusted = await probe(ctx, f"localhost:{secure.port}", ca_file=str(other_ca))
        wrong_name = await probe(ctx, f"localhost:{secure.port}", ca_file=str(ca_file), server_name="other.example")
        plaintext = await probe(ctx, f"localhost:{secure.port}")
    finally:
        secure.stop()
    assert ok.state is State.OK, ok.message
    assert set(ok.phases) == {"dns", "connect", "tls", "check"}
    assert ok.details["certificate"]["days_left"] > 80
    assert "tls_cert_not_after_timestamp_seconds" in ok.gauges
    for failed in (untrusted, wrong_name):
        assert (failed.state, failed.reason) == (State.UNHEALTHY, Reason.TLS), failed.message
        assert failed.message.startswith("certificate verification failed")
    assert (plaintext.state, plaintext.reason) == (State.UNHEALTHY, Reason.PROTOCOL), plaintext.message


async def test_tls_to_a_plaintext_server(ctx: ProbeContext, server: GrpcServer) -> None:
    result = await probe(ctx, server.address, tls=True)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TLS), result.message


async def test_http1_server_on_the_port_is_protocol(ctx: ProbeContext) -> None:
    runner, port = await hello_http_server()
    try:
        result = await probe(ctx, f"127.0.0.1:{port}")
    finally:
        await runner.cleanup()
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL), result.message


@pytest.mark.parametrize(
    ("peer", "reason"), [("garbage", Reason.PROTOCOL), ("close", Reason.PROTOCOL), ("hang", Reason.TIMEOUT)]
)
async def test_hostile_peers(ctx: ProbeContext, peers: Peers, peer: str, reason: Reason) -> None:
    result = await probe(ctx, peers.address(peer), timeout="1s")
    assert (result.state, result.reason) == (State.UNHEALTHY, reason), result.message
    assert len(result.message) < 300 and "\n" not in result.message


async def test_hung_peer_names_the_step(ctx: ProbeContext, peers: Peers) -> None:
    result = await probe(ctx, peers.address("hang"), timeout="1s")
    assert result.message == "no answer within 900ms (waiting for /grpc.health.v1.Health/Check)"


async def test_concurrent_runs_with_changing_status(ctx: ProbeContext, server: GrpcServer) -> None:
    server.set("flappy", SERVING)
    flappy = target(server.address, service="flappy")

    async def flip() -> None:
        for status in (NOT_SERVING, SERVING) * 5:
            await asyncio.sleep(0.01)
            server.set("flappy", status)

    flipping = asyncio.create_task(flip())
    results = await asyncio.gather(*(run_probe(flappy, ctx) for _ in range(40)))
    await flipping
    assert {r.state for r in results} <= {State.OK, State.UNHEALTHY}
    assert all(r.reason in (None, Reason.ASSERTION) for r in results), [r.message for r in results]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"address": "no-port"}, "expected host:port"),
        ({"metadata": {"X-Upper": "v"}}, "not a usable metadata key"),
        ({"metadata": {"grpc-timeout": "1S"}}, "not a usable metadata key"),
        ({"metadata": {"token-bin": "v"}}, "not a usable metadata key"),
        ({"metadata": {"token": "line\nbreak"}}, "printable ASCII"),
    ],
)
def test_bad_config(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GrpcTarget.model_validate({"name": "g", "kind": "grpc", "address": "127.0.0.1:50051", **fields})


def test_prober_once(server: GrpcServer, tmp_path: Path) -> None:
    server.set("billing", NOT_SERVING)
    path = tmp_path / "prober.yaml"
    path.write_text(
        "targets:\n"
        f"  - {{name: api, kind: grpc, address: '{server.address}'}}\n"
        f"  - {{name: billing, kind: grpc, address: '{server.address}', service: billing}}\n"
    )
    done = run_cli("once", "-c", str(path), "--json")
    assert done.returncode == 2, done.stderr  # a critical target unhealthy
    checks = json.loads(done.stdout)["checks"]
    assert checks["api"]["status"] == "ok" and checks["api"]["details"]["status"] == "SERVING"
    assert checks["billing"]["message"] == "health of 'billing': NOT_SERVING"
