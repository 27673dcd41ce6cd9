"""The HTTP surface: /metrics, /status, /healthz, /readyz and POST /-/reload, on aiohttp's server.

Serving never starves probing (README "HTTP endpoints"):

* bodies of /metrics and /status are rendered in a small pool of their own (:class:`Renders`), at most
  ``server.max_renders`` at once; concurrent requests for the same body share one render, a body is
  reused for ``server.render_reuse``, and a request that waited ``server.render_timeout`` gets a 503;
* bodies are written in 64 KiB pieces, each waiting until the client has taken the previous ones, and a
  client that has not read the whole answer within ``server.write_timeout`` is dropped: a slow reader
  holds at most a piece, never a copy of the body;
* at most ``server.max_connections`` connections (:class:`Connections`): a newcomer closes the oldest
  idle one, or is answered 503 when none is idle; an idle connection, or one that takes longer than
  ``server.idle_timeout`` to send its request head, is closed;
* malformed requests are answered 400 by aiohttp and logged at debug level, at most one line per 10 s.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from prober import __version__
from prober.history import History
from prober.logs import Throttled
from prober.metrics import render
from prober.models import ServerConfig
from prober.page import add_routes
from prober.redact import REDACTOR
from prober.status import Board, State, TargetStatus

PROTECTED = frozenset({"/metrics", "/status", "/-/reload"})
PROTECTED_PREFIXES = ("/status/",)
Reload = Callable[[], Awaitable[list[str]]]
Liveness = Callable[[], str | None]
PIECE = 65536  # bytes written at a time; the next piece waits until the client has taken these
SEND_RATE = 64 * 2**20  # bytes per second all answers together may be written at (bench/RESULTS-attacks.md)
SENDING = 16  # bodies written at once; further requests wait for a turn ...
WAITING = 64  # ... this many at most: past that, a 503 at once
HELD_BODIES = 3  # bodies of one kind that slow clients may still be reading before a stale one is reused
log = logging.getLogger("prober.server")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_json(status: TargetStatus, history: History | None = None) -> dict[str, Any]:
    last = status.last
    check = {
        "status": status.state.value,
        "starting": status.starting(),
        "kind": status.kind,
        "critical": status.critical,
        "latency_ms": round(last.latency * 1000, 2) if last and last.latency is not None else None,
        "reason": last.reason.value if last and last.reason else None,
        "message": last.message if last else "no result yet",
        "last_success": iso(status.last_success),
        "last_run": iso(status.last_run),
        "details": last.details if last else {},
        "uptime_1h": history.uptime(status.name, "1h") if history is not None else None,
        "uptime_24h": history.uptime(status.name, "24h") if history is not None else None,
    }
    if last is not None and last.components:
        check["components"] = {name: component.as_json() for name, component in last.components.items()}
    return check


def status_json(board: Board, group: str | None = None, history: History | None = None) -> dict[str, Any]:
    """The whole's state and every check; with ``group``, that health group's state and its checks only."""
    now = time.time()
    targets = board.members(group) if group is not None else list(board.targets.values())
    body: dict[str, Any] = {
        "status": (board.group_state(group) if group is not None else board.overall()).value,
        "timestamp": iso(now),
        "uptime_seconds": round(now - board.started, 3),
        "version": __version__,
    }
    if group is not None:
        body["group"] = group
    elif board.groups:
        body["groups"] = {
            name: {"status": board.group_state(name).value, "targets": [t.name for t in board.members(name)]}
            for name in board.groups
        }
    body["checks"] = {t.name: check_json(t, history) for t in targets}
    return body


def http_status(state: State) -> int:
    return 200 if state in (State.OK, State.DEGRADED) else 503


def status_body(board: Board, group: str | None = None, history: History | None = None) -> tuple[int, bytes]:
    """The /status (or /status/<group>) answer: its HTTP status and JSON body (rendered in a worker thread)."""
    body = status_json(board, group, history)
    return http_status(State(body["status"])), json.dumps(body).encode()


Rendered = tuple[int, bytes]


def count(events: dict[str, int], event: str) -> None:
    events[event] = events.get(event, 0) + 1


class Renders:
    """Bodies of /metrics and /status, rendered off the event loop, shared and bounded.

    * one render per kind of body at a time: concurrent requests for it wait for the same render;
    * a finished body is reused for ``reuse`` seconds (so 200 scrapers cost one render per ``reuse``);
    * renders run in a pool of ``workers`` threads of their own (never the loop's default executor,
      where blocking name lookups of drivers go);
    * while ``HELD_BODIES`` bodies of one kind are still being sent to slow clients, the newest is reused
      instead of rendering yet another: slow readers cannot multiply the bodies held in memory.

    A render is pure Python that holds the GIL: what keeps it from starving the event loop is that it
    runs rarely (shared and reused), not the thread (see bench/RESULTS-attacks.md)."""

    def __init__(self, workers: int, reuse: float, events: dict[str, int] | None = None) -> None:
        self.workers, self.reuse = workers, reuse
        self.events = {} if events is None else events
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="prober-render")
        self._fresh: dict[str, tuple[float, Rendered]] = {}
        self._flights: dict[str, asyncio.Future[Rendered]] = {}
        self._held: dict[str, dict[int, int]] = {}  # kind -> id(body) -> requests sending it
        self._generation = 0

    def forget(self) -> None:
        """Render afresh from now on (a reload changed the targets)."""
        self._generation += 1
        self._fresh.clear()
        self._flights.clear()

    def resize(self, workers: int, reuse: float) -> None:
        self.reuse = reuse
        if workers != self.workers:
            old, self._executor = self._executor, ThreadPoolExecutor(workers, thread_name_prefix="prober-render")
            old.shutdown(wait=False)
            self.workers = workers

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def get(self, kind: str, make: Callable[[], Rendered], wait: float) -> Rendered | None:
        """The body of ``kind``: fresh enough, or rendered now (shared with every concurrent request).
        None if it did not come within ``wait`` seconds."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        fresh = self._fresh.get(kind)
        if fresh is not None and (now - fresh[0] < self.reuse or len(self._held.get(kind, ())) >= HELD_BODIES):
            count(self.events, "body_reused")
            return fresh[1]
        flight = self._flights.get(kind)
        if flight is None:
            flight = self._flights[kind] = loop.run_in_executor(self._executor, make)
            generation = self._generation
            flight.add_done_callback(lambda done: self._landed(kind, now, generation, done))
            count(self.events, "body_rendered")
        else:
            count(self.events, "body_shared")
        try:
            async with asyncio.timeout(wait):
                return await asyncio.shield(flight)
        except TimeoutError:
            count(self.events, "render_wait_timeout")
            return None

    def _landed(self, kind: str, started: float, generation: int, flight: asyncio.Future[Rendered]) -> None:
        if self._flights.get(kind) is flight:
            del self._flights[kind]
        if generation == self._generation and not flight.cancelled() and flight.exception() is None:
            self._fresh[kind] = (started, flight.result())
            asyncio.get_running_loop().call_later(self.reuse, self._expire, kind)

    def _expire(self, kind: str) -> None:
        """Let a body go once it is past reuse and nobody is sending it: a /metrics body of 10,000 targets
        is 16 MB, not worth keeping between scrapes 15 s apart."""
        fresh = self._fresh.get(kind)
        if fresh is None or self._held.get(kind):
            return
        if asyncio.get_running_loop().time() - fresh[0] >= self.reuse:
            del self._fresh[kind]

    def hold(self, kind: str, body: bytes) -> None:
        held = self._held.setdefault(kind, {})
        held[id(body)] = held.get(id(body), 0) + 1

    def release(self, kind: str, body: bytes) -> None:
        held = self._held.get(kind, {})
        left = held.get(id(body), 1) - 1
        if left > 0:
            held[id(body)] = left
        else:
            held.pop(id(body), None)
            if not held:
                self._expire(kind)


