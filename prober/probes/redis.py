"""``redis``: an authenticated client gets PONG and an INFO that shows no quiet failure.

One fresh connection per run (redis-py's low-level ``redis.asyncio.Connection``: no pool, no
retries, RESP2 so that any Redis from 2.6 on and its forks answer), closed in ``finally``. Phases:
``sentinel`` (when the master is discovered through Sentinel), ``connect`` (TCP and TLS), ``auth``
(AUTH and SELECT) and ``query`` (PING, INFO and, on a cluster node, CLUSTER INFO).

redis-py 8.1's client defaults retry a failed command 10 times with backoff and wait 5 s per socket
operation. Here every step runs under one deadline inside the target's timeout, the socket
timeouts are that deadline too, and the connection's retry policy is ``Retry(NoBackoff(), 0)``:
``Retry.call_with_retry`` re-raises once ``failures > retries``, so 0 means a single attempt.

redis-py is imported on first use, so a config without redis targets does not load it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import AfterValidator, Field, SecretStr, model_validator

from prober.errors import ProbeFailure, Words, classify_os_error, describe, driver_errors, said, shorten
from prober.judge import Observable, Observation, Rule, above, degraded_if, unhealthy_if
from prober.models import Address, ReadableFile, TargetBase, format_duration, split_address
from prober.probes._context import ProbeContext
from prober.probes._kit import Run
from prober.probes._params import Param, check_names, honoured, ignored, rejected, truthy
from prober.status import Reason

if TYPE_CHECKING:
    from redis.asyncio.connection import Connection

# bytes one run may receive from its peers (_budget.py): INFO and its sections
BYTE_BUDGET = 4 * 2**20

DEFAULT_PORT = 6379
SENTINEL_SHARE = 1 / 3  # of the run's budget, for asking the Sentinels (all at once)


_CLIENT_TUNING = "client-side connection tuning: the probe opens one connection per run under its own timeout"
_RETRIES = "client-side retry or queue behaviour: the probe makes one attempt per run"

# Query parameters of a redis:// URL as the applications' clients write them: ioredis (and BullMQ, which
# hands its connection to ioredis: every query parameter becomes a client option), node-redis and redis-py.
PARAMS: dict[str, Param] = {
    "family": honoured("4 or 6 (ioredis): connect over IPv4 or IPv6 only; 0: either"),
    "tls": honoured("true (ioredis habit): TLS, as rediss:// (the host name is verified, against ca_file if set)"),
    "db": honoured("the database number (redis-py, ioredis), instead of the path"),
    "connectTimeout": ignored(_CLIENT_TUNING),
    "commandTimeout": ignored(_CLIENT_TUNING),
    "socketTimeout": ignored(_CLIENT_TUNING),
    "keepAlive": ignored(_CLIENT_TUNING),
    "noDelay": ignored(_CLIENT_TUNING),
    "connectionName": ignored("the probe does not name its connection (no CLIENT SETNAME round trip)"),
    "lazyConnect": ignored(_CLIENT_TUNING),
    "maxRetriesPerRequest": ignored(_RETRIES),
    "enableReadyCheck": ignored(_RETRIES),
    "enableOfflineQueue": ignored(_RETRIES),
    "maxLoadingRetryTime": ignored(_RETRIES),
    "autoResubscribe": ignored(_RETRIES),
    "autoResendUnfulfilledCommands": ignored(_RETRIES),
    "enableAutoPipelining": ignored(_CLIENT_TUNING),
    "keyPrefix": ignored("the probe reads no keys"),
    "readOnly": ignored("the probe only runs PING and INFO"),
    "stringNumbers": ignored("the probe reads no values"),
    "showFriendlyErrorStack": ignored("client-side error formatting"),
    "socket_timeout": ignored(_CLIENT_TUNING),
    "socket_connect_timeout": ignored(_CLIENT_TUNING),
    "socket_keepalive": ignored(_CLIENT_TUNING),
    "retry_on_timeout": ignored(_RETRIES),
    "max_connections": ignored(_CLIENT_TUNING),
    "health_check_interval": ignored(_CLIENT_TUNING),
    "client_name": ignored("the probe does not name its connection (no CLIENT SETNAME round trip)"),
    "decode_responses": ignored("client-side decoding"),
    "protocol": ignored("the probe speaks RESP2, which every Redis answers"),
    "name": rejected("Sentinel is configured with the target's sentinels and master_name fields"),
    "sentinelPassword": rejected("use the target's sentinel_password field"),
    "password": rejected("write the password in the URL's userinfo or the target's password field"),
}


@dataclass(frozen=True, slots=True)
class RedisUrl:
    tls: bool
    host: str
    port: int
    username: str | None
    password: str | None
    db: int
    family: int = 0  # socket.AF_UNSPEC, or AF_INET / AF_INET6 from ?family=4|6


def _parse_url(url: str) -> RedisUrl:
    """``redis[s]://[[user]:password@]host[:port][/db][?params]`` -> its parts (userinfo percent-decoded)."""
    try:
        parts = urlsplit(url)
        port = parts.port
        query = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError:
        raise ValueError("invalid URL (a bad port, or a bad query string)") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("expected a redis:// or rediss:// URL with a host")
    if parts.fragment:
        raise ValueError("the URL takes no fragment")
    check_names(query, PARAMS)
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"the URL path must be a database number, got {path!r}")
    if "db" in query and (not query["db"].isdigit() or (path and path != query["db"])):
        raise ValueError("db must be a database number, and the same as the URL path's if both are written")
    tls = parts.scheme == "rediss"
    if "tls" in query:
        wanted = truthy(query["tls"])
        if wanted is None or (tls and not wanted):
            raise ValueError("tls must be true or false (and not false in a rediss:// URL)")
        tls = tls or wanted
    family = {"0": socket.AF_UNSPEC, "4": socket.AF_INET, "6": socket.AF_INET6}.get(query.get("family", "0"))
    if family is None:
        raise ValueError("family must be 4, 6 or 0")
    return RedisUrl(
        tls=tls,
        host=parts.hostname,
        port=port or DEFAULT_PORT,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        db=int(path or query.get("db") or 0),
        family=family,
    )


