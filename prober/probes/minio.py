"""``minio``: MinIO's cluster health endpoints, and real S3 work through minio-py.

Two independent checks, each optional:

* ``health_endpoints`` (default on): the unauthenticated ``/minio/health/live``, ``/minio/health/cluster``
  and, when the cluster has no write quorum, ``/minio/health/cluster/read``, through the shared aiohttp
  session. Their status codes and ``x-minio-*`` headers (write/read quorum, healing drives, server status)
  decide ok/degraded/unhealthy and are reported in the details.
* S3 with the configured keys (any S3-compatible store; switch the health endpoints off for a store that
  is not MinIO): with a ``bucket``, list at most one key of it (the bucket must exist and the keys must be
  accepted); with ``canary_object``, also write a small object, read it back, compare and delete it. With
  keys but no bucket, ``ListBuckets`` proves that the keys are accepted.

minio-py is synchronous, so the S3 part runs in the context's worker pool (``ctx.run_blocking``) with its
own urllib3 pool per run (a fresh connection, closed afterwards), retries disabled and every request's
connect and read timeouts bounded by what is left of the target's ``timeout``: the worker thread finishes
at about the same time as the run, even when the peer never answers.

minio-py and urllib3 are imported on first use, so a config without minio targets does not load them.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError

from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, model_validator

from prober.errors import ProbeFailure, Words, classify_os_error, describe, driver_errors, said, shorten
from prober.judge import Observable, Observation, Rule, degraded_if, unhealthy_if
from prober.models import ReadableFile, TargetBase
from prober.probes import _aiohttp, _freshness
from prober.probes._context import ProbeContext
from prober.probes._kit import human_duration
from prober.status import Reason

if TYPE_CHECKING:
    from minio import Minio
    from minio.error import S3Error
    from urllib3 import BaseHTTPResponse, PoolManager
    from urllib3.exceptions import HTTPError

# bytes one run may receive from its peers (_budget.py): health endpoints, S3 answers, the canary
BYTE_BUDGET = 4 * 2**20

LIVE = "/minio/health/live"
CLUSTER = "/minio/health/cluster"
CLUSTER_READ = "/minio/health/cluster/read"
CANARY_PREFIX = "prober-canary/"
CANARY_MAX_READ = 64 * 1024
# S3 error codes that mean the keys, or what they may do, were refused: reason auth.
AUTH_CODES = frozenset(
    {
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "AuthorizationHeaderMalformed",
        "InvalidSecurity",
        "XMinioInvalidIAMCredentials",
    }
)
BAD_KEY_CODES = frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken"})


def _check_endpoint(endpoint: str, info: ValidationInfo) -> str:
    """``http(s)://host:port``, or a bare host as minio-js's ``endPoint`` (with ``port`` and ``use_ssl``, whose
    defaults are minio-js's: TLS on, port 443 with TLS and 80 without)."""
    port, use_ssl = info.data.get("port"), info.data.get("use_ssl")
    if "://" not in endpoint:
        try:
            bare = urlsplit(f"//{endpoint}")
            written_port = bare.port
        except ValueError:
            raise ValueError("expected a host, host:port or http(s)://host:port") from None
        if "@" in endpoint:
            raise ValueError("put the keys in access_key and secret_key, not in the endpoint")
        if not bare.hostname or bare.netloc != endpoint:
            raise ValueError(f"expected a host, host:port or http(s)://host:port, got {endpoint!r}")
        if written_port is not None and port is not None:
            raise ValueError("the port is written twice: in the endpoint and in port")
        secure = use_ssl is not False
        host = f"[{bare.hostname}]" if ":" in bare.hostname else bare.hostname
        endpoint = f"{'https' if secure else 'http'}://{host}:{written_port or port or (443 if secure else 80)}"
    elif port is not None or use_ssl is not None:
        raise ValueError("port and use_ssl go with a bare host (minio-js's endPoint), not with a URL")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected http://host:port or https://host:port, got {endpoint!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("put the keys in access_key and secret_key, not in the endpoint")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"expected only scheme, host and port (no path or query), got {endpoint!r}")
    _ = parts.port  # raises ValueError for an invalid port
    return endpoint.rstrip("/")


def _check_bucket(name: str) -> str:
    from minio.helpers import check_bucket_name

    check_bucket_name(name)  # minio-py's own rules, so the client never rejects a name mid-run
    return name


BucketName = Annotated[str, AfterValidator(_check_bucket)]


class NewestObject(_freshness.Limits):
    """``newest_object:``: the newest object under ``prefix`` (a backup) must be recent and large enough."""

    prefix: str = ""
    max_keys: _freshness.Bound = 10_000  # objects listed per run, at most


