"""``websocket``: a WebSocket endpoint upgrades, answers a ping (and a first message when asked), or, with
``protocol: socketio``, a Socket.IO server opens an Engine.IO v4 session and acknowledges a namespace.

Each run opens a fresh connection with aiohttp's own parts, the way the http kind does (README, "Why
aiohttp"; measured against aiohttp's ``ws_connect`` and the ``websockets`` library in bench/KINDS.md): the
socket is connected by :mod:`._net` (phases ``dns``, ``connect``, ``tls``), the upgrade request is written
with aiohttp's ``StreamWriter`` and its 101 answer parsed by aiohttp's response parser (``upgrade``), and
the frames are read and written by aiohttp's ``WebSocketReader`` (messages capped at ``MAX_MESSAGE``
bytes, checked from the frame header before any payload is read) and ``WebSocketWriter`` (client frames
masked). Pings from the server are answered.

Plain WebSocket: an optional ``send``, the first message (phase ``message``, when ``send``, ``expect`` or
``receive`` asks for it), then a ping and its pong (phase ``pong``).

Socket.IO (the ``websocket`` transport, as Socket.IO clients with ``transports: ["websocket"]`` connect):
``GET <path>?EIO=4&transport=websocket``; the Engine.IO open packet ``0{"sid", "pingInterval",
"pingTimeout", ...}`` (phase ``open``); the Socket.IO CONNECT packet for ``namespace`` (``40`` or
``40/admin,`` with the ``auth`` payload) and its acknowledgement ``40{"sid"}`` or refusal ``44{"message"}``
(phase ``namespace``). In Engine.IO v4 the server pings (``2``) every ``pingInterval`` and the client
answers (``3``): when the next ping is due within the run, the probe waits for it, answers it and
records how late it came; a ping that does not come is not a failure (the default interval, 25 s, is
longer than any timeout).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from aiohttp import WSMsgType
from multidict import CIMultiDict
from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, field_validator
from yarl import URL

from prober.errors import ProbeFailure, Words, driver_errors, shorten
from prober.judge import Observable, Observation, Rule, unhealthy_if
from prober.models import ReadableFile, TargetBase, format_duration
from prober.probes import _aiohttp, _http1
from prober.probes._context import ProbeContext
from prober.probes._kit import Run
from prober.probes._tls import cert_facts, peer_cert_der
from prober.probes.http import _check_headers
from prober.status import Reason

if TYPE_CHECKING:
    from aiohttp._websocket.reader import WebSocketDataQueue
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.http_websocket import WebSocketWriter, WSMessageTextBytes
    from aiohttp.http_websocket import WSMessage as _Decoded

    WSMessage = _Decoded | WSMessageTextBytes

MAX_MESSAGE = 1 << 20  # 1 MiB: a larger message (or Engine.IO packet) is a protocol failure
SOCKETIO_PATH = "/socket.io/"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, 4.2.2
PING_PAYLOAD = b"prober"
PING_WAIT_MARGIN = 0.02  # seconds: a wait for the server's ping ends this long before the run's deadline


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"expected a ws:// or wss:// URL with a host, got {url!r}")
    return url


class WebsocketTarget(TargetBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("bearer_token",)

    kind: Literal["websocket"]
    url: Annotated[str, AfterValidator(_check_url)]
    protocol: Literal["websocket", "socketio"] = "websocket"
    headers: Annotated[dict[str, SecretStr], AfterValidator(_check_headers)] = Field(default_factory=dict)
    bearer_token: SecretStr | None = None
    ca_file: ReadableFile | None = None
    # plain WebSocket
    send: str | None = None  # a text message sent after the upgrade
    expect: str | None = None  # text the first message must contain
    receive: bool = False  # wait for the first message (implied by send, expect and a condition on message)
    ping: bool = True  # ping and time the pong
    # Socket.IO
    namespace: str = Field(default="/", pattern=r"^/[^,?#]*$")
    auth: dict[str, SecretStr] = Field(default_factory=dict)  # the CONNECT packet's payload (handshake.auth)

    @field_validator("send", "expect", "receive")
    @classmethod
    def _plain_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value not in (None, False) and info.data.get("protocol") == "socketio":
            raise ValueError("only with protocol: websocket")
        return value

    @field_validator("namespace", "auth")
    @classmethod
    def _socketio_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value not in ("/", {}) and info.data.get("protocol", "websocket") != "socketio":
            raise ValueError("only with protocol: socketio")
        return value

    def where(self) -> str:
        if self.protocol == "socketio":
            return f"{self.url} (Socket.IO, namespace {self.namespace})"
        return self.url


MODEL = WebsocketTarget

OBSERVES: dict[str, Observable] = {
    "subprotocol": Observable("string", "the Sec-WebSocket-Protocol the server chose, if any"),
    "pong_ms": Observable("double", "websocket: the ping's round trip, milliseconds"),
    "message": Observable(
        "dyn",
        "websocket: the first message (read when send, expect, receive or a condition asks for it): the parsed "
        "JSON when it is JSON, else its text",
        shown=False,
    ),
    "message_bytes": Observable("int", "websocket: the first message's size"),
    "sid_received": Observable("bool", "socketio: the Engine.IO open packet carried a session id"),
    "upgrade": Observable("bool", "socketio: the session runs on an upgraded WebSocket (the transport probed)"),
    "ping_interval_ms": Observable("int", "socketio: the open packet's pingInterval"),
    "ping_timeout_ms": Observable("int", "socketio: the open packet's pingTimeout"),
    "max_payload": Observable("int", "socketio: the open packet's maxPayload, if sent"),
    "namespace_connected": Observable("bool", "socketio: the namespace acknowledged the CONNECT packet"),
    "connect_ack_ms": Observable("double", "socketio: the CONNECT packet's round trip, milliseconds"),
    "connect_error": Observable("string", "socketio: the namespace's refusal (a CONNECT_ERROR's message)"),
    "server_ping_ms": Observable(
        "double", "socketio: when the server's first ping came, milliseconds after the open packet (if within the run)"
    ),
    "certificate": Observable("map", "wss: the server certificate's facts (days_left, not_after, issuer, ...)"),
}


def _refused(target: WebsocketTarget, values: Mapping[str, Any]) -> str | None:
    if values.get("namespace_connected", True):
        return None
    return f"namespace {target.namespace} refused the connection: {values.get('connect_error') or 'no reason given'}"


def _unexpected(target: WebsocketTarget, values: Mapping[str, Any]) -> str | None:
    if target.expect is None or target.expect in values.get("_text", ""):
        return None
    return f"the first message does not contain {target.expect!r}: {shorten(values.get('_text', ''), 80)!r}"


RULES: tuple[Rule, ...] = (unhealthy_if(_refused), unhealthy_if(_unexpected))


# bytes one run may receive (_budget.py): the upgrade's head, a first message (at most 1 MiB) and pongs
BYTE_BUDGET = 4 * 2**20

WORDS: tuple[Words, ...] = ()  # no driver words to read: exception types say it all


def classify(exc: BaseException) -> ProbeFailure | None:
    from aiohttp.http_websocket import WebSocketError, WSCloseCode
    from aiohttp.streams import EofStream

    if isinstance(exc, EofStream):
        return ProbeFailure(Reason.PROTOCOL, "the server closed the connection")
    if isinstance(exc, WebSocketError):
        if exc.code == WSCloseCode.MESSAGE_TOO_BIG:
            return ProbeFailure(Reason.PROTOCOL, f"message larger than {MAX_MESSAGE} bytes")
        return ProbeFailure(Reason.PROTOCOL, f"invalid WebSocket frame: {shorten(str(exc), 120)}")
    return _aiohttp.classify(exc)


# --- the connection ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Step:
    now: str = "connecting"


@dataclass(slots=True)
class _Socket:
    """An upgraded connection: aiohttp's frame reader and writer on our own protocol."""

    protocol: ResponseHandler
    queue: WebSocketDataQueue
    writer: WebSocketWriter
    subprotocol: str | None
    peer_cert: bytes | None

    async def send_text(self, text: str) -> None:
        await self.writer.send_frame(text.encode(), WSMsgType.TEXT)

    async def receive(self) -> WSMessage:
        """The next data message or pong; the server's pings are answered on the way."""
        while True:
            message = await self.queue.read()
            if message.type is WSMsgType.PING:
                await self.writer.send_frame(message.data, WSMsgType.PONG)
            elif message.type is WSMsgType.CLOSE:
                reason = f": {shorten(str(message.extra), 80)}" if message.extra else ""
                raise ProbeFailure(Reason.PROTOCOL, f"the server closed the WebSocket (code {message.data}{reason})")
            elif message.type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PONG):
                return message

    async def close(self, graceful: bool) -> None:
        if graceful:
            try:
                await self.writer.close(1000)
            except (OSError, RuntimeError):  # the peer is gone already
                pass
        _http1._close(self.protocol, graceful=graceful)


