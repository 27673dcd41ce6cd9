"""``postgres``: an authenticated client can run a query, and the server is not quietly failing.

Each run opens a fresh connection with asyncpg (``asyncpg.connect``, closed in ``finally``), so that a
changed password, a full connection table or a lost network is seen. Phases: ``connect`` (TCP, TLS,
startup and authentication) and ``query`` (``SELECT 1``, then one query that reads the server's facts:
version, ``pg_is_in_recovery()``, replay lag, connection usage, whether the session is encrypted).

The DSN is taken as the application's own client writes it: a libpq URI or keyword/value string, a
Prisma URL (``schema``, ``connection_limit``, ``sslaccept``, ...) or a node-postgres URL (``ssl=true``,
``sslmode=no-verify``). Its client is told by the parameters only one of them knows (or the target's
``client`` field), every parameter is checked against that client's table when the config is loaded
(honoured, ignored or rejected: :mod:`._params`), and TLS follows that client's meaning of ``sslmode``.
In libpq's form the default is libpq's, ``prefer``: it silently falls back to plaintext when the server
does not offer TLS, in libpq and in asyncpg alike; ``details.tls`` says what a run really got. The
environment (``PGSSLMODE`` and friends) is not consulted for TLS: the DSN is the whole truth.

A Prisma ``schema`` is checked, not dropped: the facts query looks it up, and a missing schema is
unhealthy (``assertion``), since the application's queries would fail.

asyncpg is imported on first use, so a config without postgres targets does not load it.
"""

from __future__ import annotations

import functools
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from prober.errors import ProbeFailure, Words, describe, driver_errors, said
from prober.judge import Observable, Observation, Rule, above, degraded_if, unhealthy_if
from prober.models import Duration, ReadableFile, TargetBase, format_duration
from prober.probes import _query
from prober.probes._context import ProbeContext
from prober.probes._kit import Run
from prober.probes._params import Param, check_names, honoured, ignored, rejected, truthy
from prober.status import Reason

if TYPE_CHECKING:
    import asyncpg

# bytes one run may receive from its peers (_budget.py): a few rows of facts
BYTE_BUDGET = 1 * 2**20

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_SSLMODE = "prefer"  # libpq's default
Client = Literal["libpq", "prisma", "node-postgres"]

# Everything the verdict needs, in one round trip ($1: the schema to check, or null); valid on PostgreSQL 10 and later.
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
       (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls,
       current_database() AS database,
       EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1::text) AS schema_exists