class MinioTarget(TargetBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("secret_key",)

    kind: Literal["minio"]
    port: Annotated[int, Field(gt=0, lt=65536)] | None = None  # with a bare endpoint (minio-js's port)
    use_ssl: bool | None = None  # with a bare endpoint (minio-js's useSSL, default true)
    endpoint: Annotated[str, AfterValidator(_check_endpoint)]
    access_key: str | None = None
    secret_key: SecretStr | None = None
    bucket: BucketName | None = None
    canary_object: bool = False
    health_endpoints: bool = True
    ca_file: ReadableFile | None = None
    region: str | None = None
    newest_object: NewestObject | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("set both access_key and secret_key (or secret_key_file), or neither")
        if self.canary_object and self.bucket is None:
            raise ValueError("canary_object needs a bucket")
        if self.newest_object is not None and (self.bucket is None or self.access_key is None):
            raise ValueError("newest_object needs a bucket and keys (access_key, secret_key)")
        if not self.health_endpoints and self.bucket is None and self.access_key is None:
            raise ValueError("with health_endpoints: false, set a bucket or keys: there is nothing else to check")
        return self

    def where(self) -> str:
        return self.endpoint + (f"/{self.bucket}" if self.bucket else "")


MODEL = MinioTarget


# --- one place for every driver exception -----------------------------------------------------


def _cause(exc: BaseException) -> BaseException | None:
    return exc.__cause__ or exc.__context__


def _classify_urllib3(exc: HTTPError) -> ProbeFailure:
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NameResolutionError,
        NewConnectionError,
        ProtocolError,
        ReadTimeoutError,
        SSLError,
    )

    if isinstance(exc, MaxRetryError) and exc.reason is not None:  # only when a Retry object is in play
        return classify(exc.reason) or ProbeFailure(Reason.PROTOCOL, describe(exc.reason))
    if isinstance(exc, NameResolutionError):  # before NewConnectionError, its base
        cause = _cause(exc)
        return ProbeFailure(Reason.DNS, f"name resolution failed: {describe(cause) if cause else describe(exc)}")
    if isinstance(exc, NewConnectionError):  # before ConnectTimeoutError, its base
        cause = _cause(exc)
        found = classify_os_error(cause) if cause is not None else None
        return found or ProbeFailure(Reason.REFUSED, "connection failed")
    if isinstance(exc, ConnectTimeoutError):
        return ProbeFailure(Reason.TIMEOUT, "connect timed out")
    if isinstance(exc, ReadTimeoutError):
        return ProbeFailure(Reason.TIMEOUT, "no answer from S3 within the timeout")
    if isinstance(exc, SSLError):
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else _cause(exc)
        found = classify_os_error(inner) if inner is not None else None
        return found or ProbeFailure(Reason.TLS, f"TLS error: {describe(exc)}")
    if isinstance(exc, ProtocolError):
        inner = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], BaseException) else None
        if isinstance(inner, http.client.RemoteDisconnected):  # before BadStatusLine, its base
            return ProbeFailure(Reason.PROTOCOL, "server closed the connection without an answer")
        if isinstance(inner, http.client.BadStatusLine | http.client.LineTooLong | http.client.UnknownProtocol):
            return ProbeFailure(Reason.PROTOCOL, "invalid HTTP response (not an S3 server?)")
        return ProbeFailure(Reason.PROTOCOL, f"connection broken: {describe(inner or exc)}")
    return ProbeFailure(Reason.PROTOCOL, f"HTTP error: {describe(exc)}")


def _classify_s3(exc: S3Error) -> ProbeFailure:
    code = exc.code or "unknown"
    said = f"{code}: {exc.message}" if exc.message else code
    details = {"s3_error": code}
    if code in AUTH_CODES:
        hint = "" if code not in BAD_KEY_CODES else " (check access_key and secret_key)"
        return ProbeFailure(Reason.AUTH, f"S3 refused the request: {said}{hint}", details)
    if code == "NoSuchBucket":
        return ProbeFailure(Reason.ASSERTION, f"bucket {exc.bucket_name!r} does not exist", details)
    return ProbeFailure(Reason.PROTOCOL, f"S3 error {said}", details)


# minio-py's XML reader raises a bare ValueError for a document without the element it looks for.
WORDS: tuple[Words, ...] = (
    Words(
        "xml_element", re.compile(r"^XML element <[^>]*> not found"), "minio 7.2.20", "XML element <Bucket> not found"
    ),
)


