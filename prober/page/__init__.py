"""The status page people read: ``/`` (every target), ``/target/<name>`` (one target's detail), the page's
JSON (``/api/page``, ``/api/history/<name>``), badges (``/badge/<name>.svg``), the login form, and the
static files, all served by the daemon from the package (no CDN, no build step, nothing written).

HTML is rendered by Jinja2 with autoescaping on, so every text that comes from a peer or the config is
escaped; page.js writes only ``textContent`` and attributes, never HTML. Every answer carries a
Content-Security-Policy without inline scripts or styles and with ``frame-ancestors 'none'``. Who may
see it is ``server.ui`` (:mod:`prober.page.login`). The page reads the board and the history; it never
triggers a probe.

:func:`add_routes` is all the HTTP surface calls."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.resources
import json
import mimetypes
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from prober import __version__
from prober.history import History
from prober.models import ServerConfig
from prober.page import badges, login, svg, view
from prober.status import Board, State

if TYPE_CHECKING:
    import jinja2

Settings = Callable[[], ServerConfig]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
BADGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors *"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
SHARED_FOR = 1.0  # seconds one rendering of the page's JSON serves every page that asks meanwhile
STATIC = ("page.css", "page.js", "favicon.svg")
FIRST_ROWS = 250  # rows in the HTML of /; page.js adds the others from the page's JSON (?all=1: all of them)


def _environment(static: dict[str, str]) -> jinja2.Environment:
    """Jinja2, loaded when the page is first asked for: a sidecar whose page nobody opens does not carry it."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("prober.page", "templates"),
        autoescape=True,  # every {{ }} is escaped, in the HTML and in the badge SVG
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        icons={s.value: i for s, i in view.ICONS.items()},
        ago=view.ago,
        percent=view.percent,
        clock=view.clock,
        latency=view.latency,
        cert=view.cert,
        timeline_svg=svg.timeline_svg,
        spark_svg=svg.spark_svg,
        pills={
            (s.value, extra): Markup(f'<span class="pill s-{s.value}{extra}">{s.value}</span>')  # icon: page.css
            for s in State
            for extra in ("", " big", " small")
        },
        version=__version__,
        static=static,
    )
    return env