def _request_url(target: WebsocketTarget) -> URL:
    url = URL(target.url)
    if target.protocol == "socketio":
        path = url.path if url.path not in ("", "/") else SOCKETIO_PATH
        url = url.with_path(path).update_query(EIO="4", transport="websocket")
    return url


def _request_headers(target: WebsocketTarget, url: URL, key: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(
        {
            "Host": url.host_port_subcomponent or "",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
            "User-Agent": "prober",
        }
    )
    headers.update({name: value.get_secret_value() for name, value in target.headers.items()})
    if target.bearer_token is not None:
        headers["Authorization"] = f"Bearer {target.bearer_token.get_secret_value()}"
    return headers


def _refusal(status: int) -> ProbeFailure:
    reason = Reason.AUTH if status in (401, 403) else Reason.PROTOCOL
    return ProbeFailure(reason, f"HTTP {status} instead of 101 Switching Protocols: the server did not upgrade")


async def _open(target: WebsocketTarget, ctx: ProbeContext, run: Run, step: _Step) -> _Socket:
    from aiohttp._websocket.reader import WebSocketDataQueue
    from aiohttp.http_websocket import WebSocketReader, WebSocketWriter
    from aiohttp.http_writer import StreamWriter

    url = _request_url(target)
    tls = ctx.ssl_context(target.ca_file) if url.scheme == "wss" else None
    protocol = await _http1._connect(url, tls, run.phases)
    try:
        sock = protocol.transport.get_extra_info("socket") if protocol.transport is not None else None
        if sock is not None:  # small frames go out at once (see the grpc kind: _net's sockets lack it)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        step.now = "waiting for the upgrade"
        with run.phase("upgrade"):
            key = base64.b64encode(os.urandom(16)).decode()
            protocol.set_response_params(read_until_eof=False, auto_decompress=False)
            writer = StreamWriter(protocol, protocol._loop)
            await writer.write_headers(f"GET {url.raw_path_qs or '/'} HTTP/1.1", _request_headers(target, url, key))
            writer.send_headers()  # no body follows: write the buffered request now
            message, _payload = await protocol.read()
        if message.code != 101:
            raise _refusal(message.code)
        if message.headers.get("Upgrade", "").lower() != "websocket":
            raise ProbeFailure(Reason.PROTOCOL, "101 without 'Upgrade: websocket'")
        if "upgrade" not in message.headers.get("Connection", "").lower():
            raise ProbeFailure(Reason.PROTOCOL, "101 without 'Connection: Upgrade'")
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        if message.headers.get("Sec-WebSocket-Accept", "") != accept:
            raise ProbeFailure(Reason.PROTOCOL, "101 with a wrong Sec-WebSocket-Accept")
        transport = protocol.transport
        assert transport is not None
        queue = WebSocketDataQueue(protocol, 1 << 16, loop=protocol._loop)
        protocol.set_parser(WebSocketReader(queue, MAX_MESSAGE, compress=False, decode_text=True), queue)
        frames = WebSocketWriter(protocol, transport, use_mask=True)
        der = peer_cert_der(transport.get_extra_info("ssl_object")) if tls is not None else None
        return _Socket(protocol, queue, frames, message.headers.get("Sec-WebSocket-Protocol"), der)
    except BaseException:
        _http1._close(protocol, graceful=False)
        raise


# --- plain WebSocket ----------------------------------------------------------------------------------


def _first_message(message: WSMessage) -> tuple[str, Any, int]:
    """(text, the message as conditions see it: parsed JSON or text, size in bytes)."""
    raw = message.data if isinstance(message.data, bytes) else str(message.data).encode()
    text = raw.decode("utf-8", "replace")
    try:
        seen: Any = json.loads(text)
    except (ValueError, RecursionError):
        seen = text
    return text, seen, len(raw)


async def _plain(target: WebsocketTarget, sock: _Socket, run: Run, step: _Step) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if target.send is not None:
        await sock.send_text(target.send)
    if target.send is not None or target.expect is not None or target.receive or "message" in target.condition_names:
        step.now = "waiting for the first message"
        with run.phase("message"):
            message = await sock.receive()
            while message.type is WSMsgType.PONG:  # an unsolicited pong is not a message
                message = await sock.receive()
        values["_text"], values["message"], values["message_bytes"] = _first_message(message)
    if target.ping:
        step.now = "waiting for the pong"
        started = time.perf_counter()
        with run.phase("pong"):
            await sock.writer.send_frame(PING_PAYLOAD, WSMsgType.PING)
            while (await sock.receive()).type is not WSMsgType.PONG:
                pass
        values["pong_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return values


# --- Socket.IO ----------------------------------------------------------------------------------------


def _packet_text(message: WSMessage) -> str:
    if message.type is not WSMsgType.TEXT:
        raise ProbeFailure(Reason.PROTOCOL, "a binary frame where an Engine.IO packet was expected")
    return str(message.data)


def _open_packet(text: str) -> dict[str, Any]:
    """The Engine.IO v4 open packet: ``0{"sid": ..., "pingInterval": ..., "pingTimeout": ...}``."""
    try:
        document = json.loads(text[1:]) if text.startswith("0") else None
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("pingInterval"), int):
        raise ProbeFailure(Reason.PROTOCOL, f"not an Engine.IO v4 open packet: {shorten(text, 60)!r}")
    return document


def _packet(kind: str, target: WebsocketTarget, payload: str = "") -> str:
    """A Socket.IO packet (``4`` for an Engine.IO message, then its type) for the target's namespace."""
    namespace = "" if target.namespace == "/" else f"{target.namespace},"
    return f"4{kind}{namespace}{payload}"


def _connect_packet(target: WebsocketTarget) -> str:
    auth = json.dumps({k: v.get_secret_value() for k, v in target.auth.items()}) if target.auth else ""
    return _packet("0", target, auth)


def _namespace_of(packet: str) -> tuple[str, str]:
    """A Socket.IO packet's (namespace, rest): ``40/admin,{...}`` -> ("/admin", "{...}")."""
    body = packet[2:]
    if body.startswith("/"):
        namespace, _, rest = body.partition(",")
        return namespace, rest
    return "/", body


@dataclass(slots=True)
class _Session:
    opened_at: float
    ping_interval: float  # seconds
    pinged_at: float | None = None


async def _engine_packet(sock: _Socket, session: _Session) -> str:
    """The next Socket.IO packet (``4...``); Engine.IO pings are answered and noted, noops skipped."""
    while True:
        text = _packet_text(await sock.receive())
        if text == "2":
            if session.pinged_at is None:
                session.pinged_at = time.perf_counter()
            await sock.send_text("3")
        elif text == "1":
            raise ProbeFailure(Reason.PROTOCOL, "the server closed the Engine.IO session")
        elif text.startswith("4"):
            return text
        elif not text.startswith("6"):
            raise ProbeFailure(Reason.PROTOCOL, f"unexpected Engine.IO packet: {shorten(text, 60)!r}")


async def _connect_namespace(target: WebsocketTarget, sock: _Socket, session: _Session) -> dict[str, Any]:
    await sock.send_text(_connect_packet(target))
    while True:
        packet = await _engine_packet(sock, session)
        namespace, rest = _namespace_of(packet)
        if namespace != target.namespace or len(packet) < 2:
            continue
        if packet[1] == "0":  # CONNECT: the acknowledgement
            return {"namespace_connected": True}
        if packet[1] == "4":  # CONNECT_ERROR
            try:
                said = json.loads(rest).get("message", rest) if rest else ""
            except (ValueError, AttributeError, RecursionError):
                said = rest
            return {"namespace_connected": False, "connect_error": shorten(str(said), 120)}
        if packet[1] == "1":  # DISCONNECT
            return {"namespace_connected": False, "connect_error": "the server disconnected the namespace"}


async def _socketio(target: WebsocketTarget, sock: _Socket, run: Run, step: _Step) -> dict[str, Any]:
    step.now = "waiting for the Engine.IO open packet"
    with run.phase("open"):
        document = _open_packet(_packet_text(await sock.receive()))
    session = _Session(time.perf_counter(), document["pingInterval"] / 1000)
    values: dict[str, Any] = {
        "sid_received": isinstance(document.get("sid"), str) and bool(document["sid"]),
        "upgrade": True,
        "ping_interval_ms": document["pingInterval"],
    }
    for name, key in (("ping_timeout_ms", "pingTimeout"), ("max_payload", "maxPayload")):
        if isinstance(document.get(key), int):
            values[name] = document[key]
    step.now = f"waiting for namespace {target.namespace} to acknowledge"
    started = time.perf_counter()
    with run.phase("namespace"):
        values.update(await _connect_namespace(target, sock, session))
    values["connect_ack_ms"] = round((time.perf_counter() - started) * 1000, 3)
    values["_answered_at"] = time.perf_counter()
    if values["namespace_connected"]:
        await _await_server_ping(sock, session, run, step)
        if session.pinged_at is not None:
            values["server_ping_ms"] = round((session.pinged_at - session.opened_at) * 1000, 3)
        await sock.send_text(_packet("1", target))  # DISCONNECT
    return values


async def _await_server_ping(sock: _Socket, session: _Session, run: Run, step: _Step) -> None:
    """Wait for the server's first ping when it is due before the run's deadline (not a failure if it
    does not come: the run's deadline, not the ping, ends the wait)."""
    if session.pinged_at is not None:
        return
    due = session.opened_at + session.ping_interval
    within = run.left(floor=0.0) - PING_WAIT_MARGIN  # ends before the run's own deadline
    if due >= time.perf_counter() + within:
        return
    step.now = "waiting for the server's ping"
    try:
        async with asyncio.timeout(within):
            while session.pinged_at is None:
                await _engine_packet(sock, session)
    except TimeoutError:
        return


# --- the probe ----------------------------------------------------------------------------------------


async def probe(target: WebsocketTarget, ctx: ProbeContext) -> Observation:
    run = ctx.begin(target)
    step = _Step()
    async with run.bounded(lambda: f"no answer within {format_duration(run.budget)} ({step.now})"):
        with driver_errors(classify):
            sock = await _open(target, ctx, run, step)
            graceful = False
            try:
                if target.protocol == "socketio":
                    values = await _socketio(target, sock, run, step)
                else:
                    values = await _plain(target, sock, run, step)
                graceful = True
            finally:
                await sock.close(graceful)
    if sock.subprotocol:
        values["subprotocol"] = sock.subprotocol
    gauges: dict[str, float] = {}
    if sock.peer_cert is not None:
        values["certificate"] = certificate = cert_facts(sock.peer_cert)
        gauges["tls_cert_not_after_timestamp_seconds"] = certificate["not_after_timestamp"]
    return Observation(
        values, _summary(target, values), latency=_latency(run, values), phases=run.phases, gauges=gauges
    )


def _latency(run: Run, values: Mapping[str, Any]) -> float:
    """Socket.IO: until the namespace answered (a wait for the server's ping is not the answer's time)."""
    answered = values.get("_answered_at")
    return answered - run.started if answered is not None else run.elapsed()


def _summary(target: WebsocketTarget, values: Mapping[str, Any]) -> str:
    if target.protocol == "socketio":
        said = f"Socket.IO namespace {target.namespace} connected in {values['connect_ack_ms']:.1f} ms"
        if "server_ping_ms" in values:
            said += f", server ping after {values['server_ping_ms']:.0f} ms answered"
        return said
    parts = ["upgraded"]
    if "message_bytes" in values:
        parts.append(f"first message {values['message_bytes']} bytes")
    if "pong_ms" in values:
        parts.append(f"pong in {values['pong_ms']:.1f} ms")
    return ", ".join(parts)
