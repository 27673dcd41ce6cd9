"""``clickhouse``: the HTTP interface answers ``/ping``, an authenticated client runs ``SELECT 1`` and reads
the server version, and no replicated table is read-only, without its Keeper session or lagging.

Three phases, each timed: ``ping`` (``GET /ping`` over plain HTTP on the shared aiohttp session), ``connect``
(clickhouse-connect's async client: authentication plus its setup queries, which also read the version) and
``query`` (``SELECT 1`` and ``system.replicas``). A fresh client, with its own connection, per run, always
closed. The client's connect/read timeouts are the remaining budget and its query retries are off; its one
built-in reconnect after a connect timeout can therefore only happen past the deadline, which the probe enforces
itself. A server too old for clickhouse-connect fails its setup queries; the probe then reads ``SELECT version()``
over plain HTTP and reports ``protocol`` naming that version.

clickhouse-connect is imported on first use, so a config without clickhouse targets does not load it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import aiohttp
from pydantic import AfterValidator, Field, SecretStr

from prober.errors import ProbeFailure, Words, classify_os_error, describe, driver_errors, shorten
from prober.judge import Check, Observable, Observation, Rule, degraded_if
from prober.models import Duration, ReadableFile, TargetBase, format_duration
from prober.probes import _aiohttp, _query
from prober.probes._context import ProbeContext
from prober.probes._kit import Run
from prober.probes._params import Param, check_names, ignored, rejected
from prober.status import Reason

if TYPE_CHECKING:
    from clickhouse_connect.driver.asyncclient import AsyncClient
    from clickhouse_connect.driver.exceptions import ClickHouseError

# bytes one run may receive from its peers (_budget.py): system.replicas rows of thousands of tables
BYTE_BUDGET = 8 * 2**20

DEFAULT_PORTS = {"http": 8123, "https": 8443}
# UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD (old servers), AUTHENTICATION_FAILED (current ones)
AUTH_CODES = frozenset({192, 193, 194, 516})
# What an old server answers to clickhouse-connect's setup queries: NO_SUCH_COLUMN_IN_TABLE, UNKNOWN_FUNCTION,
# UNKNOWN_IDENTIFIER, UNKNOWN_TABLE, SYNTAX_ERROR, UNKNOWN_SETTING.
INCOMPATIBLE_CODES = frozenset({16, 46, 47, 60, 62, 115})
ACCESS_DENIED = 497
READONLY = 164  # "Cannot execute query in readonly mode"
REPLICAS_SQL = "SELECT database, table, is_readonly, is_session_expired, absolute_delay FROM system.replicas"
MAX_LISTED = 5  # tables named per problem in the message and details

# clickhouse-connect puts the server's error code, the HTTP status and the server's own words into the
# text of one exception type; these patterns read them back.
_SEEN = "clickhouse-connect 1.12.0"
WORDS: tuple[Words, ...] = (
    Words(
        "code",
        re.compile(r"\bcode:\s*(\d+)", re.IGNORECASE),
        _SEEN,
        "HTTPDriver for http://127.0.0.1:8123 received ClickHouse error code 193\n Code: 193. DB::Exception: Wrong "
        "password for user default. (WRONG_PASSWORD) (version 24.3.1.1)",
    ),
    Words(
        "http_status",
        re.compile(r"received HTTP status (\d{3})"),
        _SEEN,
        "HTTPDriver for http://127.0.0.1:8123 received HTTP status 404",
    ),
    Words(
        "server_text",
        re.compile(r"DB::Exception:\s*(.*?)(?:, e\.what\(\)|\s*\(version [^()]*(?:\([^()]*\))?\)|$)", re.DOTALL),
        _SEEN,
        "Code: 60. DB::Exception: Table default.nope does not exist. (UNKNOWN_TABLE) (version 24.3.1.1)",
    ),
)
_CODE, _STATUS, _SERVER_TEXT = (row.pattern for row in WORDS)
_VERSION = re.compile(r"^\d+(?:\.\d+){1,4}$")


_TUNING = "client-side tuning: the probe opens one connection per run under its own timeout"

# The URL parameters of the official Node.js client, @clickhouse/client (createClient({url}), 1.x).
PARAMS: dict[str, Param] = {
    "clickhouse_setting_*": ignored("per-request settings: the probe's own queries run with the server's defaults"),
    "ch_*": ignored("per-request settings (the short form of clickhouse_setting_*)"),
    "http_header_*": ignored("extra HTTP headers are not sent; their values are treated as secrets"),
    "application": ignored("the probe names itself prober"),
    "session_id": ignored("the probe uses no session"),
    "request_timeout": ignored(_TUNING),
    "max_open_connections": ignored(_TUNING),
    "compression_request": ignored(_TUNING),
    "compression_response": ignored(_TUNING),
    "keep_alive_enabled": ignored(_TUNING),
    "keep_alive_idle_socket_ttl": ignored(_TUNING),
    "log_level": ignored("client-side logging"),
    "pathname": rejected("a ClickHouse behind a path prefix is not supported"),
    "access_token": rejected("JWT authentication is not supported: use a user and password"),
}
_PREFIXES = tuple(name.removesuffix("*") for name in PARAMS if name.endswith("*"))


def _url_query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def _check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        _ = parts.port  # raises ValueError on a port out of range
    except ValueError:
        raise ValueError("the URL is not valid (a bad port, or a bad query string)") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host")
    if parts.fragment:
        raise ValueError("the URL takes no fragment (http(s)://user:password@host:8123/database?params)")
    if "/" in parts.path.strip("/"):
        raise ValueError("the URL path is the database name and nothing else")
    check_names((key for key, _ in query if not key.startswith(_PREFIXES)), PARAMS)
    return url


class ClickhouseTarget(TargetBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)

    kind: Literal["clickhouse"]
    url: Annotated[str, AfterValidator(_check_url)]
    password: SecretStr | None = None  # overrides the URL's password; or password_file
    max_replication_lag: Duration = 300.0
    ca_file: ReadableFile | None = None
    query: Annotated[str, Field(min_length=1, max_length=_query.MAX_QUERY)] | None = None  # readonly=1, first row

    def secrets(self) -> list[str]:
        """Also the values of ``http_header_*`` URL parameters (an API key may travel in a header)."""
        found = super().secrets()
        found.extend(value for key, value in _url_query(self.url) if key.startswith("http_header_") and value)
        return found

    def where(self) -> str:
        return self.url


MODEL = ClickhouseTarget


@dataclass(frozen=True, slots=True)
class _Server:
    secure: bool
    host: str
    port: int
    username: str
    password: str
    database: str | None

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}"


def _server(target: ClickhouseTarget) -> _Server:
    parts = urlsplit(target.url)
    password = target.password.get_secret_value() if target.password else unquote(parts.password or "")
    return _Server(
        secure=parts.scheme == "https",
        host=parts.hostname or "",
        port=parts.port or DEFAULT_PORTS[parts.scheme],
        username=unquote(parts.username or "") or "default",
        password=password,
        database=unquote(parts.path.strip("/")) or None,
    )


def _error_code(exc: ClickHouseError) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found else None


def _http_status(exc: ClickHouseError) -> int | None:
    found = _STATUS.search(str(exc))
    return int(found.group(1)) if found else None


def _server_says(exc: ClickHouseError) -> str:
    """The server's own words from a clickhouse-connect error: ``Code 193: Wrong password for user x``."""
    found = _SERVER_TEXT.search(str(exc))
    text = shorten(found.group(1) if found else describe(exc), 200)
    code = _error_code(exc)
    return f"Code {code}: {text}" if code is not None else text