def _check_url(url: str) -> str:
    _parse_url(url)
    return url


class RedisTarget(TargetBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password", "sentinel_password")

    kind: Literal["redis"]
    url: Annotated[str, AfterValidator(_check_url)]
    password: SecretStr | None = None  # overrides the URL's password
    sentinels: list[Address] | None = Field(default=None, min_length=1)
    master_name: str | None = Field(default=None, min_length=1)
    sentinel_password: SecretStr | None = None
    max_memory_usage: float = Field(default=0.9, gt=0, le=1)
    ca_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _sentinel_pair(self) -> Self:
        if (self.sentinels is None) != (self.master_name is None):
            raise ValueError("set both sentinels and master_name, or neither")
        if self.sentinel_password is not None and self.sentinels is None:
            raise ValueError("sentinel_password needs sentinels")
        return self

    @property
    def connection(self) -> RedisUrl:
        """The URL's parts (userinfo percent-decoded)."""
        return _parse_url(self.url)

    def where(self) -> str:
        if self.sentinels:
            return f"{self.master_name} via Sentinels {', '.join(self.sentinels)}"
        return self.url


MODEL = RedisTarget


# --- driver errors ------------------------------------------------------------------------------------


def _os_cause(exc: BaseException) -> BaseException | None:
    """The socket/TLS error redis-py wrapped into its ConnectionError, if any."""
    seen = exc.__cause__ or exc.__context__
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, OSError | TimeoutError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# redis-py gives one exception type for several cases; only the words tell them apart.
WORDS: tuple[Words, ...] = (
    Words("no_master", re.compile(r"no such master", re.IGNORECASE), "redis-py 8.1.0", "No such master with that name"),
    Words(
        "max_clients",
        re.compile(r"max number of clients", re.IGNORECASE),
        "redis-py 8.1.0",
        "max number of clients reached",
    ),
    Words("closed", re.compile(r"closed by server", re.IGNORECASE), "redis-py 8.1.0", "Connection closed by server."),
)


def classify(exc: BaseException) -> ProbeFailure | None:
    """redis-py's exceptions -> the fixed reasons."""
    from redis.exceptions import (
        AuthenticationError,
        AuthorizationError,
        BusyLoadingError,
        InvalidResponse,
        MasterDownError,
        NoPermissionError,
        RedisError,
        ResponseError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, AuthenticationError | AuthorizationError):  # WRONGPASS, NOAUTH, invalid password
        return ProbeFailure(Reason.AUTH, f"authentication failed: {describe(exc)}")
    if isinstance(exc, NoPermissionError):  # NOPERM: an ACL user without the right to a command
        return ProbeFailure(Reason.AUTH, f"permission denied: {describe(exc)}")
    if isinstance(exc, BusyLoadingError):
        return ProbeFailure(Reason.ASSERTION, "the server is loading its dataset into memory")
    if isinstance(exc, MasterDownError):  # a replica with replica-serve-stale-data no and its link down
        return ProbeFailure(Reason.ASSERTION, f"the replica refuses to serve: {describe(exc)}")
    if isinstance(exc, RedisTimeoutError):
        return ProbeFailure(Reason.TIMEOUT, "timed out")
    if isinstance(exc, ResponseError):
        text = describe(exc)
        if said(WORDS, text) == "no_master":
            return ProbeFailure(Reason.ASSERTION, text)
        return ProbeFailure(Reason.PROTOCOL, f"error reply: {text}")
    if isinstance(exc, InvalidResponse):
        return ProbeFailure(Reason.PROTOCOL, f"not a Redis reply: {shorten(str(exc), 80)}")
    if isinstance(exc, RedisConnectionError):
        cause = _os_cause(exc)
        if cause is not None:
            return classify_os_error(cause)
        text = describe(exc)
        case = said(WORDS, text)
        if case == "max_clients":
            return ProbeFailure(Reason.REFUSED, "the server refuses clients: max number of clients reached")
        if case == "closed":
            return ProbeFailure(Reason.PROTOCOL, "connection closed by the server")
        return ProbeFailure(Reason.PROTOCOL, text)
    if isinstance(exc, RedisError):
        return ProbeFailure(Reason.PROTOCOL, describe(exc))
    return None


# --- talking to one server ---------------------------------------------------------------------------


async def _no_handshake(_connection: Connection) -> None:
    """Used as redis_connect_func: connect() only opens the socket, AUTH is run (and timed) apart."""


def _connection(
    host: str,
    port: int,
    *,
    username: str | None,
    password: str | None,
    db: int,
    timeout: float,
    tls: ssl.SSLContext | None,
    family: int = socket.AF_UNSPEC,
) -> Connection:
    from redis.asyncio.connection import Connection
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": db,
        "username": username,
        "password": password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": False,
        "retry": Retry(NoBackoff(), 0),  # one attempt, no backoff
        "protocol": 2,  # plain AUTH instead of HELLO: works with every Redis version and fork
        "driver_info": None,  # no CLIENT SETINFO round trips
        "decode_responses": True,
        "health_check_interval": 0,
        "redis_connect_func": _no_handshake,
    }
    if tls is None:
        connection = Connection(**kwargs)
    else:
        connection = _tls_connection(kwargs, tls)
    if family != socket.AF_UNSPEC:
        # ?family=4|6 (ioredis): redis-py hands _connection_arguments() to asyncio.open_connection, which
        # takes the address family (redis-py 8.1; pinned below 9 and covered by the family tests).
        arguments = connection._connection_arguments

        def with_family() -> Mapping[str, Any]:
            return {**arguments(), "family": family}

        connection._connection_arguments = with_family  # type: ignore[method-assign]
    return connection


