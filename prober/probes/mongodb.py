"""``mongodb``: an authenticated client gets ``ping`` and ``hello``, and the replica set is not quietly failing.

One fresh ``AsyncMongoClient`` per run, closed in ``finally``. pymongo's defaults would wait 30 s for
server selection and 20 s to connect, and retry reads and writes once; here every operation of the run
shares one deadline (``pymongo.timeout``) inside the target's timeout, the client's own timeouts are that
deadline too, and ``retryReads``/``retryWrites`` are off.

pymongo keeps retrying an unreachable server until server selection gives up, so a stopped server would
only be reported when the whole budget is spent. The run stops waiting as soon as every known server
has failed its check (seen in the client's topology description), and the reason is read from that
check's error. pymongo's monitor
strips those errors of their cause (``monitor._sanitize``), so the refused/dns/tls/timeout decision
is made from the exception type and its message.

Phases: ``connect`` (server selection, TCP/TLS, handshake and authentication of the first connection,
up to pymongo's CMAP ``connection_ready`` event) and ``query`` (``ping``, ``hello``, ``buildInfo`` and,
on a replica set member, ``replSetGetStatus``).

A single-host ``mongodb://`` URI without ``replicaSet``/``directConnection``/``loadBalanced`` is probed
with ``directConnection=true``: the member named is the member judged (role, state), not whichever member
pymongo would discover. Commands go with read preference ``primaryPreferred`` (``secondaryPreferred``
for ``role: secondary``), so that a set without a primary is reported as such rather than as a timeout.

pymongo is imported on first use, so a config without mongodb targets does not load it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import AfterValidator, Field, SecretStr, model_validator

from prober.errors import ProbeFailure, Words, describe, driver_errors
from prober.errors import said as said_case
from prober.judge import Observable, Observation, Rule, degraded_if, unhealthy_if
from prober.models import Duration, ReadableFile, Strict, TargetBase, format_duration
from prober.probes import _query
from prober.probes._context import ProbeContext
from prober.probes._params import Param, check_names, honoured, ignored, rejected, truthy
from prober.status import Reason

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient
    from pymongo.errors import OperationFailure
    from pymongo.monitoring import (
        ConnectionCheckedInEvent,
        ConnectionCheckedOutEvent,
        ConnectionCheckOutFailedEvent,
        ConnectionCheckOutStartedEvent,
        ConnectionClosedEvent,
        ConnectionCreatedEvent,
        ConnectionReadyEvent,
        PoolClearedEvent,
        PoolClosedEvent,
        PoolCreatedEvent,
        PoolReadyEvent,
    )
    from pymongo.read_preferences import _ServerMode
    from pymongo.topology_description import TopologyDescription

# bytes one run may receive from its peers (_budget.py): hello and replSetGetStatus of a large replica set
BYTE_BUDGET = 8 * 2**20

POLL_INTERVAL = 0.025  # seconds between looks at the topology while the first command waits
CLOSE_BUDGET = 0.5  # seconds for endSessions on close(); errors there are ignored by pymongo
BAD_MEMBER_STATES = frozenset({"RECOVERING", "DOWN", "ROLLBACK", "UNKNOWN"})
AUTH_CODES = frozenset({11, 13, 18, 334})  # UserNotFound, Unauthorized, AuthenticationFailed, MechanismUnavailable
UNAUTHORIZED = 13
SRV_ONLY = frozenset({"srvservicename", "srvmaxhosts"})
NOT_PERMITTED = "replSetGetStatus not permitted for this user (needs clusterMonitor): member states and lag unknown"


_TIMEOUT = "the probe's own timeout applies (every operation of a run shares one deadline)"
_POOL = "client-side pool tuning: the probe opens one client per run"
_WRITES = "write and read concerns: the probe only runs ping, hello, buildInfo and replSetGetStatus"
_NODE = "a Node.js driver or Mongoose client option with no effect on what the probe sees"

# The connection-string options of the MongoDB Node.js driver (and Mongoose, which hands its URI to it) and
# of pymongo, matched case-insensitively as both drivers do. "pymongo" marks the options passed on to
# pymongo, which applies them; every other one is taken out of the URI before pymongo sees it.
OPTIONS: dict[str, Param] = {
    "authSource": honoured("pymongo: the database the user is defined in"),
    "authMechanism": honoured("pymongo"),
    "authMechanismProperties": honoured("pymongo"),
    "replicaSet": honoured("pymongo: the set is discovered and judged as a whole"),
    "directConnection": honoured("pymongo: true probes the one member named"),
    "loadBalanced": honoured("pymongo"),
    "tls": honoured("pymongo"),
    "ssl": honoured("pymongo: the same as tls"),
    "tlsCAFile": honoured("pymongo: the CA bundle (like ca_file)"),
    "tlsCertificateKeyFile": honoured("pymongo: a client certificate and key in one PEM file"),
    "tlsCertificateKeyFilePassword": honoured("pymongo; a secret"),
    "tlsAllowInvalidCertificates": honoured("pymongo"),
    "tlsAllowInvalidHostnames": honoured("pymongo"),
    "tlsInsecure": honoured("pymongo"),
    "tlsCRLFile": honoured("pymongo"),
    "tlsDisableOCSPEndpointCheck": honoured("pymongo"),
    "srvServiceName": honoured("pymongo"),
    "srvMaxHosts": honoured("pymongo"),
    "compressors": honoured("pymongo"),
    "zlibCompressionLevel": honoured("pymongo"),
    "sslCA": honoured("the Node driver's old name of tlsCAFile, passed to pymongo as tlsCAFile"),
    "sslValidate": honoured("the Node driver's old option: false is tlsAllowInvalidCertificates=true"),
    "sslCRL": honoured("the Node driver's old name of tlsCRLFile, passed to pymongo as tlsCRLFile"),
    "appName": ignored("the probe names itself prober"),
    "connectTimeoutMS": ignored(_TIMEOUT),
    "socketTimeoutMS": ignored(_TIMEOUT),
    "serverSelectionTimeoutMS": ignored(_TIMEOUT),
    "timeoutMS": ignored(_TIMEOUT),
    "waitQueueTimeoutMS": ignored(_TIMEOUT),
    "heartbeatFrequencyMS": ignored(_POOL),
    "minHeartbeatFrequencyMS": ignored(_NODE),
    "maxPoolSize": ignored(_POOL),
    "minPoolSize": ignored(_POOL),
    "maxIdleTimeMS": ignored(_POOL),
    "maxConnecting": ignored(_POOL),
    "waitQueueMultiple": ignored(_POOL),
    "localThresholdMS": ignored(_POOL),
    "serverMonitoringMode": ignored(_POOL),
    "retryWrites": ignored("the probe never retries (retryReads and retryWrites are off)"),
    "retryReads": ignored("the probe never retries (retryReads and retryWrites are off)"),
    "w": ignored(_WRITES),
    "journal": ignored(_WRITES),
    "j": ignored(_WRITES),
    "fsync": ignored(_WRITES),
    "wtimeoutMS": ignored(_WRITES),
    "wtimeout": ignored(_WRITES),
    "readConcernLevel": ignored(_WRITES),
    "readPreference": ignored("the probe reads from the primary, else a secondary (role: secondary: the reverse)"),
    "readPreferenceTags": ignored("the probe's own read preference applies"),
    "maxStalenessSeconds": ignored("the probe's own read preference applies; lag is judged by max_replication_lag"),
    "uuidRepresentation": ignored("the probe reads no documents"),
    "keepAlive": ignored(_NODE),
    "keepAliveInitialDelay": ignored(_NODE),
    "noDelay": ignored(_NODE),
    "family": ignored(_NODE),
    "autoSelectFamily": ignored(_NODE),
    "autoSelectFamilyAttemptTimeout": ignored(_NODE),
    "monitorCommands": ignored(_NODE),
    "raw": ignored(_NODE),
    "promoteLongs": ignored(_NODE),
    "promoteValues": ignored(_NODE),
    "promoteBuffers": ignored(_NODE),
    "bsonRegExp": ignored(_NODE),
    "ignoreUndefined": ignored(_NODE),
    "serializeFunctions": ignored(_NODE),
    "forceServerObjectId": ignored(_NODE),
    "checkKeys": ignored(_NODE),
    "enableUtf8Validation": ignored(_NODE),
    "useBigInt64": ignored(_NODE),
    "minInternalBufferSize": ignored(_NODE),
    "useNewUrlParser": ignored(_NODE + " (removed in driver 4; Mongoose apps still write it)"),
    "useUnifiedTopology": ignored(_NODE + " (removed in driver 4; Mongoose apps still write it)"),
    "loggerLevel": ignored(_NODE),
    "mongodbLogPath": ignored(_NODE),
    "mongodbLogComponentSeverities": ignored(_NODE),
    "mongodbLogMaxDocumentLength": ignored(_NODE),
    "dbName": ignored("the probe's commands go to the admin database"),
    "tz_aware": ignored("a pymongo client option with no effect on what the probe sees"),
    "datetime_conversion": ignored("a pymongo client option with no effect on what the probe sees"),
    "unicode_decode_error_handler": ignored("a pymongo client option with no effect on what the probe sees"),
    "connect": ignored("a pymongo client option: the probe connects on its first command"),
    "sslCert": rejected("separate certificate and key files are not supported: use tlsCertificateKeyFile"),
    "sslKey": rejected("separate certificate and key files are not supported: use tlsCertificateKeyFile"),
    "sslPass": rejected("separate certificate and key files are not supported: use tlsCertificateKeyFile"),
    "tlsCertificateFile": rejected("separate certificate and key files are not supported: use tlsCertificateKeyFile"),
    "servername": rejected("the TLS server name is the host's"),
    "proxyHost": rejected("the probe connects directly: a SOCKS5 proxy is not supported"),
    "proxyPort": rejected("the probe connects directly: a SOCKS5 proxy is not supported"),
    "proxyUsername": rejected("the probe connects directly: a SOCKS5 proxy is not supported"),
    "proxyPassword": rejected("the probe connects directly: a SOCKS5 proxy is not supported"),
}
_BY_LOWER = {name.lower(): name for name in OPTIONS}
_PASSED = frozenset(name.lower() for name, param in OPTIONS.items() if param.why.startswith("pymongo"))
_RENAMED = {"sslca": "tlsCAFile", "sslcrl": "tlsCRLFile"}


def _split_uri(uri: str) -> tuple[str, list[str], dict[str, str]]:
    """``mongodb[+srv]://[user[:password]@]host[:port][,host...]/[db][?options]`` -> scheme, hosts, options
    (option names lower-cased). Only what the probe needs; pymongo parses the URI for real."""
    parts = urlsplit(uri)
    hosts = parts.netloc.rpartition("@")[2]
    options = {key.lower(): value for key, value in parse_qsl(parts.query, keep_blank_values=True)}
    return parts.scheme, [h for h in hosts.split(",") if h], options


def driver_uri(uri: str) -> str:
    """The URI pymongo gets: the options it applies (the Node driver's old names translated), nothing else."""
    parts = urlsplit(uri)
    kept: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        lower = key.lower()
        if lower in _RENAMED:
            kept.append((_RENAMED[lower], value))
        elif lower == "sslvalidate":
            kept.append(("tlsAllowInvalidCertificates", "false" if truthy(value) is not False else "true"))
        elif lower in _PASSED:
            kept.append((key, value))
    return parts._replace(query=urlencode(kept)).geturl()


def _uri_database(uri: str) -> str | None:
    """The database named in the URI's path (``mongodb://host/app`` -> ``app``), if any."""
    from urllib.parse import unquote

    return unquote(urlsplit(uri).path.lstrip("/")) or None


def _check_uri(uri: str) -> str:
    from pymongo.errors import PyMongoError
    from pymongo.uri_parser import parse_uri

    try:
        scheme, hosts, _ = _split_uri(uri)
        written = [key for key, _ in parse_qsl(urlsplit(uri).query, keep_blank_values=True)]
    except ValueError:
        raise ValueError("invalid MongoDB URI") from None
    if scheme not in ("mongodb", "mongodb+srv") or not hosts:
        raise ValueError("expected a mongodb:// or mongodb+srv:// URI with a host")
    if scheme == "mongodb+srv" and (len(hosts) != 1 or ":" in hosts[0]):
        raise ValueError("a mongodb+srv:// URI names exactly one host, without a port")
    check_names(written, OPTIONS, what="option", case_insensitive=True)
    if "sslvalidate" in {k.lower() for k in written}:
        value = dict((k.lower(), v) for k, v in parse_qsl(urlsplit(uri).query))["sslvalidate"]
        if truthy(value) is None:
            raise ValueError("sslValidate must be true or false")
    # pymongo checks hosts and options without I/O on a mongodb:// URI (an SRV URI would be resolved):
    # check an SRV URI's other options the same way.
    plain = driver_uri(uri)
    if scheme == "mongodb+srv":
        parts = urlsplit(plain)
        kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SRV_ONLY]
        plain = parts._replace(scheme="mongodb", query=urlencode(kept)).geturl()
    try:
        parse_uri(plain)
    except (PyMongoError, ValueError) as exc:
        raise ValueError(f"invalid MongoDB URI: {describe(exc)}") from None
    return uri