"""


# --- the parameters each client knows -------------------------------------------------------------

_TIMEOUT = "the probe's own timeout applies"
_POOL = "client-side pool tuning: the probe opens one connection per run"
_ONE_HOST = "one target per server: write one host"

# libpq's connection parameters (PostgreSQL 17), as URI query parameters or keyword/value pairs.
LIBPQ: dict[str, Param] = {
    "host": honoured("a host name, an address, or a Unix-socket directory (/var/run/postgresql)"),
    "port": honoured(),
    "dbname": honoured(),
    "user": honoured(),
    "password": honoured("a secret, redacted everywhere"),
    "passfile": honoured("read by asyncpg like ~/.pgpass"),
    "sslmode": honoured("libpq's meaning (see TLS)"),
    "sslrootcert": honoured("the CA bundle, like ca_file"),
    "sslnegotiation": honoured("direct: TLS from the first byte (PostgreSQL 17), needs sslmode=require or stronger"),
    "application_name": honoured("sent to the server (default: prober)"),
    "options": honoured("sent to the server (-c setting=value ...)"),
    "client_encoding": ignored("asyncpg always speaks UTF-8"),
    "connect_timeout": ignored(_TIMEOUT),
    "keepalives": ignored("one short connection per run"),
    "keepalives_idle": ignored("one short connection per run"),
    "keepalives_interval": ignored("one short connection per run"),
    "keepalives_count": ignored("one short connection per run"),
    "tcp_user_timeout": ignored(_TIMEOUT),
    "fallback_application_name": ignored("application_name, else prober, is sent"),
    "sslcompression": ignored("obsolete: no TLS compression"),
    "sslsni": ignored("the host name is always sent in TLS"),
    "load_balance_hosts": ignored("one host per target"),
    "gssencmode": ignored("GSSAPI encryption is not attempted (disable and prefer behave alike)"),
    "channel_binding": ignored("SCRAM is used as the server asks, without channel binding"),
    "sslcertmode": ignored("no client certificate is sent"),
    "hostaddr": rejected("write the address in host"),
    "sslcert": rejected("client certificates (sslcert/sslkey) are not supported"),
    "sslkey": rejected("client certificates (sslcert/sslkey) are not supported"),
    "sslpassword": rejected("client certificates (sslcert/sslkey) are not supported"),
    "sslcrl": rejected("certificate revocation lists are not checked"),
    "sslcrldir": rejected("certificate revocation lists are not checked"),
    "requiressl": rejected("obsolete: write sslmode=require"),
    "require_auth": rejected("the probe cannot restrict the authentication method the server asks for"),
    "requirepeer": rejected("the peer of a Unix socket is not checked"),
    "krbsrvname": rejected("Kerberos/GSSAPI authentication is not supported"),
    "gsslib": rejected("Kerberos/GSSAPI authentication is not supported"),
    "gssdelegation": rejected("Kerberos/GSSAPI authentication is not supported"),
    "replication": rejected("a replication connection cannot run the probe's queries"),
    "service": rejected("service files are not supported: write the connection in the DSN"),
    "target_session_attrs": rejected("use the target's role field instead of target_session_attrs"),
}

# Prisma's PostgreSQL connection URL (prisma.io, "PostgreSQL connection URL arguments").
PRISMA: dict[str, Param] = {
    "host": honoured("a Unix-socket directory, as Prisma reads it"),
    "schema": honoured("checked: the run verifies that the schema exists (missing: unhealthy)"),
    "sslmode": honoured(
        "Prisma's meaning: disable, prefer, require; the certificate is verified only with sslaccept=strict"
    ),
    "sslcert": honoured("Prisma's meaning: the server's root certificate (a CA bundle, like ca_file)"),
    "sslaccept": honoured(
        "strict: the certificate chain and host name are verified; accept_invalid_certs "
        "(Prisma's default): not verified"
    ),
    "application_name": honoured("sent to the server (default: prober)"),
    "connection_limit": ignored(_POOL),
    "pool_timeout": ignored(_POOL),
    "max_connection_lifetime": ignored(_POOL),
    "max_idle_connection_lifetime": ignored(_POOL),
    "socket_timeout": ignored(_TIMEOUT),
    "connect_timeout": ignored(_TIMEOUT),
    "pgbouncer": ignored("the probe never uses named prepared statements (statement_cache_size=0)"),
    "statement_cache_size": ignored("the probe never uses named prepared statements"),
    "statement_timeout": ignored("Prisma does not send it either (it discards parameters it does not know)"),
    "sslidentity": rejected("client certificates (a PKCS#12 identity) are not supported"),
    "sslpassword": rejected("client certificates (a PKCS#12 identity) are not supported"),
}

# node-postgres (pg-connection-string 2.x), which TypeORM and Sequelize hand their URL to.
NODE_POSTGRES: dict[str, Param] = {
    "host": honoured("a host name, an address, or a Unix-socket directory"),
    "ssl": honoured("true/1: TLS with the certificate verified (Node's default); false/0: no TLS"),
    "sslmode": honoured(
        "node-postgres's meaning: disable; no-verify (TLS, not verified); prefer, require, "
        "verify-ca and verify-full all verify the chain and host name"
    ),
    "uselibpqcompat": honoured("true: sslmode takes libpq's meaning"),
    "sslrootcert": honoured("the CA bundle, like ca_file"),
    "application_name": honoured("sent to the server (default: prober)"),
    "options": honoured("sent to the server"),
    "statement_timeout": honoured("sent to the server as a setting, as node-postgres does"),
    "lock_timeout": honoured("sent to the server as a setting, as node-postgres does"),
    "idle_in_transaction_session_timeout": honoured("sent to the server as a setting, as node-postgres does"),
    "fallback_application_name": ignored("application_name, else prober, is sent"),
    "client_encoding": ignored("asyncpg always speaks UTF-8"),
    "connect_timeout": ignored(_TIMEOUT),
    "query_timeout": ignored(_TIMEOUT),
    "keepalives": ignored("one short connection per run"),
    "keepalives_idle": ignored("one short connection per run"),
    "sslcert": rejected("client certificates (sslcert/sslkey) are not supported"),
    "sslkey": rejected("client certificates (sslcert/sslkey) are not supported"),
    "replication": rejected("a replication connection cannot run the probe's queries"),
}

TABLES: dict[Client, dict[str, Param]] = {"libpq": LIBPQ, "prisma": PRISMA, "node-postgres": NODE_POSTGRES}
# Parameters only one client knows: finding one says whose form the URL is.
_PRISMA_ONLY = frozenset(PRISMA) - frozenset(LIBPQ) - frozenset(NODE_POSTGRES)
_NODE_ONLY = frozenset(NODE_POSTGRES) - frozenset(LIBPQ) - frozenset(PRISMA)
_PRISMA_SSLMODES = ("disable", "prefer", "require")
_NODE_SSLMODES = (*SSLMODES, "no-verify")
# Settings asyncpg sends at startup (only those honoured above reach the server).
_SERVER_SETTINGS = ("options", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")


@dataclass(frozen=True, slots=True)
class PgDsn:
    """A DSN taken apart: the connection, and its parameters (names as written)."""

    client: Client
    host: str | None
    port: int | None
    user: str | None
    password: str | None
    database: str | None
    params: dict[str, str]

    @property
    def schema(self) -> str | None:
        return self.params.get("schema") if self.client == "prisma" else None


_KEYWORD_VALUE = re.compile(r"\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'|(?:[^\s'\\]|\\.)+)")


def _keyword_values(text: str) -> list[tuple[str, str]]:
    """libpq's ``key=value key2='quoted value'`` form. Messages never echo a value."""
    pairs: list[tuple[str, str]] = []
    position = 0
    while text[position:].strip():
        match = _KEYWORD_VALUE.match(text, position)
        if match is None:
            raise ValueError(f"cannot read the keyword/value DSN at character {position + 1} (expected key=value)")
        value = match["value"]
        if value.startswith("'"):
            value = value[1:-1]
        pairs.append((match["key"], re.sub(r"\\(.)", r"\1", value)))
        position = match.end()
    if not pairs:
        raise ValueError("the DSN is empty")
    return pairs