def _tls_connection(kwargs: dict[str, Any], tls: ssl.SSLContext) -> Connection:
    from redis.asyncio.connection import SSLConnection

    # The shared context of the ProbeContext, not one built and loaded per run: SSLConnection hands
    # asyncio its ``ssl_context.get()``, which returns ``ssl_context.context`` once that is set (redis-py
    # 8.1; pinned below 9 and covered by the rediss:// tests).
    connection = SSLConnection(**kwargs)
    connection.ssl_context.context = tls
    return connection


async def _open(conn: Connection) -> None:
    """Open the socket (and TLS): one attempt, the connection's retry policy being Retry(NoBackoff(), 0)."""
    await conn.connect()  # type: ignore[no-untyped-call]  # redis-py leaves connect() unannotated


async def _command(conn: Connection, *args: str) -> Any:
    await conn.send_command(*args, check_health=False)
    return await conn.read_response()


def parse_info(text: str) -> dict[str, str]:
    """INFO / CLUSTER INFO text -> {field: value} (sections flattened)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, sep, value = line.partition(":")
            if sep:
                found[key.strip()] = value.strip()
    return found


def _number(info: dict[str, str], key: str) -> float | None:
    try:
        return float(info[key])
    except (KeyError, ValueError):
        return None


class Step:
    """What the run is waiting for, for the timeout message."""

    def __init__(self) -> None:
        self.now = "starting"


def _text_reply(reply: Any, command: str) -> str:
    if not isinstance(reply, str):
        raise ProbeFailure(Reason.PROTOCOL, f"unexpected {command} reply of type {type(reply).__name__}")
    return reply


@dataclass(frozen=True, slots=True)
class Located:
    """Where the run talks to: the URL's host, or the master the Sentinels name (``found``)."""

    host: str
    port: int
    found: _Discovery | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


