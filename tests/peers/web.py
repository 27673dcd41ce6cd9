"""Real HTTP and TLS peers on loopback, run in a background thread so that both in-process probes and
``prober`` subprocesses can reach them.

The HTTP application answers the shapes real frameworks answer (NestJS-style JSON with 503 for
unhealthy, Spring Boot's ``{"status":"UP"}``, plain text) plus hostile ones. TLS endpoints use real
certificates from a trustme CA: valid, expired, expiring in 2 days, for the wrong host, from an
unknown CA.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

TOKEN = "s3cr3t-bearer-token"


@dataclass
class Scripted:
    """An answer a test writes for ``/scripted/<key>``: what a real application's health endpoint says."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


SCRIPTS: dict[str, Scripted] = {}  # key -> the answer; the tests set it, the peers' thread reads it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health_app() -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/nest/ok")
    async def nest_ok(_r: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "timestamp": "2026-01-01T00:00:00Z", "checks": {"database": {"status": "ok"}}}
        )

    @routes.get("/nest/degraded")
    async def nest_degraded(_r: web.Request) -> web.Response:
        return web.json_response({"status": "degraded", "checks": {"redis": {"status": "unhealthy"}}})

    @routes.get("/nest/unhealthy")
    async def nest_unhealthy(_r: web.Request) -> web.Response:
        return web.json_response({"status": "unhealthy", "checks": {"database": {"status": "unhealthy"}}}, status=503)

    @routes.get("/spring/up")
    async def spring_up(_r: web.Request) -> web.Response:
        return web.json_response({"status": "UP", "components": {"db": {"status": "UP"}}})

    @routes.get("/spring/down")
    async def spring_down(_r: web.Request) -> web.Response:
        return web.json_response({"status": "DOWN"}, status=503)

    @routes.get("/nested")
    async def nested(_r: web.Request) -> web.Response:
        return web.json_response({"info": {"db": {"status": "up"}}, "checks": [{"status": "warn"}]})

    @routes.get("/plain")
    async def plain(_r: web.Request) -> web.Response:
        return web.Response(text="OK")

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("ms", "400")) / 1000)
        return web.json_response({"status": "ok"})

    @routes.get("/code/{code}")
    async def code(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="answer")

    @routes.get("/redirect")
    async def redirect(_r: web.Request) -> web.Response:
        raise web.HTTPFound("/plain")

    @routes.get("/redirect-loop")
    async def redirect_loop(_r: web.Request) -> web.Response:
        raise web.HTTPFound("/redirect-loop")

    @routes.get("/huge")
    async def huge(_r: web.Request) -> web.Response:
        return web.Response(body=b"x" * (2 * 1024 * 1024))

    @routes.get("/endless")
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"y" * 65536
        for _ in range(10_000):  # bounded: ~650 MB at most, the probe stops at its 1 MiB cap long before
            await response.write(chunk)
        return response

    @routes.get("/invalid-json")
    async def invalid_json(_r: web.Request) -> web.Response:
        return web.Response(text="{not json", content_type="application/json")

    @routes.get("/deep-json")
    async def deep_json(_r: web.Request) -> web.Response:
        return web.Response(text="[" * 200_000, content_type="application/json")

    @routes.get("/big-header")
    async def big_header(_r: web.Request) -> web.Response:
        return web.Response(text="OK", headers={"X-Big": "z" * 100_000})

    @routes.get("/auth")
    async def auth(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"status": "ok"})

    @routes.get("/flap")
    async def flap(request: web.Request) -> web.Response:
        """ok and 503 in turn, ``period`` seconds each."""
        period = float(request.query.get("period", "5"))
        if int(time.time() / period) % 2 == 0:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "unhealthy"}, status=503)

    @routes.get("/echo-auth")
    async def echo_auth(request: web.Request) -> web.Response:
        return web.json_response({"status": request.headers.get("Authorization", "")})

    @routes.get("/echo-headers")
    async def echo_headers(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "x_api_key": request.headers.get("X-Api-Key", "")})

    @routes.get("/echo-all-headers")
    async def echo_all_headers(request: web.Request) -> web.Response:
        return web.json_response({name.lower(): value for name, value in request.headers.items()})

    @routes.route("*", "/redirect-to")
    async def redirect_to(request: web.Request) -> web.Response:
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["to"]})

    @routes.route("*", "/method")
    async def method(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "method": request.method})

    @routes.get("/scripted/{key}")
    async def scripted(request: web.Request) -> web.Response:
        answer = SCRIPTS.get(request.match_info["key"])
        if answer is None:
            return web.json_response({"error": "no script"}, status=404)
        if isinstance(answer.body, str | bytes):
            return web.Response(body=answer.body, status=answer.status, headers=answer.headers)
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)

    @routes.get("/gzip")
    async def gzipped(_r: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"status": "ok", "padding": "p" * 5000}).encode())
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    app = web.Application()
    app.add_routes(routes)
    return app