def _whose(params: Mapping[str, str], declared: Client | None) -> Client:
    if declared is not None:
        return declared
    prisma = sorted(_PRISMA_ONLY & params.keys())
    node = sorted(_NODE_ONLY & params.keys()) + (["sslmode=no-verify"] if params.get("sslmode") == "no-verify" else [])
    if prisma and node:
        raise ValueError(
            f"the DSN mixes Prisma's parameters ({', '.join(prisma)}) and node-postgres's ({', '.join(node)}): "
            "set client: to say whose it is"
        )
    return "prisma" if prisma else "node-postgres" if node else "libpq"


def _other_forms(client: Client) -> dict[str, str]:
    """Parameters other clients know, with what to say when they appear in this client's form."""
    knowers: dict[str, list[str]] = {}
    for other, table in TABLES.items():
        for name in table:
            if other != client and name not in TABLES[client]:
                knowers.setdefault(name, []).append(other)
    return {
        name: f"is not a {client} parameter ({' and '.join(others)} know it: set client: to say whose the DSN is)"
        for name, others in knowers.items()
    }


@functools.lru_cache(maxsize=4096)
def parse_dsn(dsn: str, declared: Client | None = None) -> PgDsn:
    """A libpq URI (``postgresql://``/``postgres://``, as libpq, Prisma and node-postgres write it) or a libpq
    keyword/value string, checked against the parameters its client knows. Messages never echo the DSN."""
    if "://" in dsn or "=" not in dsn:
        invalid = "the DSN is not a valid URL (a bad port, or a bad query string)"
        try:
            parts = urlsplit(dsn)
        except ValueError:
            raise ValueError(invalid) from None
        if "," in parts.netloc.rpartition("@")[2]:
            raise ValueError(f"a DSN with several hosts is not supported: {_ONE_HOST}")
        try:
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
            port = parts.port
        except ValueError:
            raise ValueError(invalid) from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("expected a postgresql:// or postgres:// URL, or key=value pairs")
        params = dict(query)
        database = unquote(parts.path.lstrip("/")) or None
        found = PgDsn(
            "libpq",
            unquote(parts.hostname) if parts.hostname else None,
            port,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password is not None else None,
            database,
            params,
        )
    else:
        params = dict(_keyword_values(dsn))
        found = PgDsn("libpq", None, None, None, None, None, params)
    client = _whose(params, declared)
    check_names(params, TABLES[client], elsewhere=_other_forms(client))
    host = params.get("host") or found.host
    if host is not None and "," in host or "," in params.get("port", ""):
        raise ValueError(f"a DSN with several hosts is not supported: {_ONE_HOST}")
    if not host:
        raise ValueError("the DSN names no host")
    port = found.port
    if "port" in params:
        if not params["port"].isdigit() or not 0 < int(params["port"]) < 65536:
            raise ValueError("the port parameter must be a number from 1 to 65535")
        port = int(params["port"])
    _check_tls_params(client, params)
    return PgDsn(
        client,
        host,
        port,
        params.get("user") or found.user,
        params["password"] if "password" in params else found.password,
        params.get("dbname") or found.database,
        params,
    )