async def locate(target: RedisTarget, url: RedisUrl, run: Run, step: Step) -> Located:
    """The server to talk to: the URL's, or the master the Sentinels name (phase ``sentinel``)."""
    if not target.sentinels:
        return Located(url.host, url.port)
    step.now = "asking the Sentinels"
    with run.phase("sentinel"):
        found = await _discover(target, run.left() * SENTINEL_SHARE)
    return Located(found.host, found.port, found)


@asynccontextmanager
async def connected(
    target: RedisTarget, ctx: ProbeContext, url: RedisUrl, where: Located, run: Run, step: Step
) -> AsyncIterator[Connection]:
    """A fresh connection, opened and authenticated (phases ``connect`` and ``auth``, the latter only when
    something is sent) and closed on the way out. Under Sentinel, a failure names the master."""
    password = target.password.get_secret_value() if target.password is not None else url.password
    tls = ctx.ssl_context(target.ca_file) if url.tls else None
    conn = _connection(
        where.host,
        where.port,
        username=url.username,
        password=password,
        db=url.db,
        timeout=run.left(),
        tls=tls,
        family=url.family,
    )
    try:
        step.now = f"connecting to {where.address}"
        with run.phase("connect"), driver_errors(classify):
            await _open(conn)
        step.now = f"authenticating to {where.address}"
        with run.phase("auth"), driver_errors(classify):
            await conn.on_connect()
        if password is None and not url.db:
            del run.phases["auth"]  # nothing was sent
        yield conn
    except ProbeFailure as failure:
        if where.found is not None:
            failure.message = f"master {where.address}: {failure.message}"
            failure.details = {**failure.details, "sentinel": where.found.details}
        raise
    finally:
        await conn.disconnect()


