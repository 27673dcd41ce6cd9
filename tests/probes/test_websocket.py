"""The websocket probe against a real python-socketio server and aiohttp WebSocket routes
(tests/peers/realtime.py), and hostile peers: no upgrade, 200 instead of 101, garbage frames, a server that
never answers the ping, a 10 MB frame, a close during the handshake."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from prober.probes import ProbeContext
from prober.probes.websocket import WebsocketTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import run_cli
from tests.peers.realtime import TOKEN, RealtimePeers


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealtimePeers]:
    started = RealtimePeers(tmp_path_factory.mktemp("realtime"))
    started.start()
    yield started
    started.stop()


def target(url: str, **fields: Any) -> WebsocketTarget:
    return WebsocketTarget.model_validate({"name": "rt", "kind": "websocket", "url": url, "timeout": "1s", **fields})


async def probe(ctx: ProbeContext, url: str, **fields: Any) -> Result:
    return await run_probe(target(url, **fields), ctx)


# --- plain WebSocket --------------------------------------------------------------------------------


async def test_ping_pong(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/ws/echo"))
    assert result.state is State.OK, result.message
    assert set(result.phases) == {"connect", "upgrade", "pong"}
    assert 0 < result.details["pong_ms"] < 1000
    assert result.message.startswith("upgraded, pong in")


async def test_send_and_expect(ctx: ProbeContext, rt: RealtimePeers) -> None:
    ok = await probe(ctx, rt.ws("/ws/echo"), send='{"op":"health"}', expect="health")
    assert ok.state is State.OK, ok.message
    assert set(ok.phases) == {"connect", "upgrade", "message", "pong"}
    assert ok.details["message_bytes"] == 15
    assert "message" not in ok.details  # observed for conditions, not shown
    wrong = await probe(ctx, rt.ws("/ws/echo"), send="hello", expect="status")
    assert (wrong.state, wrong.reason) == (State.UNHEALTHY, Reason.ASSERTION)
    assert wrong.message == "the first message does not contain 'status': 'hello'"


async def test_first_message_is_observed_as_json(ctx: ProbeContext, rt: RealtimePeers) -> None:
    from prober.probes import websocket

    observed = await websocket.probe(target(rt.ws("/ws/hello"), receive=True, bearer_token=TOKEN), ctx)
    assert observed.values["message"] == {"status": "ok", "auth": f"Bearer {TOKEN}"}
    text = await websocket.probe(target(rt.ws("/ws/echo"), send="plain words"), ctx)
    assert text.values["message"] == "plain words"


async def test_wss(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/ws/echo", "app-tls"), ca_file=str(rt.certs.ca_file))
    assert result.state is State.OK, result.message
    assert set(result.phases) == {"dns", "connect", "tls", "upgrade", "pong"}
    assert result.details["certificate"]["days_left"] > 300
    assert "tls_cert_not_after_timestamp_seconds" in result.gauges
    untrusted = await probe(ctx, rt.ws("/ws/echo", "app-tls"))
    assert (untrusted.state, untrusted.reason) == (State.UNHEALTHY, Reason.TLS)


async def test_200_instead_of_101(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/ws/plain"))
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL)
    assert result.message == "HTTP 200 instead of 101 Switching Protocols: the server did not upgrade"


async def test_not_found_and_unauthorized(ctx: ProbeContext, rt: RealtimePeers) -> None:
    missing = await probe(ctx, rt.ws("/ws/none"))
    assert (missing.state, missing.reason) == (State.UNHEALTHY, Reason.PROTOCOL)
    assert missing.message.startswith("HTTP 404 instead of 101")


async def test_101_without_upgrade(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/", "no-upgrade"))
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL)
    assert result.message == "101 without 'Upgrade: websocket'"


async def test_garbage_frames(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/", "garbage-frames"))
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL)
    assert result.message.startswith("invalid WebSocket frame"), result.message


async def test_server_that_never_answers_the_ping(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/ws/noping"))
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT)
    assert result.message == "no answer within 900ms (waiting for the pong)"
    unpinged = await probe(ctx, rt.ws("/ws/noping"), ping=False)
    assert unpinged.state is State.OK, unpinged.message


async def test_10_mb_frame_is_refused_from_its_header(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/ws/big"), receive=True)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL)
    assert result.message == "message larger than 1048576 bytes"  # from the frame's header: nothing buffered


async def test_close_during_the_handshake(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/", "close-in-handshake"))
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL), result.message


@pytest.mark.parametrize(
    ("peer", "reason"), [("garbage", Reason.PROTOCOL), ("hang", Reason.TIMEOUT), ("closed", Reason.REFUSED)]
)
async def test_hostile_peers(ctx: ProbeContext, rt: RealtimePeers, peer: str, reason: Reason) -> None:
    result = await probe(ctx, f"ws://{rt.address(peer)}/")
    assert (result.state, result.reason) == (State.UNHEALTHY, reason), result.message
    assert len(result.message) < 300 and "\n" not in result.message


# --- Socket.IO ----------------------------------------------------------------------------------------


async def test_socketio_namespace(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws(""), protocol="socketio")
    assert result.state is State.OK, result.message
    details = result.details
    assert details["sid_received"] is True and details["upgrade"] is True
    assert details["namespace_connected"] is True
    assert (details["ping_interval_ms"], details["ping_timeout_ms"]) == (25000, 20000)
    assert details["max_payload"] == 1000000
    assert 0 < details["connect_ack_ms"] < 1000
    assert "server_ping_ms" not in details  # due in 25 s: not waited for
    assert set(result.phases) == {"connect", "upgrade", "open", "namespace"}
    assert result.message.startswith("Socket.IO namespace / connected in")


async def test_socketio_auth(ctx: ProbeContext, rt: RealtimePeers) -> None:
    ok = await probe(ctx, rt.ws(""), protocol="socketio", namespace="/admin", auth={"token": TOKEN})
    assert ok.state is State.OK, ok.message
    refused = await probe(ctx, rt.ws(""), protocol="socketio", namespace="/admin", auth={"token": "wrong"})
    assert (refused.state, refused.reason) == (State.UNHEALTHY, Reason.ASSERTION)
    assert refused.message == "namespace /admin refused the connection: unauthorized"
    assert refused.details["namespace_connected"] is False and refused.details["connect_error"] == "unauthorized"


async def test_socketio_unknown_namespace(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws(""), protocol="socketio", namespace="/nope")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION)
    assert result.message.startswith("namespace /nope refused the connection"), result.message


async def test_socketio_ack_time_is_the_answer_time(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws(""), protocol="socketio", namespace="/slow", degraded_latency="200ms")
    assert result.state is State.DEGRADED, result.message
    assert result.details["connect_ack_ms"] >= 300
    assert result.latency is not None and result.latency >= 0.3


async def test_socketio_namespace_that_never_answers(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws(""), protocol="socketio", namespace="/silent")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT)
    assert result.message == "no answer within 900ms (waiting for namespace /silent to acknowledge)"


async def test_socketio_server_ping_is_answered_and_timed(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("", "app-fastping"), protocol="socketio", timeout="2s")
    assert result.state is State.OK, result.message
    assert result.details["ping_interval_ms"] == 1000
    assert 900 <= result.details["server_ping_ms"] < 1700
    assert result.latency is not None and result.latency < 0.5  # the wait for the ping is not the answer time
    short = await probe(ctx, rt.ws("", "app-fastping"), protocol="socketio", timeout="800ms")
    assert short.state is State.OK, short.message  # the ping is not due within the run: not waited for
    assert "server_ping_ms" not in short.details
    assert "server ping after" in result.message


async def test_socketio_on_a_plain_websocket_route(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/ws/echo"), protocol="socketio")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT)
    assert result.message.endswith("(waiting for the Engine.IO open packet)")


@pytest.mark.parametrize(
    ("peer", "reason", "message"),
    [
        ("eio-garbage-open", Reason.PROTOCOL, "not an Engine.IO v4 open packet: '0{this is not json'"),
        ("eio-big-open", Reason.PROTOCOL, "message larger than 1048576 bytes"),
        ("eio-silent", Reason.TIMEOUT, "no answer within 900ms (waiting for the Engine.IO open packet)"),
        ("no-upgrade", Reason.PROTOCOL, "101 without 'Upgrade: websocket'"),
    ],
)
async def test_socketio_hostile_peers(
    ctx: ProbeContext, rt: RealtimePeers, peer: str, reason: Reason, message: str
) -> None:
    result = await probe(ctx, rt.ws("", peer), protocol="socketio")
    assert (result.state, result.reason, result.message) == (State.UNHEALTHY, reason, message)


async def test_socketio_over_tls_and_a_custom_path(ctx: ProbeContext, rt: RealtimePeers) -> None:
    result = await probe(ctx, rt.ws("/socket.io/", "app-tls"), protocol="socketio", ca_file=str(rt.certs.ca_file))
    assert result.state is State.OK, result.message
    wrong_path = await probe(ctx, rt.ws("/other/", "app-tls"), protocol="socketio", ca_file=str(rt.certs.ca_file))
    assert (wrong_path.state, wrong_path.reason) == (State.UNHEALTHY, Reason.PROTOCOL)
    assert wrong_path.message.startswith("HTTP 404 instead of 101")


async def test_many_concurrent_runs(ctx: ProbeContext, rt: RealtimePeers) -> None:
    plain, sio = target(rt.ws("/ws/echo")), target(rt.ws(""), protocol="socketio")
    results = await asyncio.gather(*(run_probe(t, ctx) for t in [plain, sio] * 25))
    assert {r.state for r in results} == {State.OK}, {r.message for r in results}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "http://127.0.0.1:1/"}, "expected a ws:// or wss:// URL"),
        ({"protocol": "socketio", "send": "x"}, "send\n  Value error, only with protocol: websocket"),
        ({"protocol": "socketio", "receive": True}, "receive\n  Value error, only with protocol: websocket"),
        ({"namespace": "/admin"}, "namespace\n  Value error, only with protocol: socketio"),
        ({"auth": {"token": "t"}}, "auth\n  Value error, only with protocol: socketio"),
        ({"protocol": "socketio", "namespace": "admin"}, "should match pattern"),
        ({"headers": {"Bad Header": "x"}}, "is not a valid header name"),
    ],
)
def test_bad_config(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WebsocketTarget.model_validate({"name": "w", "kind": "websocket", "url": "ws://127.0.0.1:1/", **fields})


def test_prober_once(rt: RealtimePeers, tmp_path: Path) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text(
        "targets:\n"
        f"  - {{name: ws, kind: websocket, url: '{rt.ws('/ws/echo')}', send: ping, expect: ping}}\n"
        f"  - {{name: sio, kind: websocket, url: '{rt.ws('')}', protocol: socketio}}\n"
    )
    done = run_cli("once", "-c", str(path), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    checks = json.loads(done.stdout)["checks"]
    assert checks["ws"]["details"]["message_bytes"] == 4 and "message" not in checks["ws"]["details"]
    assert checks["sio"]["details"]["namespace_connected"] is True


async def test_a_condition_on_the_first_message_makes_the_run_read_it(ctx: ProbeContext, rt: RealtimePeers) -> None:
    """Without send, expect or receive, a condition that names ``message`` is enough to read it."""
    result = await probe(ctx, rt.ws("/ws/hello"), ping=False, degraded_if=["message.status == 'ok'"])
    assert (result.state, result.message) == (State.DEGRADED, "degraded: message.status == 'ok' (ok)")
