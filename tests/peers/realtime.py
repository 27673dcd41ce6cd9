"""Real WebSocket and Socket.IO peers on loopback, served from a background thread (so both in-process
probes and ``prober`` subprocesses reach them), plus the hostile ones.

* ``app``: one aiohttp application with a real python-socketio server attached (the same Engine.IO v4
  and Socket.IO v5 wire protocol as the Node server) and plain aiohttp WebSocket routes: an echo, a JSON
  greeting, a server that never answers pings, a 10 MB frame, and an ordinary HTTP route (200, not 101).
  Socket.IO namespaces: ``/`` (open), ``/admin`` (needs ``auth: {token: TOKEN}``), ``/slow`` (acknowledges
  after 300 ms) and ``/silent`` (its connect handler never returns).
* ``app-fastping``: the same application with ``pingInterval`` 1 s, so a server ping arrives within a run.
* ``app-tls``: the application over TLS with a trustme certificate.
* raw peers: a 101 without ``Upgrade``, garbage after a valid handshake, a close during the handshake, an
  Engine.IO open packet that is garbage, and one that is 10 MB long.

``python -m tests.peers.realtime PORT [PING_INTERVAL_S]`` serves ``app`` alone (the benchmarks' peer).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import sys
from pathlib import Path
from typing import Any

import socketio
from aiohttp import WSMsgType, web

from tests.peers.web import Peers, _free_port

TOKEN = "rt-s3cr3t-token"
BIG = 10 * 1024 * 1024
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def app(ping_interval: float = 25.0) -> web.Application:
    """The realtime application: Socket.IO on ``/socket.io/`` and plain WebSocket routes under ``/ws/``."""
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=ping_interval, ping_timeout=20)

    async def connect(_sid: str, _environ: dict[str, Any], _auth: Any) -> None:
        return None

    async def admin_connect(_sid: str, _environ: dict[str, Any], auth: Any) -> None:
        if not isinstance(auth, dict) or auth.get("token") != TOKEN:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")

    async def slow_connect(_sid: str, _environ: dict[str, Any], _auth: Any) -> None:
        await asyncio.sleep(0.3)

    async def silent_connect(_sid: str, _environ: dict[str, Any], _auth: Any) -> None:
        await asyncio.sleep(60)

    for namespace, handler in (("/", connect), ("/admin", admin_connect), ("/slow", slow_connect)):
        sio.on("connect", handler, namespace=namespace)
    sio.on("connect", silent_connect, namespace="/silent")

    application = web.Application()
    sio.attach(application)

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws

    async def hello(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"status": "ok", "auth": request.headers.get("Authorization", "")}))
        async for _ in ws:
            pass
        return ws

    async def noping(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        async for _ in ws:  # pings are read and never answered
            pass
        return ws

    async def big(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("x" * BIG)
        async for _ in ws:
            pass
        return ws

    async def plain(_request: web.Request) -> web.Response:
        return web.Response(text="not a websocket")

    application.router.add_get("/ws/echo", echo)
    application.router.add_get("/ws/hello", hello)
    application.router.add_get("/ws/noping", noping)
    application.router.add_get("/ws/big", big)
    application.router.add_get("/ws/plain", plain)
    return application


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # RFC 6455's accept key


async def _read_request(reader: asyncio.StreamReader) -> dict[str, str]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def _switch(headers: dict[str, str], upgrade: bool = True) -> bytes:
    lines = ["HTTP/1.1 101 Switching Protocols"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade"]
    lines.append(f"Sec-WebSocket-Accept: {accept_key(headers.get('sec-websocket-key', ''))}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def text_frame(payload: bytes) -> bytes:
    """One unmasked server text frame."""
    size = len(payload)
    if size < 126:
        head = bytes([0x81, size])
    elif size < 65536:
        head = bytes([0x81, 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x81, 127]) + size.to_bytes(8, "big")
    return head + payload


async def _no_upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_switch(await _read_request(reader), upgrade=False))
    await writer.drain()
    await asyncio.sleep(5)


async def _garbage_frames(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_switch(await _read_request(reader)))
    writer.write(bytes([0x83, 0x7E]) + bytes(range(256)) * 4)  # opcode 3 (reserved), then noise
    await writer.drain()
    await asyncio.sleep(5)


async def _close_in_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.write(b"HTTP/1.1 101 Switch")  # half a status line, then the connection is gone
    await writer.drain()
    writer.transport.abort()


async def _eio_garbage_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_switch(await _read_request(reader)))
    writer.write(text_frame(b"0{this is not json"))
    await writer.drain()
    await asyncio.sleep(5)


async def _eio_big_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_switch(await _read_request(reader)))
    writer.write(text_frame(b'0{"sid":"' + b"s" * BIG + b'"}'))
    await writer.drain()
    await asyncio.sleep(5)


async def _eio_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_switch(await _read_request(reader)))  # upgraded, then no open packet ever
    await writer.drain()
    await asyncio.sleep(60)


class RealtimePeers(Peers):
    """The web peers' loop and hostile servers (tests/peers/web.py), plus the realtime ones."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)

    async def _start(self) -> None:
        await self._raw("hang", self._hang, None)
        await self._raw("garbage", self._garbage, None)
        await self._raw("echo", self._echo, None)
        self.ports["closed"] = _free_port()
        await self._app("app", app(), None)
        await self._app("app-fastping", app(ping_interval=1), None)  # whole seconds: python-engineio sends int(s)
        await self._app("app-tls", app(), self.certs.contexts["valid"])
        await self._raw("no-upgrade", _no_upgrade, None)
        await self._raw("garbage-frames", _garbage_frames, None)
        await self._raw("close-in-handshake", _close_in_handshake, None)
        await self._raw("eio-garbage-open", _eio_garbage_open, None)
        await self._raw("eio-big-open", _eio_big_open, None)
        await self._raw("eio-silent", _eio_silent, None)

    async def _app(self, name: str, application: web.Application, context: ssl.SSLContext | None) -> None:
        """As the web peers' ``_app``, but stopped at once: open WebSockets do not delay the end of the tests."""
        runner = web.AppRunner(application, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        self._runners.append(runner)
        self.ports[name] = port

    def ws(self, path: str, name: str = "app") -> str:
        scheme, host = ("wss", "localhost") if name.endswith("-tls") else ("ws", "127.0.0.1")
        return f"{scheme}://{host}:{self.ports[name]}{path}"

    @property
    def tls_context(self) -> ssl.SSLContext:
        return self.certs.contexts["valid"]


def main() -> None:
    port = int(sys.argv[1])
    ping_interval = float(sys.argv[2]) if len(sys.argv) > 2 else 25.0
    web.run_app(app(ping_interval), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