async def _query(conn: Connection, where: str, run: Run, step: Step) -> tuple[dict[str, str], dict[str, str] | None]:
    """PING, INFO (and CLUSTER INFO on a cluster node): the INFO fields and the CLUSTER INFO fields.
    Phase ``query``."""
    from redis.exceptions import BusyLoadingError

    with run.phase("query"):
        step.now = f"waiting for the PING reply of {where}"
        try:
            with driver_errors(classify):
                pong = await _command(conn, "PING")
        except ProbeFailure as failure:
            if isinstance(failure.__cause__, BusyLoadingError):
                raise await _loading_failure(conn, failure) from failure.__cause__
            raise
        if pong != "PONG":
            raise ProbeFailure(Reason.PROTOCOL, f"unexpected PING reply: {str(pong)[:40]!r}")
        step.now = f"waiting for the INFO reply of {where}"
        with driver_errors(classify):
            info = parse_info(_text_reply(await _command(conn, "INFO"), "INFO"))
        cluster: dict[str, str] | None = None
        if info.get("cluster_enabled") == "1":
            step.now = f"waiting for the CLUSTER INFO reply of {where}"
            with driver_errors(classify):
                cluster = parse_info(_text_reply(await _command(conn, "CLUSTER", "INFO"), "CLUSTER INFO"))
    return info, cluster


async def _loading_failure(conn: Connection, failure: ProbeFailure) -> ProbeFailure:
    """PING refused with LOADING: INFO is still served while loading and tells how far it got."""
    try:
        with driver_errors(classify):
            await _open(conn)  # redis-py dropped the connection on the error reply
            await conn.on_connect()
            info = parse_info(_text_reply(await _command(conn, "INFO", "persistence"), "INFO"))
    except ProbeFailure:
        return failure
    percent = info.get("loading_loaded_perc")
    failure.details = {"loading": True, "loading_loaded_perc": _number(info, "loading_loaded_perc")}
    if percent is not None:
        failure.message = f"{failure.message} ({percent}% done)"
    return failure


# --- the verdict --------------------------------------------------------------------------------------

_DETAIL_FIELDS: tuple[tuple[str, str], ...] = (
    ("redis_mode", "mode"),
    ("uptime_in_seconds", "uptime_seconds"),
    ("connected_clients", "connected_clients"),
    ("maxclients", "maxclients"),
    ("used_memory", "used_memory_bytes"),
    ("used_memory_human", "used_memory_human"),
    ("maxmemory", "maxmemory_bytes"),
    ("maxmemory_policy", "maxmemory_policy"),
    ("rdb_last_bgsave_status", "rdb_last_bgsave_status"),
    ("aof_enabled", "aof_enabled"),
    ("aof_last_write_status", "aof_last_write_status"),
    ("connected_slaves", "connected_replicas"),
    ("master_host", "master_host"),
    ("master_port", "master_port"),
    ("master_link_status", "master_link_status"),
    ("master_last_io_seconds_ago", "master_last_io_seconds_ago"),
    ("master_link_down_since_seconds", "master_link_down_since_seconds"),
    ("loading", "loading"),
)


_CLUSTER_FIELDS = ("cluster_state", "cluster_slots_assigned", "cluster_slots_ok", "cluster_known_nodes", "cluster_size")


def _values(info: dict[str, str], cluster: dict[str, str] | None) -> dict[str, Any]:
    values: dict[str, Any] = {"version": info.get("redis_version", "unknown")}
    for source, name in _DETAIL_FIELDS:
        if source in info:
            value: Any = info[source]
            number = _number(info, source)
            values[name] = int(number) if number is not None and number.is_integer() else (number or value)
    if cluster is not None:
        for key in _CLUSTER_FIELDS:
            if key in cluster:
                values[key] = int(cluster[key]) if cluster[key].isdigit() else cluster[key]
    role = info.get("role", "")
    values["role"] = {"master": "master", "slave": "replica"}.get(role, role or "unknown")
    return values