async def hello_http_server() -> tuple[web.AppRunner, int]:
    """A plain HTTP server answering "hello" on a free port, in the caller's event loop (an HTTP server
    where a database should be)."""
    app = web.Application()

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@dataclass
class Certs:
    ca: trustme.CA
    ca_file: Path
    other_ca_file: Path
    contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)


def make_certs(directory: Path) -> Certs:
    """Server contexts for each certificate case, and the CA files a client would trust."""
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)
    ca, other = trustme.CA(), trustme.CA()
    ca_file, other_file = directory / "ca.pem", directory / "other-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other.cert_pem.write_to_path(str(other_file))
    leaves = {
        "valid": ca.issue_cert("localhost", "127.0.0.1", not_after=now + 365 * day),
        "expired": ca.issue_cert("localhost", "127.0.0.1", not_before=now - 30 * day, not_after=now - day),
        "expiring": ca.issue_cert("localhost", "127.0.0.1", not_after=now + 2 * day),
        "soon": ca.issue_cert("localhost", "127.0.0.1", not_after=now + 10 * day),
        "three-weeks": ca.issue_cert("localhost", "127.0.0.1", not_after=now + 21 * day),
        "wrong-host": ca.issue_cert("other.example", not_after=now + 365 * day),
        "unknown-ca": trustme.CA().issue_cert("localhost", "127.0.0.1", not_after=now + 365 * day),
    }
    certs = Certs(ca, ca_file, other_file)
    for name, leaf in leaves.items():
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        certs.contexts[name] = context
    return certs


class Peers:
    """Every peer, on its own loopback port, served from one background event loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-peers", daemon=True)
        self.ports: dict[str, int] = {}
        self.certs = make_certs(directory)
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    def call(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        return asyncio.run_coroutine_threadsafe(factory(), self.loop).result(30)

    def start(self) -> Peers:
        self.thread.start()
        self.call(self._start)
        return self

    async def _start(self) -> None:
        await self._app("http", health_app(), None)
        await self._app("https", health_app(), self.certs.contexts["valid"])
        await self._app("https-expired", health_app(), self.certs.contexts["expired"])
        for name, context in self.certs.contexts.items():
            await self._raw(f"tls-{name}", self._close_after_handshake, context)
        await self._raw("hang", self._hang, None)
        await self._raw("tls-hang", self._hang_before_handshake, None)
        await self._raw("trickle", self._trickle, None)
        await self._raw("garbage", self._garbage, None)
        await self._raw("close", self._close_at_once, None)
        await self._raw("echo", self._echo, None)
        self.ports["closed"] = _free_port()  # nothing listens there

    async def _app(self, name: str, app: web.Application, context: ssl.SSLContext | None) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        self._runners.append(runner)
        self.ports[name] = port

    async def _raw(
        self,
        name: str,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]],
        context: ssl.SSLContext | None,
    ) -> None:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.add(writer)
            try:
                await handler(reader, writer)
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                self._writers.discard(writer)
                writer.close()

        server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=context)
        self._servers.append(server)
        self.ports[name] = server.sockets[0].getsockname()[1]

    @staticmethod
    async def _close_after_handshake(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(reader.read(1), 5)

    @staticmethod
    async def _hang(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)  # accepts, never answers

    @staticmethod
    async def _hang_before_handshake(reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)  # a TLS client's hello is never answered

    @staticmethod
    async def _trickle(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(60):  # one byte per second
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(1)

    @staticmethod
    async def _garbage(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes(range(256)) * 8)
        await writer.drain()
        await asyncio.sleep(1)

    @staticmethod
    async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Sends back whatever the client sent (a startup packet, an AUTH command...), then closes."""
        for _ in range(20):
            data = await asyncio.wait_for(reader.read(65536), 2)
            if not data:
                return
            writer.write(data)
            await writer.drain()

    @staticmethod
    async def _close_at_once(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    def script(self, key: str, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> str:
        """Make ``/scripted/<key>`` answer so; returns its URL."""
        SCRIPTS[key] = Scripted(body, status, headers or {})
        return self.url(f"/scripted/{key}")

    def url(self, path: str, name: str = "http") -> str:
        scheme = "https" if name.startswith("https") else "http"
        host = "localhost" if scheme == "https" else "127.0.0.1"
        return f"{scheme}://{host}:{self.ports[name]}{path}"

    def address(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def stop(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for runner in self._runners:
                await runner.cleanup()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        self.call(stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
