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
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, model_validator
from yarl import URL

from prober.errors import ProbeFailure, Words, driver_errors, shorten
from prober.judge import Observable, Observation, Rule, degraded_if, unhealthy_if
from prober.models import ReadableFile, TargetBase
from prober.probes import _aiohttp, _http1
from prober.probes._components import Style, components
from prober.probes._context import ProbeContext
from prober.probes._kit import Run
from prober.probes._tls import cert_facts, unverified_cert_facts
from prober.status import Component, Reason, State

# bytes one run may receive from its peers (_budget.py): the 1 MiB body, headers and redirects
BYTE_BUDGET = 4 * 2**20

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
    components: Style = "none"
    critical_components: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _components_named(self) -> Self:
        if self.critical_components and self.components == "none":
            raise ValueError("critical_components needs components: auto, terminus, spring or ietf")
        return self

    def where(self) -> str:
        return self.url

    @property
    def reads_body(self) -> bool:
        """Whether a run parses the body: for body_status_field, components or a condition on ``body``."""
        return self.body_status_field is not None or self.components != "none" or "body" in self.condition_names


def _headers(target: HttpTarget) -> dict[str, str]:
    headers = {name: value.get_secret_value() for name, value in target.headers.items()}
    if target.bearer_token is not None:
        headers["Authorization"] = f"Bearer {target.bearer_token.get_secret_value()}"
    return headers


MODEL = HttpTarget

OBSERVES: dict[str, Observable] = {
    "status_code": Observable("int", "the final response's status code"),
    "headers": Observable("map", "the final response's headers, names in lower case", shown=False),
    "body": Observable(
        "dyn",
        "the body: the parsed JSON when it is JSON, else the text (read when body_status_field or a "
        "condition needs it)",
        shown=False,
    ),
    "certificate": Observable("map", "https: the server certificate's facts (days_left, not_after, issuer, ...)"),
    "components": Observable(
        "map", "with components: each reported dependency's state (ok, degraded, unhealthy, unknown)", shown=False
    ),
}

_MISSING = object()


def _field(document: Any, path: str) -> Any:
    """The value at a dotted path (``info.database.status``, ``checks.0.status``) in a JSON document, or
    ``_MISSING``."""
    value = document
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return _MISSING
    return value


def _body_state(value: Any) -> State:
    if isinstance(value, bool):
        return State.OK if value else State.UNHEALTHY
    word = str(value).strip().lower()
    if word in OK_WORDS:
        return State.OK
    return State.DEGRADED if word in DEGRADED_WORDS else State.UNHEALTHY


def _expected(target: HttpTarget, status: int) -> bool:
    return status in target.expect_status if target.expect_status else 200 <= status < 400


def _status_field(target: HttpTarget, values: Mapping[str, Any]) -> Any:
    """The value of ``body_status_field`` in a JSON body; ``_MISSING`` if there is none (or no JSON)."""
    if target.body_status_field is None or not values.get("_json", False):
        return _MISSING
    return _field(values["body"], target.body_status_field)


def _said(target: HttpTarget, values: Mapping[str, Any]) -> str:
    return f"HTTP {values['status_code']}, {target.body_status_field}={shorten(str(_status_field(target, values)), 60)}"


def _unexpected_status(target: HttpTarget, values: Mapping[str, Any]) -> str | None:
    status = values["status_code"]
    if _expected(target, status):
        return None
    wanted = ", ".join(map(str, target.expect_status)) if target.expect_status else "2xx/3xx"
    field_value = _status_field(target, values)
    said = f", {target.body_status_field}={shorten(str(field_value), 60)}" if field_value is not _MISSING else ""
    return f"HTTP {status}{said} (expected {wanted})"


def _not_json(target: HttpTarget, values: Mapping[str, Any]) -> str | None:
    if target.body_status_field is None or values.get("_json", False):
        return None
    return "response body is not valid JSON"


def _field_missing(target: HttpTarget, values: Mapping[str, Any]) -> str | None:
    if target.body_status_field is None or _status_field(target, values) is not _MISSING:
        return None
    return f"field {target.body_status_field!r} not found in the response body"


def _body_lacks(target: HttpTarget, values: Mapping[str, Any]) -> str | None:
    if target.body_contains is None or target.body_contains.encode() in values["_raw_body"]:
        return None
    return f"body does not contain {target.body_contains!r}"