class Pace:
    """A token bucket shared by every answer: bodies are written at most ``rate`` bytes a second in all.

    Writing is the event loop's own work (a few tens of microseconds per piece): 200 clients reading
    /metrics as fast as they can would have the loop write hundreds of megabytes a second and start
    probe runs late. Paced, serving costs the loop a bounded share whatever the clients do; a Prometheus
    scrape of 10,000 targets (16 MB) still takes a quarter of a second."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = burst
        self._last = time.monotonic()

    async def take(self, size: int) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= size
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


class _Refuse(asyncio.Protocol):
    """A connection over ``server.max_connections`` with none idle to close: a 503, and closed."""

    ANSWER = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 31\r\n"
        b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections, try again\n"
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.ANSWER)
        transport.close()


class Connections:
    """The protocol factory of the daemon's listening socket: aiohttp's own (``web.Server``), with a cap.

    A connection is *busy* while a request is being handled (the middleware marks it) and *idle*
    otherwise: between requests, and while a request head is still arriving (a slowloris client is
    idle). At the cap, a newcomer closes the oldest idle connection; when every connection is busy
    (each bounded by ``server.write_timeout``), the newcomer is answered 503 and closed."""

    def __init__(self, server: web.Server, limit: int, events: dict[str, int] | None = None) -> None:
        self.server = server
        self.limit = limit
        self.events = {} if events is None else events
        self.busy: set[asyncio.BaseTransport] = set()
        self._told = Throttled(log, logging.WARNING)

    def open(self) -> int:
        return sum(1 for handler in self.server.connections if handler.transport is not None)

    def __call__(self) -> asyncio.BaseProtocol:
        handlers = [h for h in self.server.connections if h.transport is not None]  # oldest first
        if len(handlers) >= self.limit:
            idle = next((h for h in handlers if h.transport not in self.busy), None)
            if idle is None:
                count(self.events, "connection_refused")
                self._told("%d connections open, all busy: a new one was refused with 503", len(handlers))
                return _Refuse()
            count(self.events, "idle_connection_closed")
            self._told("%d connections open: the oldest idle one was closed for a new one", len(handlers))
            idle.force_close()
        return self.server()


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger aiohttp's request handler writes to. A malformed request is the client's problem: one
    debug line at most every 10 s, no traceback. A failure of our own handler is an error, with its
    traceback the first time, then one line per 10 s with a count."""

    def __init__(self, events: dict[str, int] | None = None) -> None:
        super().__init__(logging.getLogger("prober.server"), {})
        self.events = {} if events is None else events
        self.malformed = Throttled(self.logger, logging.DEBUG)
        self.failed = Throttled(self.logger, logging.ERROR)

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(exc, HttpProcessingError | ConnectionError | UnicodeError):
            count(self.events, "malformed_request")
            self.malformed(f"malformed request: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
            return
        self.failed(str(msg) % args if args else str(msg), exc_info=exc if self.failed.count == 0 else None)


class Api:
    def __init__(
        self,
        board: Board,
        registry: CollectorRegistry,
        settings: ServerConfig,
        reload: Reload,
        liveness: Liveness,
        history: History | None = None,
    ) -> None:
        self.board = board
        self.history = History() if history is None else history  # the page's and the uptimes' source
        self.registry = registry
        self.settings = settings
        self._reload = reload
        self._liveness = liveness
        self.renders = Renders(settings.max_renders, settings.render_reuse, board.http_events)
        self.pace = Pace(SEND_RATE, burst=SEND_RATE / 8)
        self._turns = asyncio.Semaphore(SENDING)
        self._waiting = 0
        self.connections: Connections | None = None

    def configure(self, settings: ServerConfig) -> None:
        """New settings (a reload): the token, the caps and the render bounds apply at once;
        ``listen`` and ``idle_timeout`` after a restart."""
        self.settings = settings
        self.renders.forget()
        self.renders.resize(settings.max_renders, settings.render_reuse)
        if self.connections is not None:
            self.connections.limit = settings.max_connections

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._busy, self._auth], client_max_size=65536)
        # the status page: /, /target/<name>, /api/page, /api/history/<name>, /badge/..., /login (prober/page)
        self.page = add_routes(app, self.board, self.history, lambda: self.settings, fallback=self.index)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/status", self.status)
        app.router.add_get("/status/{group}", self.group_status)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_post("/-/reload", self.reload)
        return app

    @web.middleware
    async def _busy(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Marks the connection busy while its request is handled (see :class:`Connections`)."""
        transport = request.transport
        if self.connections is None or transport is None:
            return await handler(request)
        self.connections.busy.add(transport)
        try:
            return await handler(request)
        finally:
            self.connections.busy.discard(transport)

    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        token = self.settings.bearer_token
        if token is not None and (request.path in PROTECTED or request.path.startswith(PROTECTED_PREFIXES)):
            # header values are decoded with surrogateescape: a byte that is not UTF-8 is kept, not an error
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            expected = f"Bearer {token.get_secret_value()}".encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response(
                    {"error": "a valid bearer token is required"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="prober"'},
                )
        return await handler(request)

    async def index(self, _request: web.Request) -> web.Response:
        return web.Response(
            text="prober\n/status  JSON status\n/metrics  Prometheus metrics\n/healthz  liveness\n/readyz  readiness\n"
        )

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        _, content_type = choose_encoder(request.headers.get("Accept", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        self.board.event_loop_tasks = len(asyncio.all_tasks())

        def make() -> Rendered:
            return 200, render(self.registry, openmetrics)

        kind = "openmetrics" if openmetrics else "text"
        return await self._answer(request, kind, make, content_type)

    async def status(self, request: web.Request) -> web.StreamResponse:
        make = lambda: status_body(self.board, history=self.history)  # noqa: E731
        return await self._answer(request, "status", make, "application/json")

    @staticmethod
    def _busy_answer(why: str) -> web.Response:
        response = web.json_response({"error": f"busy: {why}, try again"}, status=503, headers={"Retry-After": "1"})
        response.force_close()
        return response

    async def _answer(
        self, request: web.Request, kind: str, make: Callable[[], Rendered], content_type: str
    ) -> web.StreamResponse:
        """A rendered body. /metrics bodies are written in turn: ``SENDING`` at once, ``WAITING`` more
        waiting (each at most ``server.render_timeout``), and a 503 at once for the rest: what cannot be
        served within bounds is refused, not queued (a scraper sees a failed scrape). /status, the
        readiness gate, is never refused for being busy: its body is shared and small, and paced with the
        rest."""
        if kind == "status" or kind.startswith("status:"):  # readiness gates: never a 503 for being busy
            return await self._render_and_send(request, kind, make, content_type)
        if self._turns.locked() and self._waiting >= WAITING:
            count(self.board.http_events, "send_queue_full")
            return self._busy_answer("too many answers are being sent")
        self._waiting += 1
        try:
            async with asyncio.timeout(self.settings.render_timeout):
                await self._turns.acquire()
        except TimeoutError:
            count(self.board.http_events, "send_wait_timeout")
            return self._busy_answer("no turn to send the answer in time")
        finally:
            self._waiting -= 1
        try:
            return await self._render_and_send(request, kind, make, content_type)
        finally:
            self._turns.release()

    async def _render_and_send(
        self, request: web.Request, kind: str, make: Callable[[], Rendered], content_type: str
    ) -> web.StreamResponse:
        rendered = await self.renders.get(kind, make, self.settings.render_timeout)
        if rendered is None:
            return self._busy_answer("the answer could not be rendered in time")
        status, body = rendered
        self.renders.hold(kind, body)
        try:
            return await self._send(request, status, body, content_type)
        finally:
            self.renders.release(kind, body)

    async def _send(self, request: web.Request, status: int, body: bytes, content_type: str) -> web.StreamResponse:
        """``body`` in pieces, each written when the client has taken the previous ones; a client that
        has not taken all of it within ``server.write_timeout`` is dropped."""
        response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
        response.content_length = len(body)
        view = memoryview(body)  # pieces are views: no copies of the body
        try:
            async with asyncio.timeout(self.settings.write_timeout):
                await response.prepare(request)
                for start in range(0, len(body), PIECE):
                    piece = view[start : start + PIECE]
                    await self.pace.take(len(piece))
                    await response.write(piece)
                await response.write_eof()
        except TimeoutError:
            count(self.board.http_events, "slow_reader_dropped")
            transport = request.transport
            if transport is not None:
                transport.abort()
        return response

    async def group_status(self, request: web.Request) -> web.StreamResponse:
        """``/status/<group>``: the same body and the same 200/503 rule, over one health group's targets;
        rendered, shared and paced as /status is (a readiness gate too: never refused for being busy)."""
        group = request.match_info["group"]
        if group not in self.board.groups:
            known = sorted(self.board.groups)
            return web.json_response({"error": f"no health group {group!r}", "groups": known}, status=404)
        make = lambda: status_body(self.board, group, self.history)  # noqa: E731
        return await self._answer(request, f"status:{group}", make, "application/json")

    async def healthz(self, _request: web.Request) -> web.Response:
        problem = self._liveness()
        if problem is not None:
            return web.json_response({"status": "unhealthy", "problem": problem}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(self, _request: web.Request) -> web.Response:
        waiting = sorted(name for name, t in self.board.targets.items() if t.last is None)
        if waiting:
            return web.json_response({"status": "waiting", "no_result_yet": waiting[:50]}, status=503)
        return web.json_response({"status": "ready"})

    async def reload(self, _request: web.Request) -> web.Response:
        if self.settings.bearer_token is None and not self.settings.enable_reload_endpoint:
            return web.json_response(
                {"error": "the reload endpoint is off: set server.bearer_token_file or server.enable_reload_endpoint"},
                status=403,
            )
        problems = await self._reload()
        if problems:
            return web.json_response({"reloaded": False, "problems": [REDACTOR(p) for p in problems]}, status=400)
        return web.json_response({"reloaded": True, "targets": len(self.board.targets)})


class Listening:
    """The daemon's HTTP server, started by :func:`serve`; ``close()`` stops it."""

    def __init__(self, runner: web.AppRunner, listener: asyncio.Server) -> None:
        self.runner, self.listener = runner, listener

    @property
    def port(self) -> int:
        return int(self.listener.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.listener.close()
        await self.runner.cleanup()


async def serve(api: Api, host: str, port: int, shutdown_timeout: float, backlog: int = 512) -> Listening:
    """Serve ``api`` on host:port with the bounds of ``api.settings`` (raises OSError if it cannot
    listen). aiohttp's server with its public parts: its request handler (``web.Server``, the protocol
    factory) behind :class:`Connections`, on a listening socket of our own."""
    settings = api.settings
    runner = web.AppRunner(
        api.app(),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=settings.idle_timeout,  # aiohttp closes a connection idle this long, counted
        # from its start or its last answer: an idle client, or one that never finishes its request head
        logger=ServerLog(api.board.http_events),
    )
    await runner.setup()
    assert runner.server is not None
    api.connections = Connections(runner.server, settings.max_connections, api.board.http_events)
    try:
        listener = await asyncio.get_running_loop().create_server(
            api.connections, host, port, reuse_address=True, backlog=backlog
        )
    except BaseException:
        await runner.cleanup()
        raise
    return Listening(runner, listener)