def _observe(info: dict[str, str], cluster: dict[str, str] | None) -> Observation:
    """INFO (and CLUSTER INFO) -> the observations, gauges and labels."""
    values = _values(info, cluster)
    values["_info"] = info
    gauges: dict[str, float] = {}
    if values["role"] == "replica":
        if info.get("master_link_status", "unknown") != "up":
            down_for = _number(info, "master_link_down_since_seconds")
            if down_for is not None and 0 <= down_for < 1e9:
                gauges["replication_lag_seconds"] = down_for  # the data is at least this stale
        else:
            # A replica cannot see the master's offset; the seconds since the last byte from the
            # master (pings every repl-ping-replica-period, 10 s by default) are a proxy for lag.
            last_io = _number(info, "master_last_io_seconds_ago")
            if last_io is not None and last_io >= 0:
                gauges["replication_lag_seconds"] = last_io
    used, limit = _number(info, "used_memory"), _number(info, "maxmemory")
    if used is not None and limit:
        gauges["memory_usage_ratio"] = used / limit
        values["memory_usage_ratio"] = round(used / limit, 4)
    summary = f"PONG from Redis {values['version']} ({values['role']})"
    return Observation(values, summary, gauges=gauges, info={"version": str(values["version"]), "role": values["role"]})


def _at(values: Mapping[str, Any]) -> str:
    """Under Sentinel, a verdict names the master it is about."""
    return f"master {values['address']}: " if "sentinel" in values else ""


def _sentinel_itself(_target: RedisTarget, values: Mapping[str, Any]) -> str | None:
    if values.get("mode") != "sentinel":
        return None
    return f"{_at(values)}this is a Sentinel, not a data node: set sentinels and master_name"


def _loading(_target: RedisTarget, values: Mapping[str, Any]) -> str | None:
    if values.get("loading") != 1:
        return None
    percent = values["_info"].get("loading_loaded_perc", "?")
    return f"{_at(values)}the server is loading its dataset into memory ({percent}% done)"


def _cluster_down(_target: RedisTarget, values: Mapping[str, Any]) -> str | None:
    state = values.get("cluster_state")
    if values["_info"].get("cluster_enabled") != "1" or state == "ok":
        return None
    return f"{_at(values)}cluster_state is {state or 'unknown'}, not ok"


def _not_the_master(_target: RedisTarget, values: Mapping[str, Any]) -> str | None:
    if "sentinel" not in values or values["role"] == "master":
        return None
    return f"{_at(values)}Sentinel names it the master, but it reports role {values['role']}"


def _link_down(_target: RedisTarget, values: Mapping[str, Any]) -> str | None:
    info = values["_info"]
    link = info.get("master_link_status", "unknown")
    if values["role"] != "replica" or link == "up":
        return None
    master = f"{info.get('master_host', '?')}:{info.get('master_port', '?')}"
    down_for = _number(info, "master_link_down_since_seconds")
    since = f" for {down_for:.0f}s" if down_for is not None and 0 <= down_for < 1e9 else ""
    return f"link to master {master} is {link}{since}"


def _save_failed(_target: RedisTarget, values: Mapping[str, Any]) -> str | None:
    return "the last RDB save (BGSAVE) failed" if values.get("rdb_last_bgsave_status") == "err" else None


def _aof_failed(_target: RedisTarget, values: Mapping[str, Any]) -> str | None:
    if values.get("aof_enabled") == 1 and values.get("aof_last_write_status") == "err":
        return "the last AOF write failed"
    return None


def _memory_full(target: RedisTarget, ratio: float, _values: Mapping[str, Any]) -> str:
    return f"memory usage {ratio:.0%} of maxmemory (limit {target.max_memory_usage:.0%})"