def classify(exc: BaseException) -> ProbeFailure | None:
    """clickhouse-connect's and aiohttp's exceptions -> the fixed reasons."""
    from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError

    if isinstance(exc, ClickHouseError):
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, ClickHouseError):  # a transport error, wrapped
            found = classify(cause) or classify_os_error(cause)
            return found or ProbeFailure(Reason.PROTOCOL, shorten(describe(cause), 100))
        code, status = _error_code(exc), _http_status(exc)
        if code in AUTH_CODES or status == 401:
            return ProbeFailure(Reason.AUTH, f"authentication failed ({_server_says(exc)})")
        if isinstance(exc, DatabaseError) and code is not None:  # the server ran the query and said no
            return ProbeFailure(Reason.ASSERTION, f"query failed ({_server_says(exc)})")
        if status is not None:  # an HTTP error without a ClickHouse error code
            return ProbeFailure(Reason.PROTOCOL, f"HTTP {status} without a ClickHouse error: not a ClickHouse server?")
        return ProbeFailure(Reason.PROTOCOL, f"unexpected answer: {shorten(describe(exc), 100)}")
    return _aiohttp.classify(exc)


@asynccontextmanager
async def _phase(run: Run, name: str) -> AsyncIterator[None]:
    """One phase of the run: timed, bounded by the run's deadline, and named in a failure's message."""
    with run.phase(name):
        async with run.bounded(f"{name}: no answer in time (timeout {format_duration(run.timeout)})"):
            try:
                with driver_errors(classify):
                    yield
            except ProbeFailure as failure:
                failure.message = f"{name}: {failure.message}"
                raise