class Static:
    """The page's static files, read from the package once and kept in memory (a read-only filesystem
    is fine); each URL carries the file's hash, so a browser may keep it for a year."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.urls: dict[str, str] = {}
        root = importlib.resources.files("prober.page") / "static"
        for name in STATIC:
            body = (root / name).read_bytes()
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            self.files[name] = (body, kind)
            self.urls[name] = f"/static/{name}?v={hashlib.sha256(body).hexdigest()[:12]}"


class Page:
    def __init__(self, board: Board, history: History, settings: Settings, fallback: Handler | None = None) -> None:
        self.board = board
        self.fallback = fallback  # what / answers with server.ui: off
        self.history = history
        self.settings = settings
        self.static = Static()
        self.first_rows = FIRST_ROWS
        self._cache: dict[str, tuple[float, bytes]] = {}
        self._rendering: dict[str, asyncio.Task[bytes]] = {}

    @functools.cached_property
    def env(self) -> jinja2.Environment:
        return _environment(self.static.urls)

    # --- access ----------------------------------------------------------------------------------------

    def _guard(self, handler: Handler, kind: str) -> Handler:
        """``kind``: ``html`` sends strangers to the login form, ``json`` and ``svg`` answer 401."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            settings = self.settings()
            if login.mode(settings) == "off":
                if request.path == "/" and self.fallback is not None:
                    return await self.fallback(request)
                raise web.HTTPNotFound(text="the status page is off (server.ui: off)")
            if not login.allowed(request, settings):
                if kind == "html":
                    return self._headers(_redirect("/login?" + urlencode({"next": request.path_qs})))
                return self._headers(
                    web.json_response({"error": "log in at /login or send Authorization: Bearer <token>"}, status=401),
                    private=True,
                )
            response = await handler(request)
            return self._headers(response, private=login.mode(settings) != "public" or kind != "svg")

        return guarded

    @staticmethod
    def _headers(response: web.StreamResponse, private: bool = True) -> web.StreamResponse:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if private:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def routes(self, app: web.Application) -> None:
        add = app.router.add_get
        add("/", self._guard(self.index, "html"))
        add("/target/{name}", self._guard(self.target, "html"))
        add("/api/page", self._guard(self.page_json, "json"))
        add("/api/history/{name}", self._guard(self.history_json, "json"))
        add("/badge/overall.svg", self._guard(self.overall_badge, "svg"))
        add("/badge/target/{name}.svg", self._guard(self.target_badge, "svg"))
        add("/badge/{name}.svg", self._guard(self.target_badge, "svg"))
        add("/static/{file}", self.asset)
        add("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)

    # --- HTML ------------------------------------------------------------------------------------------

    def _html(self, template: str, status: int = 200, **context: Any) -> web.Response:
        """``signed_in`` (the log-out button) defaults to: the page needs a token, and this page is guarded."""
        context.setdefault("signed_in", login.mode(self.settings()) == "token")
        body = self.env.get_template(template).render(**context)
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    async def index(self, request: web.Request) -> web.StreamResponse:
        filters = view.Filters.parse(request.query)
        limit = None if request.query.get("all") == "1" else self.first_rows
        # rendered in a worker thread: thousands of rows take a fraction of a second, which the event loop
        # (and so every probe run) must not wait for
        body = await asyncio.to_thread(self._index_html, filters, limit)
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    def _index_html(self, filters: view.Filters, limit: int | None = None) -> bytes:
        """The page with its first ``limit`` rows (those the filters keep first, in the chosen order): with
        thousands of targets, the browser shows the first screen at once and page.js adds the rest."""
        now = time.time()
        order = view.sort_key(filters.sort)
        rows = sorted(view.rows(self.board, self.history, now), key=lambda r: (not filters.keeps(r), order(r)))
        html = self.env.get_template("index.html").render(
            total=len(rows),
            first=rows if limit is None else rows[:limit],
            all_url="/?" + urlencode({**{k: v for k, v in vars_of(filters).items() if v}, "all": "1"}),
            signed_in=login.mode(self.settings()) == "token",
            overall=self.board.overall(),
            rows=rows,
            filters=filters,
            now=now,
            kinds=sorted({r.kind for r in rows}),
            groups={name: self.board.group_state(name) for name in self.board.groups},
            states=[s.value for s in (State.UNHEALTHY, State.DEGRADED, State.UNKNOWN, State.OK)],
            sorts=view.SORTS,
            poll=view.poll_seconds(self.board),
        )
        return html.encode()

    async def target(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        status = self.board.targets.get(name)
        if status is None:
            return self._html("missing.html", status=404, name=name)
        now = time.time()
        groups = view.memberships(self.board).get(name, ())
        return self._html(
            "target.html",
            row=view.row(status, self.history, groups, now),
            detail=self._detail(name, now),
            day=self.history.letters(name, "24h", now),
            hour_means=self.history.means(name, "1h", now),
            day_means=self.history.means(name, "24h", now),
            now=now,
            poll=view.poll_seconds(self.board),
        )

    # --- JSON ------------------------------------------------------------------------------------------

    async def page_json(self, request: web.Request) -> web.StreamResponse:
        """Every row's fields; with ``?spark=1`` also each row's latency per minute."""
        spark = request.query.get("spark") == "1"
        body = await self._shared("spark" if spark else "rows", lambda: self._render(spark))
        return web.Response(body=body, content_type="application/json")

    def _render(self, spark: bool = False) -> bytes:
        now = time.time()
        body = view.page_json(self.board, self.history, now)
        if spark:
            body["spark"] = {
                name: [None if v is None else round(v * 1000, 1) for v in self.history.means(name, "1h", now)]
                for name in self.board.targets
            }
        return json.dumps(body, separators=(",", ":")).encode()

    async def _shared(self, key: str, render: Callable[[], bytes]) -> bytes:
        """One rendering of ``key`` at a time, in a worker thread (the event loop, and so every probe run,
        never waits for it), and its result reused for ``SHARED_FOR`` seconds: ten open pages cost about
        one. A client that goes away does not cancel the rendering the others wait for."""
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < SHARED_FOR:
            return cached[1]
        task = self._rendering.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(render))
            self._rendering[key] = task

            def done(finished: asyncio.Task[bytes]) -> None:
                self._rendering.pop(key, None)
                if not finished.cancelled() and finished.exception() is None:
                    self._cache[key] = (time.monotonic(), finished.result())

            task.add_done_callback(done)
        return await asyncio.shield(task)

    def _detail(self, name: str, now: float) -> dict[str, Any]:
        status = self.board.targets[name]
        last = status.last
        groups = view.memberships(self.board).get(name, ())
        return {
            "target": name,
            "now": now,
            "poll_seconds": view.poll_seconds(self.board),
            "check": {
                **view.row(status, self.history, groups, now).as_json(),
                "phases_ms": {k: round(v * 1000, 2) for k, v in last.phases.items()} if last else {},
                "observations": last.details if last else {},
            },
            "minutes": {
                "step_seconds": self.history.MINUTES[0],
                "buckets": [b.as_json() if b else None for b in self.history.buckets(name, "1h", now)],
            },
            "quarters": {
                "step_seconds": self.history.QUARTERS[0],
                "buckets": [b.as_json() if b else None for b in self.history.buckets(name, "24h", now)],
            },
            "transitions": [t.as_json() for t in self.history.changes(name)],
        }

    async def history_json(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.board.targets:
            return web.json_response({"error": f"no target {name!r}"}, status=404)
        return web.Response(
            body=json.dumps(self._detail(name, time.time()), default=str).encode(), content_type="application/json"
        )

    # --- badges ----------------------------------------------------------------------------------------

    def _badge(self, request: web.Request, label: str, state: State, uptime: Callable[[str], float | None]) -> Any:
        metric = request.query.get("metric", "status")
        if metric not in badges.METRICS:
            return web.json_response({"error": f"metric is one of {', '.join(badges.METRICS)}"}, status=400)
        if metric == "status":
            badge = badges.Badge(label, state.value, badges.COLOURS[state])
        else:
            window = metric.removeprefix("uptime_")
            ratio = uptime(window)
            badge = badges.Badge(f"{label} {window}", view.percent(ratio).replace(" ", ""), badges.uptime_colour(ratio))
        body = self.env.get_template("badge.svg").render(**badge.fields()).encode()
        tag = badges.etag(body)
        public = login.mode(self.settings()) == "public"
        seconds = int(min(60.0, view.poll_seconds(self.board)))
        headers = {
            "ETag": tag,
            "Cache-Control": f"{'public' if public else 'private'}, max-age={seconds}, must-revalidate",
            "Content-Security-Policy": BADGE_CSP,
            "X-Content-Type-Options": "nosniff",
        }
        if tag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type="image/svg+xml", headers=headers)

    async def overall_badge(self, request: web.Request) -> web.StreamResponse:
        targets = list(self.board.targets)

        def uptime(window: str) -> float | None:
            known = [u for u in (self.history.uptime(n, window) for n in targets) if u is not None]
            return min(known) if known else None  # the whole is as available as its least available target

        response: web.StreamResponse = self._badge(request, "status", self.board.overall(), uptime)
        return response

    async def target_badge(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        status = self.board.targets.get(name)
        if status is None:
            return web.json_response({"error": f"no target {name!r}"}, status=404)
        response: web.StreamResponse = self._badge(
            request, name, status.state, lambda window: self.history.uptime(name, window)
        )
        return response

    # --- static files and login -------------------------------------------------------------------------

    async def asset(self, request: web.Request) -> web.StreamResponse:
        found = self.static.files.get(request.match_info["file"])
        if found is None or login.mode(self.settings()) == "off":
            raise web.HTTPNotFound()
        body, kind = found
        current = self.static.urls[request.match_info["file"]].endswith(request.query.get("v", "-"))
        headers = {"Cache-Control": "public, max-age=31536000, immutable" if current else "no-cache"}
        return self._headers(web.Response(body=body, content_type=kind, headers=headers), private=False)

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        settings = self.settings()
        if login.mode(settings) != "token":
            return _redirect("/")
        target = login.safe_next(request.query.get("next", "/"))
        return self._headers(self._html("login.html", target=target, failed=False, signed_in=False))

    async def login(self, request: web.Request) -> web.StreamResponse:
        settings = self.settings()
        if login.mode(settings) != "token":
            return _redirect("/")
        if not login.same_origin(request):
            return self._headers(web.Response(status=403, text="cross-origin login refused"))
        form = await request.post()
        token, target = str(form.get("token", "")), login.safe_next(str(form.get("next", "/")))
        if not login.valid_token(settings, token):
            await asyncio.sleep(0.25)  # a guesser waits; the page stays fast for everyone else
            return self._headers(self._html("login.html", target=target, failed=True, signed_in=False))
        response = _redirect(target)
        login.set_cookie(response, request, login.session(settings), login.SESSION_SECONDS)
        return self._headers(response)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if not login.same_origin(request):
            return self._headers(web.Response(status=403, text="cross-origin logout refused"))
        response = _redirect("/login" if login.mode(self.settings()) == "token" else "/")
        response.del_cookie(login.COOKIE, path="/")
        return self._headers(response)


def vars_of(filters: view.Filters) -> dict[str, str]:
    return {"state": filters.state, "kind": filters.kind, "group": filters.group, "sort": filters.sort}


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def add_routes(
    app: web.Application, board: Board, history: History, settings: Settings, fallback: Handler | None = None
) -> Page:
    """Register the page's routes on the daemon's application; ``fallback`` answers ``/`` when the page is off."""
    page = Page(board, history, settings, fallback)
    page.routes(app)
    return page