Name = Annotated[str, Field(min_length=1, max_length=255)]


class Count(Strict):
    """``count: {collection, filter}``: how many documents match (``countDocuments``)."""

    collection: Name
    filter: dict[str, Any] = Field(default_factory=dict)


class FindOne(Strict):
    """``find_one: {collection, filter, projection, sort}``: the first matching document's fields."""

    collection: Name
    filter: dict[str, Any] = Field(default_factory=dict)
    projection: dict[str, Any] | None = None
    sort: dict[str, Literal[1, -1]] | None = None


class MongoQuery(Strict):
    """``query:``: one read, ``count`` or ``find_one``, in ``database`` (default: the URI's)."""

    database: Name | None = None
    count: Count | None = None
    find_one: FindOne | None = None

    @model_validator(mode="after")
    def _one_read(self) -> MongoQuery:
        if (self.count is None) == (self.find_one is None):
            raise ValueError("set exactly one of count and find_one")
        return self


class MongodbTarget(TargetBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("password",)

    kind: Literal["mongodb"]
    uri: Annotated[str, AfterValidator(_check_uri)]
    password: SecretStr | None = None  # overrides the URI's password
    role: Literal["primary", "secondary", "any"] = "any"
    max_replication_lag: Duration = 30.0
    ca_file: ReadableFile | None = None  # like tlsCAFile: setting it turns TLS on
    query: MongoQuery | None = None

    @model_validator(mode="after")
    def _password_needs_user(self) -> MongodbTarget:
        if self.password is not None and not urlsplit(self.uri).username:
            raise ValueError("password is set but the URI names no user (mongodb://USER@host/...)")
        return self

    def secrets(self) -> list[str]:
        """Also the password of a client certificate's key, given in the URI."""
        found = super().secrets()
        query = parse_qsl(urlsplit(self.uri).query)
        found.extend(value for key, value in query if key.lower() == "tlscertificatekeyfilepassword" and value)
        return found

    @model_validator(mode="after")
    def _query_has_a_database(self) -> MongodbTarget:
        if self.query is not None and self.query.database is None and not _uri_database(self.uri):
            raise ValueError("query needs a database: set query.database or name one in the URI (mongodb://host/app)")
        return self

    def where(self) -> str:
        return self.uri


MODEL = MongodbTarget


# --- pymongo's exceptions -> the fixed reasons ------------------------------------------------

# pymongo's monitor strips its errors of their cause (monitor._sanitize): "host:port: <socket error>
# (configured timeouts: ...)". Only the words tell refused, dns, timeout, tls and closed apart.
_SEEN = "pymongo 4.20.1"
WORDS: tuple[Words, ...] = (
    Words("refused", re.compile(r"Connection refused|\[Errno 111\]"), _SEEN, "[Errno 111] Connection refused"),
    Words(
        "dns",
        re.compile(
            r"Name or service not known|nodename nor servname|Temporary failure in name resolution|"
            r"No address associated with hostname|getaddrinfo failed|\[Errno -[235]\]"
        ),
        _SEEN,
        "[Errno -2] Name or service not known",
    ),
    Words("timeout", re.compile(r"timed out"), _SEEN, "timed out"),
    Words(
        "tls",
        re.compile(r"CERTIFICATE_VERIFY_FAILED|\bSSL\b|\bTLS\b|certificate", re.IGNORECASE),
        _SEEN,
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate "
        "(_ssl.c:1006)",
    ),
    Words(
        "closed",
        re.compile(r"connection (is )?(already )?closed|Connection reset|Broken pipe|EOF occurred", re.IGNORECASE),
        _SEEN,
        "connection closed",
    ),
    Words(
        "unreachable",
        re.compile(r"No route to host|Network is unreachable|\[Errno 11[03]\]"),
        _SEEN,
        "[Errno 113] No route to host",
    ),
    Words(
        "srv_dns",
        re.compile(r"DNS|nameserver|resolution lifetime|SRV|TXT record"),
        _SEEN,
        "The DNS query name does not exist: _mongodb._tcp.cluster0.example.net.",
    ),
)
# case -> (reason, summary, whether the driver's words follow the summary)
_SOCKET_CASES: dict[str, tuple[Reason, str, bool]] = {
    "refused": (Reason.REFUSED, "connection refused", False),
    "dns": (Reason.DNS, "name resolution failed", True),
    "timeout": (Reason.TIMEOUT, "timed out", False),
    "tls": (Reason.TLS, "TLS error", True),
    "closed": (Reason.PROTOCOL, "connection closed by the server", False),
    "unreachable": (Reason.REFUSED, "host unreachable", False),
}
_TIMEOUT_DETAILS = re.compile(r"\s*\(configured timeouts:[^)]*\)")
_ADDRESS = re.compile(r"^(?P<address>\[?[\w.:%-]+\]?:\d+): (?P<said>.*)$")


def _server_error(exc: BaseException) -> ProbeFailure:
    """One server's connection error (from the monitor or from a pool connection): "host:port: what happened"."""
    from pymongo.errors import ProtocolError

    text = _TIMEOUT_DETAILS.sub("", describe(exc))
    match = _ADDRESS.match(text)
    where, text_said = (f"{match['address']}: ", match["said"]) if match else ("", text)
    if isinstance(exc, ProtocolError):
        return ProbeFailure(Reason.PROTOCOL, f"{where}not a MongoDB answer ({text_said})")
    if getattr(exc, "timeout", False):
        return ProbeFailure(Reason.TIMEOUT, f"{where}timed out")
    case = said_case(WORDS, text_said, _SOCKET_CASES)
    if case is not None:
        reason, summary, with_detail = _SOCKET_CASES[case]
        return ProbeFailure(reason, f"{where}{summary} ({text_said})" if with_detail else f"{where}{summary}")
    return ProbeFailure(Reason.PROTOCOL, f"{where}{text_said}")


class _Unreachable(Exception):
    """Every server pymongo knows of failed its check (``errors``, never empty): stop waiting for server selection."""

    def __init__(self, errors: list[Exception]) -> None:
        super().__init__("; ".join(describe(e) for e in errors))
        self.errors = errors


def classify(exc: BaseException) -> ProbeFailure | None:
    """pymongo's exceptions -> the fixed reasons."""
    from pymongo.errors import (
        AutoReconnect,
        ConfigurationError,
        ConnectionFailure,
        NotPrimaryError,
        OperationFailure,
        ProtocolError,
        PyMongoError,
        ServerSelectionTimeoutError,
    )

    if isinstance(exc, _Unreachable):
        return _server_error(exc.errors[0])
    if isinstance(exc, ServerSelectionTimeoutError):
        # No check finished in time, or servers answered but none can be selected. The message ends with
        # the topology description, holding each server's last error.
        head, _, rest = str(exc).partition(", Timeout:")
        failure = _server_error(AutoReconnect(rest))
        if failure.reason in (Reason.PROTOCOL, Reason.TIMEOUT):
            return ProbeFailure(
                Reason.TIMEOUT,
                f"no server could be selected in time: {_TIMEOUT_DETAILS.sub('', describe(Exception(head)))}",
            )
        return failure
    if isinstance(exc, OperationFailure):
        name = (exc.details or {}).get("codeName") or f"code {exc.code}"
        said = (exc.details or {}).get("errmsg") or describe(exc)
        if exc.code == UNAUTHORIZED:
            return ProbeFailure(Reason.AUTH, f"not authorized: {said} ({name})")
        if exc.code in AUTH_CODES:
            return ProbeFailure(Reason.AUTH, f"authentication failed: {said} ({name})")
        if exc.timeout:
            return ProbeFailure(Reason.TIMEOUT, f"the server gave up: {said} ({name})")
        return ProbeFailure(Reason.ASSERTION, f"command failed: {said} ({name})")
    if isinstance(exc, NotPrimaryError):
        return ProbeFailure(Reason.ASSERTION, f"the member refuses the command: {describe(exc)}")
    if isinstance(exc, ConnectionFailure | ProtocolError):  # AutoReconnect, NetworkTimeout, WaitQueueTimeoutError
        return _server_error(exc)
    if isinstance(exc, PyMongoError) and exc.timeout:
        return ProbeFailure(Reason.TIMEOUT, f"timed out: {describe(exc)}")
    if isinstance(exc, ConfigurationError):
        text = describe(exc)
        if said_case(WORDS, text, ("srv_dns",)):
            return ProbeFailure(Reason.DNS, f"SRV lookup failed: {text}")
        # e.g. a server whose wire version this pymongo does not speak
        return ProbeFailure(Reason.PROTOCOL, text)
    return None


# --- listening to pymongo: when to stop waiting, when the connection was ready ----------------------


class _Watch:
    """Notes when the first connection is ready (connected, handshaken and authenticated: CMAP's
    ``connection_ready``), which ends the ``connect`` phase. CMAP events are published synchronously.
    pymongo takes only its own listener classes: :func:`_new_watch` mixes this into one."""

    def __init__(self) -> None:
        self.ready_at: float | None = None

    def connection_ready(self, event: ConnectionReadyEvent) -> None:
        if self.ready_at is None:
            self.ready_at = time.perf_counter()

    def pool_created(self, event: PoolCreatedEvent) -> None:
        pass

    def pool_ready(self, event: PoolReadyEvent) -> None:
        pass

    def pool_cleared(self, event: PoolClearedEvent) -> None:
        pass

    def pool_closed(self, event: PoolClosedEvent) -> None:
        pass

    def connection_created(self, event: ConnectionCreatedEvent) -> None:
        pass

    def connection_closed(self, event: ConnectionClosedEvent) -> None:
        pass

    def connection_check_out_started(self, event: ConnectionCheckOutStartedEvent) -> None:
        pass

    def connection_check_out_failed(self, event: ConnectionCheckOutFailedEvent) -> None:
        pass

    def connection_checked_out(self, event: ConnectionCheckedOutEvent) -> None:
        pass

    def connection_checked_in(self, event: ConnectionCheckedInEvent) -> None:
        pass


@cache
def _listener_class() -> type[_Watch]:
    from pymongo.monitoring import ConnectionPoolListener

    class _Listener(_Watch, ConnectionPoolListener):
        pass

    return _Listener


def _new_watch() -> _Watch:
    return _listener_class()()


# --- the run ----------------------------------------------------------------------------------------


def _client(target: MongodbTarget, watch: _Watch, budget: float) -> AsyncMongoClient[dict[str, Any]]:
    from pymongo import AsyncMongoClient

    scheme, hosts, options = _split_uri(target.uri)
    budget_ms = max(1, int(budget * 1000))
    kwargs: dict[str, Any] = {
        "serverSelectionTimeoutMS": budget_ms,
        "connectTimeoutMS": budget_ms,
        "timeoutMS": budget_ms,
        "retryReads": False,
        "retryWrites": False,
        "appname": "prober",
        "event_listeners": [watch],
    }
    single = scheme == "mongodb" and len(hosts) == 1
    if single and not {"replicaset", "directconnection", "loadbalanced"} & options.keys():
        kwargs["directConnection"] = True
    if target.password is not None:
        kwargs["password"] = target.password.get_secret_value()
    if target.ca_file is not None:
        kwargs["tlsCAFile"] = target.ca_file
    return AsyncMongoClient(driver_uri(target.uri), **kwargs)


def _unreachable(described: TopologyDescription) -> list[Exception]:
    """The check errors of every server pymongo knows of, when all of them failed; else nothing."""
    servers = list(described.server_descriptions().values())
    if not servers or described.has_known_servers:
        return []
    errors = [s.error for s in servers if s.error is not None]
    return errors if len(errors) == len(servers) else []


async def _first_command(client: AsyncMongoClient[dict[str, Any]], mode: _ServerMode) -> dict[str, Any]:
    """``ping``, the run's first command (server selection, connection, auth). pymongo would keep retrying
    unreachable servers until server selection times out; stop as soon as every server failed its check.
    The topology description is polled: pymongo publishes topology events from a queue once a second."""
    command = asyncio.ensure_future(client.admin.command("ping", read_preference=mode))
    try:
        while True:
            done, _ = await asyncio.wait({command}, timeout=POLL_INTERVAL)
            if done:
                return command.result()
            errors = _unreachable(client.topology_description)
            if errors:
                raise _Unreachable(errors)
    finally:
        if not command.done():
            command.cancel()
            await asyncio.gather(command, return_exceptions=True)


async def _optional(
    client: AsyncMongoClient[dict[str, Any]], name: str, mode: _ServerMode
) -> tuple[dict[str, Any] | None, OperationFailure | None]:
    """A command the server may refuse (not permitted, not a replica set) without failing the run."""
    from pymongo.errors import OperationFailure

    try:
        return await client.admin.command(name, read_preference=mode), None
    except OperationFailure as exc:
        if exc.code in AUTH_CODES - {UNAUTHORIZED} or exc.timeout:
            raise
        return None, exc


def _role(hello: dict[str, Any]) -> str:
    if hello.get("msg") == "isdbgrid":
        return "mongos"
    if hello.get("setName"):
        if hello.get("isWritablePrimary") or hello.get("ismaster"):
            return "primary"
        if hello.get("secondary"):
            return "secondary"
        return "arbiter" if hello.get("arbiterOnly") else "other"
    if hello.get("isreplicaset"):
        return "other"  # a member whose replica set config is not loaded yet
    return "standalone" if hello.get("isWritablePrimary") or hello.get("ismaster") else "other"


def _optime(member: dict[str, Any]) -> datetime | None:
    found = member.get("optimeDate")
    if not isinstance(found, datetime):
        optime = member.get("optime")
        stamp = optime.get("ts") if isinstance(optime, dict) else None
        found = getattr(stamp, "as_datetime", lambda: None)()
    if isinstance(found, datetime):
        return found if found.tzinfo else found.replace(tzinfo=UTC)
    return None


def _members(status: dict[str, Any]) -> tuple[list[dict[str, Any]], float | None]:
    """replSetGetStatus -> a summary per member, and the largest secondary lag behind the primary."""
    members = [m for m in status.get("members", []) if isinstance(m, dict)]
    primary = next((_optime(m) for m in members if m.get("stateStr") == "PRIMARY"), None)
    summary: list[dict[str, Any]] = []
    worst_lag: float | None = None
    for member in members:
        entry: dict[str, Any] = {"name": str(member.get("name", "?")), "state": str(member.get("stateStr", "?"))}
        if "health" in member:
            entry["health"] = member["health"]
        optime = _optime(member)
        if member.get("stateStr") == "SECONDARY" and primary is not None and optime is not None:
            lag = max(0.0, (primary - optime).total_seconds())
            entry["lag_seconds"] = round(lag, 3)
            worst_lag = lag if worst_lag is None else max(worst_lag, lag)
        summary.append(entry)
    return summary, worst_lag


def _observe(hello: dict[str, Any], status: dict[str, Any] | None, note: str | None) -> Observation:
    role = _role(hello)
    set_name = hello.get("setName")
    values: dict[str, Any] = {"role": role}
    if hello.get("me"):
        values["member"] = str(hello["me"])
    if set_name:
        values["set_name"] = str(set_name)
        if hello.get("primary"):
            values["primary"] = str(hello["primary"])
    gauges: dict[str, float] = {}
    if status is not None:
        members, lag = _members(status)
        values["members"] = members
        if lag is not None:
            values["replication_lag_seconds"] = round(lag, 3)
            gauges["replication_lag_seconds"] = lag
    elif set_name:
        values["members"] = [{"name": str(h)} for h in hello.get("hosts", [])]
    if note:
        values["replication_status"] = note
    where = f"{role} of {set_name}" if set_name else role
    known = values.get("members", []) if status is not None else []
    healthy = f", {len(known)} members healthy" if known else ""
    return Observation(values, f"{where}{healthy}", context=where, gauges=gauges)


def _where(values: Mapping[str, Any]) -> str:
    return f"{values['role']} of {values['set_name']}" if "set_name" in values else values["role"]


def _no_primary(_target: MongodbTarget, values: Mapping[str, Any]) -> str | None:
    if "set_name" not in values or values["role"] == "primary" or "primary" in values:
        return None
    return f"replica set {values['set_name']} has no writable primary"


def _wrong_role(target: MongodbTarget, values: Mapping[str, Any]) -> str | None:
    role = values["role"]
    wanted = {"primary": role in ("primary", "standalone", "mongos"), "secondary": role == "secondary"}
    if wanted.get(target.role, True):
        return None
    return f"expected a {target.role}, the server is {_where(values)}"


def _bad_members(_target: MongodbTarget, values: Mapping[str, Any]) -> str | None:
    problems = [
        f"member {m['name']} is {m['state']}"
        if m["state"] in BAD_MEMBER_STATES
        else f"member {m['name']} is unhealthy ({m['state']}, health {m['health']})"
        for m in values.get("members", [])
        if "state" in m and (m["state"] in BAD_MEMBER_STATES or m.get("health", 1) != 1)
    ]
    return "; ".join(problems) or None


def _lagging(target: MongodbTarget, values: Mapping[str, Any]) -> str | None:
    problems = [
        f"secondary {m['name']} lags {m['lag_seconds']:g}s (limit {format_duration(target.max_replication_lag)})"
        for m in values.get("members", [])
        if m.get("lag_seconds", 0) > target.max_replication_lag
    ]
    return "; ".join(problems) or None


def _in_between(target: MongodbTarget, values: Mapping[str, Any]) -> str | None:
    if values["role"] != "other" or _bad_members(target, values) or _lagging(target, values):
        return None
    return "the member is neither primary nor secondary (starting up or recovering)"


RULES: tuple[Rule, ...] = (
    unhealthy_if(_no_primary),
    unhealthy_if(_wrong_role),
    degraded_if(_bad_members),
    degraded_if(_lagging),
    degraded_if(_in_between),
)

OBSERVES: dict[str, Observable] = {
    "role": Observable("string", "primary, secondary, arbiter, standalone, mongos or other"),
    "member": Observable("string", "the member's own host:port (hello.me)"),
    "set_name": Observable("string", "the replica set's name"),
    "primary": Observable("string", "the primary's host:port, as the member sees it"),
    "members": Observable("list", "per member: name, state, health, lag_seconds (replSetGetStatus)"),
    "replication_lag_seconds": Observable("double", "the largest secondary lag behind the primary"),
    "replication_status": Observable("string", "why member states are unknown (replSetGetStatus refused)"),
    "version": Observable("string", "the server version (buildInfo)"),
    **_query.OBSERVES,
}


async def _data_query(client: AsyncMongoClient[dict[str, Any]], target: MongodbTarget, mode: _ServerMode) -> Any:
    """The target's own read: ``{"count": n}`` for a count, the projected document (or None) for find_one.
    ``$date`` and ``$oid`` in a filter are read as MongoDB Extended JSON. Bounded by the run's timeout."""
    from bson import json_util

    assert target.query is not None
    query = target.query
    database = client.get_database(query.database or _uri_database(target.uri), read_preference=mode)
    if query.count is not None:
        wanted = json_util.loads(json.dumps(query.count.filter, default=str))
        return {"count": await database[query.count.collection].count_documents(wanted)}
    assert query.find_one is not None
    find = query.find_one
    sort = list(find.sort.items()) if find.sort else None
    wanted = json_util.loads(json.dumps(find.filter, default=str))
    return await database[find.collection].find_one(wanted, find.projection, sort=sort)


async def probe(target: MongodbTarget, ctx: ProbeContext) -> Observation:
    import pymongo
    from pymongo import ReadPreference

    run = ctx.begin(target)
    mode = ReadPreference.SECONDARY_PREFERRED if target.role == "secondary" else ReadPreference.PRIMARY_PREFERRED
    watch = _new_watch()
    client: AsyncMongoClient[dict[str, Any]] | None = None
    try:
        with driver_errors(classify), pymongo.timeout(run.budget):
            client = _client(target, watch, run.budget)
            await _first_command(client, mode)
            connected = watch.ready_at or time.perf_counter()
            hello = await client.admin.command("hello", read_preference=mode)
            build, _ = await _optional(client, "buildInfo", mode)
            status: dict[str, Any] | None = None
            note: str | None = None
            if hello.get("setName"):
                status, refused = await _optional(client, "replSetGetStatus", mode)
                if refused is not None and refused.code == UNAUTHORIZED:
                    note = NOT_PERMITTED
                elif refused is not None:
                    note = f"replSetGetStatus failed: {(refused.details or {}).get('codeName') or refused.code}"
            end = time.perf_counter()
            if target.query is not None:
                try:
                    with driver_errors(classify):
                        first = await _data_query(client, target, mode)
                except ProbeFailure as failure:
                    failure.message = f"data_query: {failure.message}"
                    raise
        queried = time.perf_counter()
    finally:
        if client is not None:
            with pymongo.timeout(max(0.01, min(CLOSE_BUDGET, target.timeout - run.elapsed() - 0.05))):
                await client.close()
    observed = _observe(hello, status, note)
    version = str(build.get("version")) if build and build.get("version") else None
    if version:
        observed.values = {"version": version, **observed.values}
        observed.info["version"] = version
    observed.info["role"] = observed.values["role"]
    observed.latency = queried - run.started
    observed.phases = {"connect": connected - run.started, "query": end - connected}
    if target.query is not None:
        observed.phases["data_query"] = queried - end
        values, samples = _query.observe(None if first is None else first.items())
        observed.values.update(values)
        observed.series["query_value"] = samples
        observed.summary += f"; {_query.summary(values)}"
    return observed