def classify(exc: BaseException) -> ProbeFailure | None:
    """minio-py, urllib3 and aiohttp exceptions -> the fixed reasons."""
    from minio.error import InvalidResponseError, S3Error, ServerError
    from urllib3.exceptions import HTTPError

    if isinstance(exc, S3Error):
        return _classify_s3(exc)
    if isinstance(exc, ServerError):
        return ProbeFailure(Reason.PROTOCOL, f"S3 server error: HTTP {exc.status_code}")
    if isinstance(exc, InvalidResponseError):
        return ProbeFailure(Reason.PROTOCOL, f"not an S3 answer: {shorten(str(exc), 160)}")
    if isinstance(exc, ParseError):
        return ProbeFailure(Reason.PROTOCOL, "not an S3 answer: the response is not valid XML")
    if isinstance(exc, ValueError) and said(WORDS, str(exc)) == "xml_element":
        return ProbeFailure(Reason.PROTOCOL, f"not an S3 answer: {describe(exc)}")
    if isinstance(exc, HTTPError):
        return _classify_urllib3(exc)
    return _aiohttp.classify(exc)


# --- health endpoints --------------------------------------------------------------------------


def _int_header(headers: Any, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _get(ctx: ProbeContext, target: MinioTarget, path: str) -> tuple[int, Any]:
    tls = ctx.ssl_context(target.ca_file) if target.endpoint.startswith("https:") else False
    async with ctx.http_session().get(target.endpoint + path, ssl=tls, allow_redirects=False) as response:
        return response.status, response.headers


def _note_headers(details: dict[str, Any], headers: Any) -> None:
    for header, key in (
        ("x-minio-write-quorum", "write_quorum"),
        ("x-minio-read-quorum", "read_quorum"),
        ("x-minio-healing-drives", "healing_drives"),
    ):
        number = _int_header(headers, header)
        if number is not None:
            details[key] = number
    if (defaults := headers.get("x-minio-storage-class-defaults")) is not None:
        details["storage_class_defaults"] = defaults.lower() == "true"
    if (status := headers.get("x-minio-server-status")) is not None:
        details["server_status"] = status[:64]


async def _check_health(target: MinioTarget, ctx: ProbeContext) -> dict[str, Any]:
    """What the health endpoints say. Raises when the server is not live or has no read quorum (the
    run cannot go on); a lost write quorum or healing drives are the rules' business."""
    details: dict[str, Any] = {}
    with driver_errors(classify):
        live, headers = await _get(ctx, target, LIVE)
    details["live_status"] = live
    if server := headers.get("Server"):
        details["server"] = server[:64]
    _note_headers(details, headers)
    if live != 200:
        hint = " (not MinIO? set health_endpoints: false)" if live == 404 else ""
        raise ProbeFailure(Reason.ASSERTION, f"{LIVE} answered HTTP {live}{hint}", {"health": details})
    with driver_errors(classify):
        cluster, headers = await _get(ctx, target, CLUSTER)
    details["cluster_status"] = cluster
    _note_headers(details, headers)
    if cluster != 200:
        with driver_errors(classify):
            read, headers = await _get(ctx, target, CLUSTER_READ)
        details["cluster_read_status"] = read
        _note_headers(details, headers)
        if read != 200:
            raise ProbeFailure(
                Reason.ASSERTION,
                f"no read quorum: {CLUSTER_READ} answered HTTP {read}{_server_status(details)}",
                {"health": details},
            )
    return details


def _server_status(health: Mapping[str, Any]) -> str:
    return f", server status {health['server_status']}" if "server_status" in health else ""


def _no_write_quorum(_target: MinioTarget, values: Mapping[str, Any]) -> str | None:
    health = values.get("health")
    if health is None or health["cluster_status"] == 200:
        return None
    return f"no write quorum ({CLUSTER} answered HTTP {health['cluster_status']}{_server_status(health)})"


def _healing(_target: MinioTarget, values: Mapping[str, Any]) -> str | None:
    healing = values.get("health", {}).get("healing_drives", 0)
    return f"{healing} drive{'s' if healing != 1 else ''} healing" if healing > 0 else None


def _canary_differs(_target: MinioTarget, values: Mapping[str, Any]) -> str | None:
    return "canary object read back differs from what was written" if values.get("_canary_mismatch") else None


def _newest_where(target: MinioTarget) -> str:
    prefix = target.newest_object.prefix if target.newest_object is not None else ""
    return f"under {prefix or '/'} in bucket {target.bucket}"


NEWEST = _freshness.Watch(
    name="newest_object",
    label="key",
    counted="objects",
    thing="object",
    limits=lambda target: target.newest_object,
    where=_newest_where,
    bound=lambda target: f"max_keys ({target.newest_object.max_keys})" if target.newest_object else "",
)

RULES: tuple[Rule, ...] = (
    unhealthy_if(_canary_differs),
    *_freshness.rules(NEWEST),
    degraded_if(_no_write_quorum),
    degraded_if(_healing),
)

OBSERVES: dict[str, Observable] = {
    "health": Observable(
        "map",
        "what the health endpoints said: live_status, cluster_status, cluster_read_status, write_quorum, "
        "read_quorum, healing_drives, storage_class_defaults, server_status, server",
    ),
    "bucket": Observable("string", "the bucket listed"),
    "buckets_visible": Observable("int", "without a bucket: how many buckets the keys list (null: not allowed)"),
    "canary_object": Observable("string", "the canary object's key"),
    "canary_bytes": Observable("int", "the canary object's size"),
    "canary": Observable("string", "why the canary round trip was skipped"),
    "note": Observable("string", "what the run could not see"),
    "newest_object": Observable(
        "map", "with newest_object: the newest object under the prefix: key, age_seconds, size (bytes), modified"
    ),
    "objects": Observable("int", "with newest_object: objects listed under the prefix (at most max_keys)"),
    "listing_truncated": Observable("bool", "with newest_object: more than max_keys objects are under the prefix"),
}


# --- S3 through minio-py, in a worker thread ---------------------------------------------------


@cache
def _budget_pool_class() -> Callable[..., PoolManager]:
    """The pool class, defined on first use because its base class is urllib3's."""
    import urllib3

    class _BudgetPool(urllib3.PoolManager):
        """A urllib3 pool whose every request is bounded by what is left of the run's time budget, with
        retries and redirects off: minio-py passes no timeout of its own, so this one applies. Answers
        minio-py reads whole are read here in pieces and counted against the kind's byte budget
        (``BYTE_BUDGET``, after decompression): a peer announcing a huge answer costs at most that."""

        def __init__(self, deadline: float, byte_budget: int = BYTE_BUDGET, **kwargs: Any) -> None:
            super().__init__(num_pools=1, maxsize=1, retries=False, **kwargs)
            self.deadline = deadline
            self.byte_budget = byte_budget
            self.received = 0

        def urlopen(  # type: ignore[override]  # the same override urllib3's PoolManager makes
            self, method: str, url: str, redirect: bool = True, **kw: Any
        ) -> BaseHTTPResponse:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the run's time budget is spent")
            kw["timeout"] = urllib3.Timeout(connect=left, read=left)
            kw["retries"] = False
            whole = kw.get("preload_content", True)
            kw["preload_content"] = False
            response = super().urlopen(method, url, redirect=False, **kw)
            if not whole:
                return response  # streamed: the caller reads a bounded amount (the canary's CANARY_MAX_READ)
            body = bytearray()
            try:
                for piece in response.stream(65536, decode_content=True):
                    self.received += len(piece)
                    if self.received > self.byte_budget:
                        raise ProbeFailure(
                            Reason.PROTOCOL,
                            f"the peer sent more than {self.byte_budget} bytes in one run (the minio kind's limit)",
                        )
                    body += piece
            finally:
                response.release_conn()
            return urllib3.HTTPResponse(
                body=bytes(body),
                headers=response.headers,
                status=response.status,
                reason=response.reason,
                preload_content=True,
                decode_content=False,
                request_method=method,
                request_url=url,
            )

    return _BudgetPool


@dataclass(slots=True)
class _S3Outcome:
    phases: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    canary_mismatch: bool = False
    gauges: dict[str, float] = field(default_factory=dict)


def _newest(client: Minio, bucket: str, wanted: NewestObject) -> tuple[_freshness.Newest | None, int, bool]:
    """List at most ``max_keys`` objects under the prefix (pages of 1,000, in key order): the newest, how
    many were listed, and whether more are there (one more key is asked for to know)."""
    newest: _freshness.Newest | None = None
    count = 0
    for item in client.list_objects(bucket, prefix=wanted.prefix or None, recursive=True):
        if count == wanted.max_keys:
            return newest, count, True
        count += 1
        if item.is_dir or item.last_modified is None or item.object_name is None:
            continue
        if item.object_name.startswith(CANARY_PREFIX):  # the probe's own canary objects are no backup
            continue
        modified = item.last_modified.timestamp()
        if newest is None or modified > newest.modified:
            newest = _freshness.Newest(item.object_name, modified, int(item.size or 0))
    return newest, count, False


def _timed(outcome: _S3Outcome, phase: str, call: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        return call()
    finally:
        outcome.phases[phase] = time.perf_counter() - start


def _read_object(client: Minio, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return bytes(response.read(CANARY_MAX_READ))
    finally:
        response.close()
        response.release_conn()


def _canary(client: Minio, target: MinioTarget, outcome: _S3Outcome) -> None:
    assert target.bucket is not None
    bucket = target.bucket
    token = secrets.token_hex(8)
    key = f"{CANARY_PREFIX}{target.name}-{token}"
    payload = f"prober canary {target.name} {token} {time.time():.3f}\n".encode()
    outcome.details["canary_object"] = key
    outcome.details["canary_bytes"] = len(payload)
    _timed(outcome, "canary_put", lambda: client.put_object(bucket, key, io.BytesIO(payload), len(payload)))
    try:
        read_back = _timed(outcome, "canary_get", lambda: _read_object(client, bucket, key))
    except Exception:
        with contextlib.suppress(Exception):  # try to clean up, but report the read's failure
            client.remove_object(bucket, key)
        raise
    outcome.canary_mismatch = read_back != payload
    _timed(outcome, "canary_delete", lambda: client.remove_object(bucket, key))


def _s3_work(target: MinioTarget, deadline: float, canary: bool) -> _S3Outcome:
    """The blocking part (runs in a worker thread). Raises the driver's exceptions."""
    from minio import Minio

    parts = urlsplit(target.endpoint)
    https = parts.scheme == "https"
    pool_kwargs: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED", "ca_certs": target.ca_file} if https else {}
    pool = _budget_pool_class()(deadline, **pool_kwargs)
    outcome = _S3Outcome()
    try:
        client = Minio(
            parts.netloc,
            access_key=target.access_key,
            secret_key=target.secret_key.get_secret_value() if target.secret_key is not None else None,
            secure=https,
            region=target.region,
            http_client=pool,
        )
        if target.bucket is None:
            buckets = _timed(outcome, "auth", _list_buckets(client))
            outcome.details["buckets_visible"] = buckets
            return outcome
        bucket = target.bucket
        _timed(outcome, "bucket", lambda: next(iter(client.list_objects(bucket, prefix=CANARY_PREFIX)), None))
        outcome.details["bucket"] = bucket
        if target.newest_object is not None:
            wanted = target.newest_object
            found, count, truncated = _timed(outcome, "newest_object", lambda: _newest(client, bucket, wanted))
            values, outcome.gauges = _freshness.observe(NEWEST, found, count, truncated)
            outcome.details.update(values)
        if canary:
            _canary(client, target, outcome)
        return outcome
    finally:
        pool.clear()  # close the run's connection


def _list_buckets(client: Minio) -> Callable[[], int | None]:
    from minio.error import S3Error

    def call() -> int | None:
        try:
            return len(client.list_buckets())
        except S3Error as exc:
            if exc.code == "AccessDenied":  # the signature was accepted; the key may just not list buckets
                return None
            raise

    return call


# --- the probe ---------------------------------------------------------------------------------


async def probe(target: MinioTarget, ctx: ProbeContext) -> Observation:
    run = ctx.begin(target)
    values: dict[str, Any] = {}
    gauges: dict[str, float] = {}
    said: list[str] = []
    write_quorum = True
    if target.health_endpoints:
        with run.phase("health"):
            health = values["health"] = await _check_health(target, ctx)
        write_quorum = health["cluster_status"] == 200
        quorum = health.get("write_quorum")
        said.append("cluster healthy" + (f" (write quorum {quorum})" if quorum is not None else ""))
    if target.bucket is not None or target.access_key is not None:
        canary = target.canary_object and write_quorum
        if target.canary_object and not write_quorum:
            values["canary"] = "skipped: no write quorum"
        deadline = time.monotonic() + run.left()  # the worker thread's: it ends when the run does
        try:
            with driver_errors(classify):
                outcome: _S3Outcome = await ctx.run_blocking(_s3_work, target, deadline, canary)
        except ProbeFailure as failure:  # keep what the health endpoints said
            failure.details = {**values, **failure.details}
            raise
        run.phases.update(outcome.phases)
        values.update(outcome.details)
        gauges = outcome.gauges
        values["_canary_mismatch"] = outcome.canary_mismatch
        if target.bucket is None:
            said.append("keys accepted")
            if outcome.details.get("buckets_visible") is None:
                values["note"] = "the key may not list buckets (AccessDenied); its signature was accepted"
        else:
            said.append(f"bucket {target.bucket!r} readable" + (", canary round trip ok" if canary else ""))
        newest = values.get("newest_object")
        if newest is not None:
            said.append(f"newest object {human_duration(newest['age_seconds'])} old ({newest['key']})")
    return Observation(values, "; ".join(said), latency=run.elapsed(), phases=run.phases, gauges=gauges)