def _reports(state: State) -> Callable[[HttpTarget, Mapping[str, Any]], str | None]:
    """The application's own word for itself (``body_status_field``) means ``state``."""

    def check(target: HttpTarget, values: Mapping[str, Any]) -> str | None:
        field_value = _status_field(target, values)
        if field_value is _MISSING or _body_state(field_value) is not state:
            return None
        said = _said(target, values)
        return f"{said}: the application reports itself degraded" if state is State.DEGRADED else said

    return check


def _critical_down(target: HttpTarget, values: Mapping[str, Any]) -> str | None:
    states = values.get("components") or {}
    down = [name for name in target.critical_components if states.get(name) == State.UNHEALTHY.value]
    return f"critical component{'s' if len(down) > 1 else ''} {', '.join(down)} down" if down else None


def _critical_missing(target: HttpTarget, values: Mapping[str, Any]) -> str | None:
    states = values.get("components")
    if states is None:
        return None
    missing = [name for name in target.critical_components if name not in states]
    return f"critical component{'s' if len(missing) > 1 else ''} {', '.join(missing)} not reported" if missing else None


def _components_ailing(target: HttpTarget, values: Mapping[str, Any]) -> str | None:
    states = values.get("components") or {}
    said = [
        f"{name} {word}"
        for name, word in states.items()
        if word in (State.UNHEALTHY.value, State.DEGRADED.value) and name not in target.critical_components
    ]
    return f"components: {', '.join(said[:5])}{' ...' if len(said) > 5 else ''}" if said else None


RULES: tuple[Rule, ...] = (
    unhealthy_if(_unexpected_status),
    unhealthy_if(_not_json, Reason.PROTOCOL),
    unhealthy_if(_field_missing),
    unhealthy_if(_body_lacks),
    unhealthy_if(_critical_down),
    unhealthy_if(_reports(State.UNHEALTHY)),
    degraded_if(_reports(State.DEGRADED)),
    degraded_if(_critical_missing),
    degraded_if(_components_ailing),
)


WORDS: tuple[Words, ...] = ()  # no driver words to read: exception types say it all


def classify(exc: BaseException) -> ProbeFailure | None:
    return _aiohttp.classify(exc)


async def _add_unverified_cert(failure: ProbeFailure, url: URL, run: Run, ctx: ProbeContext) -> None:
    """A failed handshake still reports the certificate's expiry (read without verification)."""
    host = url.raw_host or ""
    facts = await unverified_cert_facts(host, url.port or 443, host, ctx.ssl_context(verify=False), run.left())
    if facts is not None:
        failure.details = {"certificate": facts}
        failure.gauges = {"tls_cert_not_after_timestamp_seconds": facts["not_after_timestamp"]}


def _read_body(raw: bytes) -> tuple[Any, bool]:
    """The body as the conditions see it: (parsed JSON, True), or (the text, False)."""
    try:
        return json.loads(raw), True
    except (ValueError, RecursionError):
        return raw.decode("utf-8", "replace"), False


async def probe(target: HttpTarget, ctx: ProbeContext) -> Observation:
    url = URL(target.url)
    run = ctx.begin(target)
    try:
        with driver_errors(classify):
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
            await _add_unverified_cert(failure, url, run, ctx)
        raise
    values: dict[str, Any] = {"status_code": answer.status, "headers": answer.headers, "_raw_body": answer.body}
    gauges: dict[str, float] = {}
    if answer.peer_cert:  # parsed outside the timed part
        values["certificate"] = certificate = cert_facts(answer.peer_cert)
        gauges["tls_cert_not_after_timestamp_seconds"] = certificate["not_after_timestamp"]
    found: dict[str, Component] = {}
    if target.reads_body:
        values["body"], values["_json"] = _read_body(answer.body)
        found, omitted = components(values["body"] if values["_json"] else None, target.components)
        if target.components != "none":
            values["components"] = {name: component.state.value for name, component in found.items()}
            if omitted:
                values["components_omitted"] = omitted
    summary = f"HTTP {answer.status}"
    if _status_field(target, values) is not _MISSING:
        summary = _said(target, values)
    return Observation(
        values, summary, latency=answer.end - run.started, phases=answer.phases, gauges=gauges, components=found
    )