def _few_sentinels(target: RedisTarget, values: Mapping[str, Any]) -> str | None:
    sentinel = values.get("sentinel")
    if sentinel is None or sentinel["answered"] >= sentinel["quorum"]:
        return None
    configured = len(target.sentinels or [])
    return f"only {sentinel['answered']} of {configured} Sentinels answered (quorum {sentinel['quorum']})"


RULES: tuple[Rule, ...] = (
    unhealthy_if(_sentinel_itself),
    unhealthy_if(_loading),
    unhealthy_if(_cluster_down),
    unhealthy_if(_not_the_master),
    degraded_if(_link_down),
    degraded_if(_save_failed),
    degraded_if(_aof_failed),
    degraded_if(above("memory_usage_ratio", "max_memory_usage", _memory_full)),
    degraded_if(_few_sentinels),
)

OBSERVES: dict[str, Observable] = {
    "version": Observable("string", "redis_version"),
    "role": Observable("string", "master or replica"),
    "mode": Observable("string", "redis_mode: standalone, cluster or sentinel"),
    "uptime_seconds": Observable("int", "uptime_in_seconds"),
    "connected_clients": Observable("int", "connected_clients"),
    "maxclients": Observable("int", "maxclients"),
    "used_memory_bytes": Observable("int", "used_memory"),
    "used_memory_human": Observable("string", "used_memory_human"),
    "maxmemory_bytes": Observable("int", "maxmemory (0: no limit)"),
    "maxmemory_policy": Observable("string", "maxmemory_policy (noeviction, allkeys-lru, ...)"),
    "memory_usage_ratio": Observable("double", "used_memory / maxmemory, when maxmemory is set"),
    "rdb_last_bgsave_status": Observable("string", "ok or err"),
    "aof_enabled": Observable("int", "1 when AOF is on"),
    "aof_last_write_status": Observable("string", "ok or err"),
    "connected_replicas": Observable("int", "connected_slaves"),
    "master_host": Observable("string", "replicas: the master's host"),
    "master_port": Observable("int", "replicas: the master's port"),
    "master_link_status": Observable("string", "replicas: up or down"),
    "master_last_io_seconds_ago": Observable("int", "replicas: seconds since the master last sent"),
    "master_link_down_since_seconds": Observable("int", "replicas: how long the link has been down"),
    "loading": Observable("int", "1 while the dataset is loaded into memory"),
    "cluster_state": Observable("string", "cluster nodes: ok or fail"),
    "cluster_slots_assigned": Observable("int", "cluster nodes"),
    "cluster_slots_ok": Observable("int", "cluster nodes"),
    "cluster_known_nodes": Observable("int", "cluster nodes"),
    "cluster_size": Observable("int", "cluster nodes"),
    "sentinel": Observable("map", "with sentinels: master_name, configured, answered, quorum, master, sentinels"),
    "address": Observable("string", "with sentinels: the master's address they name"),
}


# --- Sentinel --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Discovery:
    host: str
    port: int
    quorum: int
    answered: int
    details: dict[str, Any] = field(default_factory=dict)


async def _ask_sentinel(target: RedisTarget, address: str, limit: float) -> dict[str, str] | ProbeFailure:
    """One Sentinel's view of the master (``SENTINEL MASTER name``), or why it did not answer."""
    assert target.master_name is not None
    host, port = split_address(address)
    password = target.sentinel_password.get_secret_value() if target.sentinel_password is not None else None
    conn = _connection(host, port, username=None, password=password, db=0, timeout=limit, tls=None)
    try:
        async with asyncio.timeout(limit):
            with driver_errors(classify):
                await _open(conn)
                await conn.on_connect()
                reply = await _command(conn, "SENTINEL", "MASTER", target.master_name)
    except TimeoutError:
        return ProbeFailure(Reason.TIMEOUT, f"no answer within {format_duration(limit)}")
    except ProbeFailure as failure:
        return failure
    finally:
        await conn.disconnect()
    if not isinstance(reply, list) or len(reply) % 2 or not all(isinstance(v, str) for v in reply):
        return ProbeFailure(Reason.PROTOCOL, "unexpected SENTINEL MASTER reply")
    view = dict(zip(reply[::2], reply[1::2], strict=True))
    if not view.get("ip") or not view.get("port", "").isdigit():
        return ProbeFailure(Reason.PROTOCOL, "SENTINEL MASTER reply without ip/port")
    return view


