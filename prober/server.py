"""The HTTP surface: /metrics, /status, /healthz, /readyz and POST /-/reload, on aiohttp's server."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from prober import __version__
from prober.history import History
from prober.metrics import render
from prober.models import ServerConfig
from prober.page import add_routes
from prober.redact import REDACTOR
from prober.status import Board, State, TargetStatus

PROTECTED = frozenset({"/metrics", "/status", "/-/reload"})
PROTECTED_PREFIXES = ("/status/",)
Reload = Callable[[], Awaitable[list[str]]]
Liveness = Callable[[], str | None]


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_json(status: TargetStatus, history: History | None = None) -> dict[str, Any]:
    last = status.last
    check = {
        "status": status.state.value,
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

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
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
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        token = self.settings.bearer_token
        if token is not None and (request.path in PROTECTED or request.path.startswith(PROTECTED_PREFIXES)):
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {token.get_secret_value()}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
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

    async def metrics(self, request: web.Request) -> web.Response:
        _, content_type = choose_encoder(request.headers.get("Accept", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        self.board.event_loop_tasks = len(asyncio.all_tasks())
        # rendered off the event loop: thousands of targets take a fraction of a second to render
        body = await asyncio.to_thread(render, self.registry, openmetrics)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def status(self, _request: web.Request) -> web.Response:
        body = status_json(self.board, history=self.history)
        return web.json_response(body, status=http_status(State(body["status"])))

    async def group_status(self, request: web.Request) -> web.Response:
        """``/status/<group>``: the same body and the same 200/503 rule, over one health group's targets."""
        group = request.match_info["group"]
        if group not in self.board.groups:
            known = sorted(self.board.groups)
            return web.json_response({"error": f"no health group {group!r}", "groups": known}, status=404)
        body = status_json(self.board, group, self.history)
        return web.json_response(body, status=http_status(State(body["status"])))

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