async def _ping(ctx: ProbeContext, server: _Server, tls: ssl.SSLContext | bool) -> None:
    async with ctx.http_session().get(f"{server.base}/ping", ssl=tls, allow_redirects=False) as response:
        body = await response.content.read(64)
        status = response.status
    if status != 200 or not body.startswith(b"Ok."):
        raise ProbeFailure(Reason.PROTOCOL, f"/ping answered HTTP {status} {body[:16]!r}: not a ClickHouse server?")


def _basic_auth(server: _Server) -> str:
    return "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()


async def _plain_version(ctx: ProbeContext, server: _Server, tls: ssl.SSLContext | bool) -> str | None:
    """``SELECT version()`` over the plain HTTP interface: works with every ClickHouse, however old."""
    try:
        async with ctx.http_session().get(
            f"{server.base}/",
            params={"query": "SELECT version()"},
            headers={"Authorization": _basic_auth(server)},
            ssl=tls,
            allow_redirects=False,
        ) as response:
            text = (await response.content.read(64)).decode("ascii").strip()
            status = response.status
    except (aiohttp.ClientError, UnicodeDecodeError):
        return None
    return text if status == 200 and _VERSION.match(text) else None


async def _open(
    ctx: ProbeContext, target: ClickhouseTarget, server: _Server, tls: ssl.SSLContext | bool, run: Run
) -> AsyncClient:
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import DatabaseError

    budget = run.left()
    try:
        client: AsyncClient = await clickhouse_connect.get_async_client(
            host=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            database=server.database,
            interface="https" if server.secure else "http",
            secure=server.secure,
            verify=True,
            ca_cert=target.ca_file,
            connect_timeout=budget,
            send_receive_timeout=budget,
            query_retries=0,
            compress=False,
            client_name="prober",
            show_clickhouse_errors="scrub",
            autogenerate_session_id=False,
            connector_limit=2,
        )
    except DatabaseError as exc:
        if _error_code(exc) not in INCOMPATIBLE_CODES:
            raise
        version = await _plain_version(ctx, server, tls)
        if version is None:
            raise ProbeFailure(Reason.PROTOCOL, f"clickhouse-connect's setup failed ({_server_says(exc)})") from exc
        raise ProbeFailure(
            Reason.PROTOCOL,
            f"ClickHouse {version} is too old for clickhouse-connect (its setup query failed: {_server_says(exc)})",
            details={"version": version},
        ) from exc
    return client


def _names(rows: Sequence[str]) -> list[str]:
    more = len(rows) - MAX_LISTED
    return [*rows[:MAX_LISTED], *([f"{more} more"] if more > 0 else [])]


def _observe(target: ClickhouseTarget, version: str, replicas: Sequence[Sequence[Any]] | None) -> Observation:
    """The version and the ``system.replicas`` rows (None: not readable by this user)."""
    values: dict[str, Any] = {"version": version}
    info = {"version": version}
    summary = f"ClickHouse {version}, SELECT 1 ok"
    if replicas is None:
        values["replicas"] = "system.replicas is not readable by this user (ACCESS_DENIED)"
        return Observation(values, summary, info=info)
    tables = [(f"{r[0]}.{r[1]}", bool(int(r[2])), bool(int(r[3])), int(r[4])) for r in replicas]
    values["replicated_tables"] = len(tables)
    gauges: dict[str, float] = {}
    if tables:
        lag = float(max(delay for *_, delay in tables))
        values["max_absolute_delay_seconds"] = lag
        gauges["replication_lag_seconds"] = lag
        summary += f", {len(tables)} replicated table{'s' if len(tables) > 1 else ''}, max delay {lag:g}s"
    limit = target.max_replication_lag
    for key, names in (
        ("readonly_replicas", [name for name, ro, _, _ in tables if ro]),
        ("session_expired_replicas", [name for name, _, gone, _ in tables if gone]),
        ("lagging_replicas", [f"{name} ({delay}s)" for name, _, _, delay in tables if delay > limit]),
    ):
        if names:
            values[key] = _names(names)
    return Observation(values, summary, gauges=gauges, info=info)