def _group_failures(failures: list[tuple[str, ProbeFailure]]) -> str:
    """``a:1, b:2: connection refused; c:3: timed out`` (one entry per distinct message)."""
    by_message: dict[str, list[str]] = {}
    for address, failure in failures:
        by_message.setdefault(failure.message, []).append(address)
    if len(by_message) == 1 and len(failures) > 1:
        return f"all {len(failures)}: {next(iter(by_message))}"
    return "; ".join(f"{', '.join(addresses)}: {message}" for message, addresses in by_message.items())


async def _discover(target: RedisTarget, limit: float) -> _Discovery:
    """Ask every Sentinel at once; the master is the one named with the highest config epoch."""
    assert target.sentinels is not None
    answers = await asyncio.gather(*(_ask_sentinel(target, a, limit) for a in target.sentinels))
    views: list[tuple[str, dict[str, str]]] = []
    report: list[dict[str, Any]] = []
    failures: list[tuple[str, ProbeFailure]] = []
    for address, answer in zip(target.sentinels, answers, strict=True):
        if isinstance(answer, ProbeFailure):
            failures.append((address, answer))
            report.append({"address": address, "error": answer.message, "reason": str(answer.reason)})
        else:
            views.append((address, answer))
            report.append(
                {"address": address, "master": f"{answer['ip']}:{answer['port']}", "flags": answer.get("flags", "")}
            )
    details: dict[str, Any] = {
        "master_name": target.master_name,
        "configured": len(target.sentinels),
        "answered": len(views),
        "sentinels": report,
    }
    if not views:
        first = failures[0][1]
        said = _group_failures(failures)
        raise ProbeFailure(
            first.reason, f"no Sentinel answered for {target.master_name!r}: {said}", {"sentinel": details}
        )

    def epoch(view: dict[str, str]) -> int:
        value = view.get("config-epoch", "0")
        return int(value) if value.isdigit() else 0

    chosen = max((v for _, v in views), key=epoch)
    opinions = Counter(f"{v['ip']}:{v['port']}" for _, v in views)
    quorum_text = chosen.get("quorum", "")
    quorum = int(quorum_text) if quorum_text.isdigit() else len(target.sentinels) // 2 + 1
    details["quorum"] = quorum
    details["master"] = f"{chosen['ip']}:{chosen['port']}"
    if len(opinions) > 1:
        details["disagreement"] = dict(opinions)
    return _Discovery(chosen["ip"], int(chosen["port"]), quorum, len(views), details)


# --- the probe -------------------------------------------------------------------------------------


async def probe(target: RedisTarget, ctx: ProbeContext) -> Observation:
    url = _parse_url(target.url)
    run = ctx.begin(target)
    step = Step()
    async with run.bounded(lambda: f"no answer within {format_duration(run.budget)} ({step.now})"):
        return await _run(target, ctx, url, run, step)


async def _run(target: RedisTarget, ctx: ProbeContext, url: RedisUrl, run: Run, step: Step) -> Observation:
    where = await locate(target, url, run, step)
    async with connected(target, ctx, url, where, run, step) as conn:
        info, cluster = await _query(conn, where.address, run, step)
    observed = _observe(info, cluster)
    observed.phases = run.phases
    if where.found is not None:
        observed.values["sentinel"] = where.found.details
        observed.values["address"] = where.address
        configured = len(target.sentinels or [])
        observed.summary += f" at {where.address}, named by {where.found.answered} of {configured} Sentinels"
    return observed
