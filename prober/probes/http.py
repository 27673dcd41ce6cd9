"""``http``: an application's liveness/readiness endpoint answers with the expected status and body.

Each run is one HTTP/1.1 exchange on a fresh TCP connection, made with aiohttp's own protocol, parser
and request writer (:mod:`._http1`; see README, "Why aiohttp"). Phases: ``dns`` (names only),
``connect``, ``tls`` (https), ``request`` (until the response headers) and ``body``; with redirects
followed, the phases are the last hop's and the latency covers all of them. Reads are capped at
``MAX_BODY`` bytes; a larger body is a ``protocol`` failure.
"""

from __future__ import annotations

import functools
import json
import re
import time
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr
from yarl import URL

from prober.errors import ProbeFailure, driver_errors
from prober.models import ReadableFile, TargetBase
from prober.probes import _aiohttp, _http1
from prober.probes._context import ProbeContext
from prober.probes._tls import cert_facts, unverified_cert_facts
from prober.status import Reason, Result, State, degraded, ok, unhealthy

MAX_BODY = 1 << 20  # 1 MiB
MAX_REDIRECTS = 10
OK_WORDS = frozenset({"ok", "up", "pass", "healthy", "passing"})
DEGRADED_WORDS = frozenset({"degraded", "warn", "warning"})


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
    return url


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field-name


def _check_headers(headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if any(c in value.get_secret_value() for c in "\r\n\0"):
            raise ValueError(f"the value of header {name!r} contains a line break or NUL")
    return headers


class HttpTarget(TargetBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("bearer_token",)

    kind: Literal["http"]
    url: Annotated[str, AfterValidator(_check_url)]
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: Annotated[dict[str, SecretStr], AfterValidator(_check_headers)] = Field(default_factory=dict)
    bearer_token: SecretStr | None = None
    follow_redirects: bool = False
    ca_file: ReadableFile | None = None
    insecure_skip_verify: bool = False
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(default=None, min_length=1)
    body_contains: str | None = None
    body_status_field: str | None = None


def _headers(target: HttpTarget) -> dict[str, str]:
    headers = {name: value.get_secret_value() for name, value in target.headers.items()}
    if target.bearer_token is not None:
        headers["Authorization"] = f"Bearer {target.bearer_token.get_secret_value()}"
    return headers


async def _add_unverified_cert(failure: ProbeFailure, target: HttpTarget, ctx: ProbeContext) -> None:
    """A failed handshake still reports the certificate's expiry (read without verification)."""
    url = URL(target.url)
    host = url.raw_host or ""
    facts = await unverified_cert_facts(host, url.port or 443, host, ctx.ssl_context(verify=False), target.timeout / 2)
    if facts is not None:
        failure.details = {"certificate": facts}
        failure.gauges = {"tls_cert_not_after_timestamp_seconds": facts["not_after_timestamp"]}


def _field(document: Any, path: str) -> Any:
    """The value at a dotted path (``info.database.status``, ``checks.0.status``) in a JSON document."""
    value = document
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            raise ProbeFailure(Reason.ASSERTION, f"field {path!r} not found in the response body")
    return value


def _body_state(value: Any) -> State:
    if isinstance(value, bool):
        return State.OK if value else State.UNHEALTHY
    word = str(value).strip().lower()
    if word in OK_WORDS:
        return State.OK
    return State.DEGRADED if word in DEGRADED_WORDS else State.UNHEALTHY


def _status_value(target: HttpTarget, body: bytes) -> Any:
    assert target.body_status_field is not None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise ProbeFailure(Reason.PROTOCOL, "response body is not valid JSON") from None
    return _field(document, target.body_status_field)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _judge(target: HttpTarget, status: int, body: bytes) -> Result:
    expected = status in target.expect_status if target.expect_status else 200 <= status < 400
    field_value: Any = None
    if target.body_status_field is not None:
        try:
            field_value = _status_value(target, body)
        except ProbeFailure:
            if expected:
                raise
    if not expected:
        wanted = ", ".join(map(str, target.expect_status)) if target.expect_status else "2xx/3xx"
        said = f", {target.body_status_field}={_short(field_value)}" if field_value is not None else ""
        return unhealthy(Reason.ASSERTION, f"HTTP {status}{said} (expected {wanted})")
    if target.body_contains is not None and target.body_contains.encode() not in body:
        return unhealthy(Reason.ASSERTION, f"body does not contain {target.body_contains!r}")
    if target.body_status_field is None:
        return ok(f"HTTP {status}")
    state = _body_state(field_value)
    said = f"HTTP {status}, {target.body_status_field}={_short(field_value)}"
    if state is State.OK:
        return ok(said)
    if state is State.DEGRADED:
        return degraded(f"{said}: the application reports itself degraded")
    return unhealthy(Reason.ASSERTION, said)


async def probe(target: HttpTarget, ctx: ProbeContext) -> Result:
    url = URL(target.url)
    started = time.perf_counter()
    try:
        with driver_errors(_aiohttp.classify):
            answer = await _http1.fetch(
                url,
                target.method,
                _headers(target),
                functools.partial(ctx.ssl_context, target.ca_file, verify=not target.insecure_skip_verify),
                follow_redirects=target.follow_redirects,
                max_redirects=MAX_REDIRECTS,
                max_body=MAX_BODY,
            )
    except ProbeFailure as failure:
        if url.scheme == "https" and failure.reason is Reason.TLS:
            await _add_unverified_cert(failure, target, ctx)
        raise
    certificate = cert_facts(answer.peer_cert) if answer.peer_cert else None  # parsed outside the timed part
    result = _judge(target, answer.status, answer.body)
    result.latency = answer.end - started
    result.phases = answer.phases
    result.details["status_code"] = answer.status
    if certificate is not None:
        result.details["certificate"] = certificate
        result.gauges["tls_cert_not_after_timestamp_seconds"] = certificate["not_after_timestamp"]
    return result