def _listed(key: str, label: Callable[[ClickhouseTarget], str]) -> Check:
    def check(target: ClickhouseTarget, values: Mapping[str, Any]) -> str | None:
        names = values.get(key)
        return f"{label(target)}: {', '.join(names)}" if names else None

    return check


RULES: tuple[Rule, ...] = (
    degraded_if(_listed("readonly_replicas", lambda _t: "replica read-only")),
    degraded_if(_listed("session_expired_replicas", lambda _t: "Keeper session expired")),
    degraded_if(_listed("lagging_replicas", lambda t: f"replication delay > {format_duration(t.max_replication_lag)}")),
)

OBSERVES: dict[str, Observable] = {
    "version": Observable("string", "the server version"),
    "replicated_tables": Observable("int", "rows of system.replicas"),
    "max_absolute_delay_seconds": Observable("double", "the largest absolute_delay of a replicated table"),
    "readonly_replicas": Observable("list", "replicated tables in read-only mode (at most 5 named)"),
    "session_expired_replicas": Observable("list", "replicated tables whose Keeper session expired"),
    "lagging_replicas": Observable("list", "replicated tables delayed more than max_replication_lag"),
    "replicas": Observable("string", "why system.replicas could not be read"),
    **_query.OBSERVES,
}


async def _data_query(client: AsyncClient, query: str, run: Run) -> list[tuple[str, Any]] | None:
    """The target's own query with ``readonly=1`` and ``max_execution_time`` from what is left of the run,
    stopping at the first block of rows: its first row, or None. A setting the user's profile fixes is not
    sent (a read-only profile fixes them all, and is read-only already); a profile that fixes ``readonly`` at
    0 cannot run the query read-only, so it is not run."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    wanted: dict[str, Any] = {
        "readonly": 1,
        "max_execution_time": max(1, int(run.left())),
        "max_result_rows": 1,
        "result_overflow_mode": "break",
    }
    fixed = {key: known.value for key, known in client.server_settings.items() if key in wanted and known.readonly}
    if fixed.get("readonly") == "0":
        raise ProbeFailure(
            Reason.ASSERTION, "the user's profile fixes readonly at 0: the query cannot run read-only, so it is not run"
        )
    settings = {key: value for key, value in wanted.items() if key not in fixed}
    try:
        answer = await client.query(query, settings=settings)
    except DatabaseError as exc:
        if _error_code(exc) == READONLY:
            raise _query.wrote(_server_says(exc)) from exc
        raise
    rows = answer.result_rows
    return list(zip(answer.column_names, rows[0], strict=True)) if rows else None


async def _replicas(client: AsyncClient) -> Sequence[Sequence[Any]] | None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    try:
        answer = await client.query(REPLICAS_SQL)
    except DatabaseError as exc:
        if _error_code(exc) == ACCESS_DENIED:
            return None
        raise
    rows: Sequence[Sequence[Any]] = answer.result_rows
    return rows


async def probe(target: ClickhouseTarget, ctx: ProbeContext) -> Observation:
    server = _server(target)
    tls: ssl.SSLContext | bool = ctx.ssl_context(target.ca_file) if server.secure else False
    run = ctx.begin(target)
    async with _phase(run, "ping"):
        await _ping(ctx, server, tls)
    client: AsyncClient | None = None
    try:
        async with _phase(run, "connect"):
            client = await _open(ctx, target, server, tls, run)
            version = str(client.server_version)
        async with _phase(run, "query"):
            rows = (await client.query("SELECT 1")).result_rows
            if [tuple(row) for row in rows] != [(1,)]:
                raise ProbeFailure(Reason.PROTOCOL, f"SELECT 1 answered {str(rows)[:60]}")
            replicas = await _replicas(client)
        first: list[tuple[str, Any]] | None = None
        if target.query is not None:
            async with _phase(run, "data_query"):
                first = await _data_query(client, target.query, run)
    finally:
        if client is not None:  # shielded: a cancelled run still releases the client's connection
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await asyncio.shield(client.close())
    observed = _observe(target, version, replicas)
    if target.query is not None:
        values, samples = _query.observe(first)
        observed.values.update(values)
        observed.series["query_value"] = samples
        observed.summary += f"; {_query.summary(values)}"
    observed.phases = run.phases
    observed.latency = run.elapsed()
    return observed