def _check_tls_params(client: Client, params: Mapping[str, str]) -> None:
    mode = params.get("sslmode")
    libpq_modes = client == "libpq" or truthy(params.get("uselibpqcompat", "")) is True
    allowed = _PRISMA_SSLMODES if client == "prisma" else SSLMODES if libpq_modes else _NODE_SSLMODES
    if mode is not None and mode not in allowed:
        hint = " (Prisma verifies the certificate with sslaccept=strict)" if client == "prisma" else ""
        raise ValueError(f"sslmode must be one of {', '.join(allowed)}, got {mode!r}{hint}")
    if "sslaccept" in params and params["sslaccept"] not in ("strict", "accept_invalid_certs"):
        raise ValueError(f"sslaccept must be strict or accept_invalid_certs, got {params['sslaccept']!r}")
    if "ssl" in params and truthy(params["ssl"]) is None:
        raise ValueError(f"ssl must be true, false, 1 or 0, got {params['ssl']!r}")
    if "sslnegotiation" in params and params["sslnegotiation"] not in ("postgres", "direct"):
        raise ValueError(f"sslnegotiation must be postgres or direct, got {params['sslnegotiation']!r}")
    if params.get("sslnegotiation") == "direct" and params.get("sslmode") not in (
        "require",
        "verify-ca",
        "verify-full",
    ):
        raise ValueError("sslnegotiation=direct needs sslmode=require, verify-ca or verify-full")
    for name in ("sslrootcert", "sslcert" if client == "prisma" else ""):
        if name and name in params:
            try:
                with open(params[name], "rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"{name}: cannot read {params[name]!r}: {exc.strerror or exc}") from None


@dataclass(frozen=True, slots=True)
class TlsPlan:
    """What a DSN asks of TLS, whichever client's form it is in: ``mode`` as libpq names it (allow and prefer
    fall back to plaintext; require and stronger do not) and what is verified (``none``, ``ca``, ``full``)."""

    mode: Literal["disable", "allow", "prefer", "require"]
    verify: Literal["none", "ca", "full"]
    ca_file: str | None
    direct: bool = False


def tls_plan(dsn: PgDsn, ca_file: str | None) -> TlsPlan:
    params = dsn.params
    direct = params.get("sslnegotiation") == "direct"
    if dsn.client == "prisma":
        ca = ca_file or params.get("sslcert")
        prisma_mode = params.get("sslmode", "prefer")
        if prisma_mode == "disable":
            return TlsPlan("disable", "none", None)
        if params.get("sslaccept") == "strict":  # verified TLS cannot fall back to plaintext with asyncpg
            return TlsPlan("require", "full", ca)
        if prisma_mode == "prefer":
            return TlsPlan("prefer", "none", None)
        return TlsPlan("require", "ca" if ca_file else "none", ca_file)
    ca = ca_file or params.get("sslrootcert")
    given = params.get("sslmode")
    if dsn.client == "node-postgres":
        if given is None:
            verified = truthy(params.get("ssl", "false"))
            return TlsPlan("require", "full", ca) if verified else TlsPlan("disable", "none", None)
        if given == "disable":
            return TlsPlan("disable", "none", None)
        if given == "no-verify":
            return TlsPlan("require", "none", None)
        if truthy(params.get("uselibpqcompat", "")) is not True:
            return TlsPlan("require", "full", ca)  # pg-connection-string 2.x: every other mode verifies fully
    mode = given or DEFAULT_SSLMODE
    if mode in ("disable", "allow", "prefer"):
        return TlsPlan(mode, "none", None)  # type: ignore[arg-type]  # one of the three
    if mode == "verify-full":
        return TlsPlan("require", "full", ca, direct)
    return TlsPlan("require", "ca" if mode == "verify-ca" or ca else "none", ca, direct)


class PostgresTarget(TargetBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)

    kind: Literal["postgres"]
    client: Client | None = None  # whose form the DSN is in; detected from its parameters when not set
    dsn: str
    password: SecretStr | None = None  # overrides the DSN's password
    role: Literal["primary", "replica", "any"] = "any"
    max_replication_lag: Duration = 30.0
    max_connection_usage: Annotated[float, Field(gt=0, le=1)] = 0.9
    ca_file: ReadableFile | None = None
    query: Annotated[str, Field(min_length=1, max_length=_query.MAX_QUERY)] | None = None  # read-only, first row

    @field_validator("dsn")
    @classmethod
    def _check_dsn(cls, dsn: str, info: ValidationInfo) -> str:
        parse_dsn(dsn, info.data.get("client"))
        return dsn

    @property
    def parsed(self) -> PgDsn:
        return parse_dsn(self.dsn, self.client)

    def secrets(self) -> list[str]:
        """Also a password given as a DSN parameter (URI query or keyword/value)."""
        found = super().secrets()
        password = self.parsed.password
        if password:
            found.append(password)
        return found

    @property
    def sslmode(self) -> str:
        return tls_plan(self.parsed, self.ca_file).mode

    def where(self) -> str:
        return self.dsn


MODEL = PostgresTarget


def _tls_for(target: PostgresTarget, ctx: ProbeContext) -> ssl.SSLContext | Literal["allow", "prefer", False]:
    """What asyncpg's ``ssl=`` gets for the DSN's TLS plan (see :func:`tls_plan`, whose client form decides).

    disable: plaintext. allow/prefer: asyncpg's own unverified TLS with its plaintext fallback. require:
    TLS, verified as the plan says (none; the chain against the CA bundle, else the system store; or the
    chain and the host name).
    """
    plan = tls_plan(target.parsed, target.ca_file)
    if plan.mode == "disable":
        return False
    if plan.mode in ("allow", "prefer"):
        return plan.mode
    if plan.verify == "full":
        return ctx.ssl_context(plan.ca_file, verify=True)
    if plan.verify == "ca":
        context = ssl.create_default_context(cafile=plan.ca_file)
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
    "schema": Observable("string", "the schema the DSN names (Prisma's schema=), checked on every run"),
    "schema_exists": Observable("bool", "whether that schema exists in the database"),
    "database": Observable("string", "with a schema: the database it was looked for in"),
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


def _schema_missing(target: PostgresTarget, values: Mapping[str, Any]) -> str | None:
    if values.get("schema_exists") is not False:
        return None
    database = values.get("database") or "the database"
    return f"schema {values['schema']!r} does not exist in {database} (the application's queries would fail)"


RULES: tuple[Rule, ...] = (
    unhealthy_if(_schema_missing),
    unhealthy_if(_wrong_role),
    degraded_if(above("replication_lag_seconds", "max_replication_lag", _lag)),
    degraded_if(above("connection_usage_ratio", "max_connection_usage", _crowded)),
)


def _observe(facts: dict[str, Any], schema: str | None = None) -> Observation:
    role = "replica" if facts["in_recovery"] else "primary"
    version = str(facts["server_version"])
    values: dict[str, Any] = {"server_version": version, "role": role, "tls": bool(facts["tls"])}
    if schema is not None:
        values.update(schema=schema, schema_exists=bool(facts["schema_exists"]), database=facts["database"])
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
    dsn = target.parsed
    tls = _tls_for(target, ctx)
    classify_run = partial(classify, tls_required=target.sslmode == "require")
    password = target.password.get_secret_value() if target.password is not None else dsn.password
    within = format_duration(target.timeout)
    settings = {"application_name": dsn.params.get("application_name") or "prober"}
    settings.update((name, dsn.params[name]) for name in _SERVER_SETTINGS if name in dsn.params)

    with run.phase("connect"):
        async with run.bounded(f"no answer while connecting within {within}"):
            with driver_errors(classify_run):
                conn = await asyncpg.connect(
                    host=dsn.host,
                    port=dsn.port,
                    user=dsn.user,
                    password=password,
                    passfile=dsn.params.get("passfile"),
                    database=dsn.database,
                    ssl=tls,
                    direct_tls=tls_plan(dsn, target.ca_file).direct,
                    timeout=target.timeout,  # never reached: the run's deadline comes first
                    statement_cache_size=0,  # no named prepared statements (works through pgbouncer)
                    server_settings=settings,
                )
    failed = True
    try:
        with run.phase("query"):
            async with run.bounded(f"connected, but no answer to the query within {within}"):
                with driver_errors(classify_run):
                    one = await conn.fetchval("SELECT 1")
                    row = await conn.fetchrow(FACTS_QUERY, dsn.schema)
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
    observed = _observe(dict(row), dsn.schema)
    if target.query is not None:
        values, samples = _query.observe(None if first is None else first.items())
        observed.values.update(values)
        observed.series["query_value"] = samples
        observed.summary += f"; {_query.summary(values)}"
    observed.phases = run.phases
    observed.latency = sum(run.phases.values())
    return observed
