"""``postgres``: an authenticated client can run a query, and the server is not quietly failing.

Each run opens a fresh connection with asyncpg (``asyncpg.connect``, closed in ``finally``), so that a
changed password, a full connection table or a lost network is seen. Phases: ``connect`` (TCP, TLS,
startup and authentication) and ``query`` (``SELECT 1``, then one query that reads the server's facts:
version, ``pg_is_in_recovery()``, replay lag, connection usage, whether the session is encrypted).

TLS follows the DSN's ``sslmode`` as libpq does, and the default is libpq's: ``prefer``. Note that
``prefer`` (and ``allow``) silently fall back to plaintext when the server does not offer TLS, in
libpq and in asyncpg alike; ``details.tls`` says what a run really got, and ``sslmode=require`` (or
``verify-ca``/``verify-full``) makes a missing TLS a failure. The environment (``PGSSLMODE`` and
friends) is not consulted for TLS: the DSN is the whole truth.

asyncpg is imported on first use, so a config without postgres targets does not load it.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AfterValidator, Field, SecretStr

from prober.errors import ProbeFailure, Words, describe, driver_errors, said
from prober.judge import Observable, Observation, Rule, above, degraded_if, unhealthy_if
from prober.models import Duration, ReadableFile, TargetBase, format_duration
from prober.probes import _query
from prober.probes._context import ProbeContext
from prober.probes._kit import Run
from prober.status import Reason

if TYPE_CHECKING:
    import asyncpg

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_SSLMODE = "prefer"  # libpq's default

# DSN parameters the probe refuses, with the reason given to the user.
_UNSUPPORTED = {
    "sslrootcert": "use the target's ca_file field instead of sslrootcert",
    "sslcert": "client certificates (sslcert/sslkey) are not supported",
    "sslkey": "client certificates (sslcert/sslkey) are not supported",
    "sslpassword": "client certificates (sslcert/sslkey) are not supported",
    "sslcrl": "sslcrl is not supported",
    "sslnegotiation": "sslnegotiation is not supported",
    "target_session_attrs": "use the target's role field instead of target_session_attrs",
    "service": "service files are not supported: write the connection in the DSN",
}
# libpq client options asyncpg does not know: it would send them to the server as settings, which
# the server rejects. The probe has its own timeout, so they are dropped.
_LIBPQ_CLIENT_ONLY = frozenset(
    {
        "sslmode",  # handled here and passed to asyncpg explicitly
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "gssencmode",
        "channel_binding",
        "sslcompression",
        "sslsni",
        "fallback_application_name",
        "load_balance_hosts",
        "require_auth",
    }
)

# Everything the verdict needs, in one round trip; valid on PostgreSQL 10 and later.
# Lag: 0 while the replica has replayed all the WAL it received (an idle primary writes no
# transactions, so the age of the last replayed one says nothing then); else the age of the last
# replayed transaction. Connections: client backends count against max_connections; a role without
# pg_read_all_stats sees other roles' backend_type as NULL, so it counts every backend attached to a
# database (an estimate that may include autovacuum workers), and says so.
FACTS_QUERY = """
SELECT pg_is_in_recovery() AS in_recovery,
       current_setting('server_version') AS server_version,
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0.0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS lag,
       (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS wal_receiver_status,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       coalesce(current_setting('reserved_connections', true), '0')::int AS reserved,
       pg_has_role('pg_read_all_stats', 'USAGE') AS sees_all,
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' OR (backend_type IS NULL AND datid IS NOT NULL)) AS in_use,
       (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls
"""


def _check_dsn(dsn: str) -> str:
    """A single-server postgresql:// URL whose parameters the probe can honour. Messages never echo
    the DSN (it may hold a password)."""
    try:
        parts = urlsplit(dsn)
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("the DSN is not a valid URL") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("expected a postgresql:// or postgres:// URL")
    params = dict(query)
    hostspec = parts.netloc.rpartition("@")[2]
    if "," in hostspec or "," in params.get("host", "") or "," in params.get("port", ""):
        raise ValueError("a DSN with several hosts is not supported: one target per server")
    try:
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError("the DSN is not a valid URL: bad port") from None
    if not parts.hostname and not params.get("host"):
        raise ValueError("the DSN names no host")
    sslmode = params.get("sslmode", DEFAULT_SSLMODE)
    if sslmode not in SSLMODES:
        raise ValueError(f"sslmode must be one of {', '.join(SSLMODES)}, got {sslmode!r}")
    for key, why in _UNSUPPORTED.items():
        if key in params:
            raise ValueError(why)
    return dsn


class PostgresTarget(TargetBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)

    kind: Literal["postgres"]
    dsn: Annotated[str, AfterValidator(_check_dsn)]
    password: SecretStr | None = None  # overrides the DSN's password
    role: Literal["primary", "replica", "any"] = "any"
    max_replication_lag: Duration = 30.0
    max_connection_usage: Annotated[float, Field(gt=0, le=1)] = 0.9
    ca_file: ReadableFile | None = None
    query: Annotated[str, Field(min_length=1, max_length=_query.MAX_QUERY)] | None = None  # read-only, first row

    def secrets(self) -> list[str]:
        """Also a ``password=`` given in the DSN's query string."""
        found = super().secrets()
        found.extend(value for key, value in parse_qsl(urlsplit(self.dsn).query) if key == "password" and value)
        return found

    @property
    def sslmode(self) -> str:
        return dict(parse_qsl(urlsplit(self.dsn).query)).get("sslmode", DEFAULT_SSLMODE)

    def where(self) -> str:
        return self.dsn


MODEL = PostgresTarget


def _driver_dsn(dsn: str) -> str:
    """The DSN without the libpq client options asyncpg would pass on to the server as settings."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _LIBPQ_CLIENT_ONLY]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _tls_for(target: PostgresTarget, ctx: ProbeContext) -> ssl.SSLContext | Literal["allow", "prefer", False]:
    """What asyncpg's ``ssl=`` gets for the DSN's sslmode (libpq semantics).

    disable: plaintext. allow/prefer: asyncpg's own unverified TLS with its plaintext fallback.
    require: TLS, unverified unless ``ca_file`` is set (then like verify-ca, as libpq does with a
    root certificate). verify-ca: chain checked against ``ca_file`` (else the system store).
    verify-full: chain and host name checked.
    """
    mode = target.sslmode
    if mode == "disable":
        return False
    if mode == "allow":
        return "allow"
    if mode == "prefer":
        return "prefer"
    if mode == "verify-full":
        return ctx.ssl_context(target.ca_file, verify=True)
    if mode == "verify-ca" or target.ca_file is not None:
        context = ssl.create_default_context(cafile=target.ca_file)
        context.check_hostname = False
        return context
    return ctx.ssl_context(verify=False)


def _server_text(exc: BaseException) -> str:
    """The server's own message of a PostgreSQL error (without DETAIL/HINT), else a description."""
    import asyncpg

    if isinstance(exc, asyncpg.PostgresError) and exc.args and isinstance(exc.args[0], str):
        return describe(Exception(exc.args[0]))
    return describe(exc)


# asyncpg raises a bare ConnectionError for three answers to its SSLRequest; only the words differ.
WORDS: tuple[Words, ...] = (
    Words(
        "ssl_rejected",
        re.compile(r"rejected SSL upgrade"),
        "asyncpg 0.32.0",
        'PostgreSQL server at "127.0.0.1:5432" rejected SSL upgrade',
    ),
    Words(
        "hung_up",
        re.compile(r"unexpected connection_lost\(\) call"),
        "asyncpg 0.32.0",
        "unexpected connection_lost() call",
    ),
    Words(
        "ssl_error",
        re.compile(r"error response during SSL exchange"),
        "asyncpg 0.32.0",
        'PostgreSQL server at "127.0.0.1:5432": server sent an error response during SSL exchange; check the '
        "server logs for details",
    ),
)


def classify(exc: BaseException, *, tls_required: bool = False) -> ProbeFailure | None:
    """asyncpg's exceptions -> the fixed reasons. Socket, TLS and timeout errors are left to the
    shared mapping; anything unknown the driver raises becomes ``protocol``."""
    import asyncpg

    if isinstance(exc, asyncpg.PostgresError):
        text = _server_text(exc)
        details = {"sqlstate": exc.sqlstate}
        if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):  # 28000, 28P01 wrong password
            return ProbeFailure(Reason.AUTH, f"authentication failed: {text}", details)
        if isinstance(exc, asyncpg.TooManyConnectionsError):  # 53300
            # The server is up and answered, but will not take one more client: to an application this
            # is a refused connection, the failure its pool would see.
            return ProbeFailure(Reason.REFUSED, f"server refused the connection, no free slot: {text}", details)
        if isinstance(exc, asyncpg.QueryCanceledError):  # 57014, e.g. statement_timeout
            return ProbeFailure(Reason.TIMEOUT, f"query canceled by the server: {text}", details)
        if isinstance(exc, asyncpg.OperatorInterventionError):  # 57P01-57P04: shutting down, starting up
            return ProbeFailure(Reason.REFUSED, f"server does not accept connections now: {text}", details)
        if isinstance(exc, asyncpg.ConnectionDoesNotExistError):  # 08003: asyncpg saw the connection end
            return ProbeFailure(Reason.PROTOCOL, "the server closed the connection in the middle of the exchange")
        if isinstance(exc, asyncpg.PostgresConnectionError):  # other 08xxx
            return ProbeFailure(Reason.PROTOCOL, f"connection failed: {text}", details)
        if isinstance(exc, asyncpg.InvalidCatalogNameError):  # 3D000
            return ProbeFailure(Reason.ASSERTION, text, details)
        # The server answered with an error (disk full, out of memory, read-only, ...).
        return ProbeFailure(Reason.ASSERTION, f"server error {exc.sqlstate}: {text}", details)
    if type(exc) is ConnectionError:  # asyncpg's own: the answer to its SSLRequest, or a lost connection
        case = said(WORDS, str(exc))
        if case == "ssl_rejected":
            if tls_required:
                return ProbeFailure(Reason.TLS, "server did not accept TLS (not enabled there, or not PostgreSQL)")
            return ProbeFailure(Reason.PROTOCOL, "unexpected answer to the SSL request: not a PostgreSQL server?")
        if case == "hung_up":
            return ProbeFailure(Reason.PROTOCOL, "the server hung up instead of answering the SSL request")
        if case == "ssl_error":
            return ProbeFailure(Reason.PROTOCOL, "server answered the SSL request with an error")
        return ProbeFailure(Reason.PROTOCOL, f"connection lost: {describe(exc)}")
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return ProbeFailure(Reason.PROTOCOL, f"unexpected answer: {describe(exc)}")
    return None


def _short_version(full: str) -> str:
    """``15.18 (Debian 15.18-0+deb12u1)`` -> ``15.18`` (a bounded label value)."""
    return full.split()[0] if full.split() else full


OBSERVES: dict[str, Observable] = {
    "role": Observable("string", "primary, or replica (pg_is_in_recovery())"),
    "server_version": Observable("string", "the server_version setting"),
    "tls": Observable("bool", "whether this run's session is encrypted"),
    "replication_lag_seconds": Observable("double", "replicas: replay lag (0 when everything received is replayed)"),
    "wal_receiver_status": Observable("string", "replicas: the WAL receiver's status (streaming, ...)"),
    "max_connections": Observable("int", "the max_connections setting"),
    "reserved_connections": Observable("int", "superuser_reserved_connections plus reserved_connections"),
    "connections_in_use": Observable("int", "client backends (an estimate without pg_read_all_stats)"),
    "connections_exact": Observable("bool", "whether the role sees every backend (pg_read_all_stats)"),
    "connection_usage_ratio": Observable("double", "connections in use / (max_connections - reserved)"),
    **_query.OBSERVES,
}


def _wrong_role(target: PostgresTarget, values: Mapping[str, Any]) -> str | None:
    if target.role in ("any", values["role"]):
        return None
    return f"expected a {target.role}, found a {values['role']}"


def _lag(target: PostgresTarget, lag: float, _values: Mapping[str, Any]) -> str:
    return f"replay lag {lag:.2f}s > {format_duration(target.max_replication_lag)}"


def _crowded(target: PostgresTarget, ratio: float, values: Mapping[str, Any]) -> str:
    available = values["max_connections"] - values["reserved_connections"]
    in_use = values["connections_in_use"]
    return f"connections {in_use}/{available} in use ({ratio:.0%} > {target.max_connection_usage:.0%})"


RULES: tuple[Rule, ...] = (
    unhealthy_if(_wrong_role),
    degraded_if(above("replication_lag_seconds", "max_replication_lag", _lag)),
    degraded_if(above("connection_usage_ratio", "max_connection_usage", _crowded)),
)


def _observe(facts: dict[str, Any]) -> Observation:
    role = "replica" if facts["in_recovery"] else "primary"
    version = str(facts["server_version"])
    values: dict[str, Any] = {"server_version": version, "role": role, "tls": bool(facts["tls"])}
    gauges: dict[str, float] = {}
    lag: float | None = facts["lag"]
    if role == "replica":
        values["replication_lag_seconds"] = lag
        if facts["wal_receiver_status"] is not None or facts["sees_all"]:
            # null for a role that sees everything: no WAL receiver runs (primary lost, or archive recovery)
            values["wal_receiver_status"] = facts["wal_receiver_status"]
        if lag is not None:
            lag = max(0.0, float(lag))
            values["replication_lag_seconds"] = round(lag, 3)
            gauges["replication_lag_seconds"] = lag
    reserved = int(facts["superuser_reserved"]) + int(facts["reserved"])
    available = int(facts["max_connections"]) - reserved
    in_use = int(facts["in_use"])
    values.update(
        max_connections=int(facts["max_connections"]),
        reserved_connections=reserved,
        connections_in_use=in_use,
        connections_exact=bool(facts["sees_all"]),
    )
    if available > 0:
        values["connection_usage_ratio"] = round(in_use / available, 4)
        gauges["connection_usage_ratio"] = in_use / available
    said = f"{role}, PostgreSQL {_short_version(version)}"
    summary = f"{said}, replay lag {lag:.2f}s" if lag is not None else said
    info = {"version": _short_version(version), "role": role}
    return Observation(values, summary, context=said, gauges=gauges, info=info)


async def _close(conn: asyncpg.Connection, failed: bool, within: float) -> None:
    """Close gracefully after a good run (waiting at most ``within`` seconds for the goodbye); drop the
    connection at once after a failure or cancellation (a frozen server would not answer)."""
    if failed or within <= 0:
        conn.terminate()
        return
    try:
        await conn.close(timeout=within)
    except Exception:  # the run's verdict stands: a failed goodbye says nothing more
        conn.terminate()


async def _data_query(conn: asyncpg.Connection, query: str, run: Run) -> dict[str, Any] | None:
    """The target's own query, in a READ ONLY transaction with ``statement_timeout`` set to what is left of
    the run (less a fifth, at most 0.2 s), always rolled back: its first row, or None."""
    import asyncpg

    transaction = conn.transaction(readonly=True)
    await transaction.start()
    try:
        left = run.left()  # the server gives up a little before the run does, so its own words are heard
        await conn.execute(f"SET LOCAL statement_timeout = {max(1, int((left - min(0.2, left / 5)) * 1000))}")
        row = await conn.fetchrow(query)
    except asyncpg.ReadOnlySQLTransactionError as exc:  # 25006: the query (or a function it calls) writes
        raise _query.wrote(_server_text(exc)) from exc
    if not conn.is_in_transaction():
        raise ProbeFailure(Reason.ASSERTION, "the query ended the read-only transaction: give one query, no COMMIT")
    await transaction.rollback()
    return dict(row.items()) if row is not None else None


async def probe(target: PostgresTarget, ctx: ProbeContext) -> Observation:
    import asyncpg

    run = ctx.begin(target)
    tls = _tls_for(target, ctx)
    classify_run = partial(classify, tls_required=target.sslmode in ("require", "verify-ca", "verify-full"))
    password = target.password.get_secret_value() if target.password is not None else None
    within = format_duration(target.timeout)

    with run.phase("connect"):
        async with run.bounded(f"no answer while connecting within {within}"):
            with driver_errors(classify_run):
                conn = await asyncpg.connect(
                    _driver_dsn(target.dsn),
                    password=password,
                    ssl=tls,
                    timeout=target.timeout,  # never reached: the run's deadline comes first
                    statement_cache_size=0,  # no named prepared statements (works through pgbouncer)
                    server_settings={"application_name": "prober"},
                )
    failed = True
    try:
        with run.phase("query"):
            async with run.bounded(f"connected, but no answer to the query within {within}"):
                with driver_errors(classify_run):
                    one = await conn.fetchval("SELECT 1")
                    row = await conn.fetchrow(FACTS_QUERY)
        if one != 1 or row is None:
            raise ProbeFailure(Reason.PROTOCOL, f"unexpected answer to SELECT 1: {one!r}")
        if target.query is not None:
            with run.phase("data_query"):
                async with run.bounded(f"data_query: no answer within {within}"):
                    try:
                        with driver_errors(classify_run):
                            first = await _data_query(conn, target.query, run)
                    except ProbeFailure as failure:
                        failure.message = f"data_query: {failure.message}"
                        raise
        failed = False
    finally:
        await _close(conn, failed, within=min(1.0, target.timeout - run.elapsed() - 0.05))
    observed = _observe(dict(row))
    if target.query is not None:
        values, samples = _query.observe(None if first is None else first.items())
        observed.values.update(values)
        observed.series["query_value"] = samples
        observed.summary += f"; {_query.summary(values)}"
    observed.phases = run.phases
    observed.latency = sum(run.phases.values())
    return observed
