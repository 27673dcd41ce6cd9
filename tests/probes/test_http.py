"""The http probe against real HTTP servers on loopback."""

from __future__ import annotations

from typing import Any

import pytest

from prober.probes import ProbeContext
from prober.probes.http import HttpTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.peers.web import TOKEN, Peers


def target(url: str, **fields: Any) -> HttpTarget:
    return HttpTarget.model_validate({"name": "web", "kind": "http", "url": url, "timeout": "2s", **fields})


async def probe(url: str, ctx: ProbeContext, **fields: Any) -> Result:
    return await run_probe(target(url, **fields), ctx)


@pytest.mark.parametrize(
    ("path", "fields", "state", "reason", "message"),
    [
        ("/nest/ok", {"body_status_field": "status"}, State.OK, None, "status=ok"),
        ("/nest/degraded", {"body_status_field": "status"}, State.DEGRADED, None, "status=degraded"),
        ("/nest/unhealthy", {"body_status_field": "status"}, State.UNHEALTHY, Reason.ASSERTION, "HTTP 503"),
        ("/spring/up", {"body_status_field": "status"}, State.OK, None, "status=UP"),
        ("/spring/down", {"body_status_field": "status"}, State.UNHEALTHY, Reason.ASSERTION, "status=DOWN"),
        ("/nested", {"body_status_field": "info.db.status"}, State.OK, None, "info.db.status=up"),
        ("/nested", {"body_status_field": "checks.0.status"}, State.DEGRADED, None, "checks.0.status=warn"),
        ("/nested", {"body_status_field": "info.cache.status"}, State.UNHEALTHY, Reason.ASSERTION, "not found"),
        ("/plain", {}, State.OK, None, "HTTP 200"),
        ("/plain", {"body_contains": "OK"}, State.OK, None, "HTTP 200"),
        ("/plain", {"body_contains": "READY"}, State.UNHEALTHY, Reason.ASSERTION, "does not contain"),
        ("/plain", {"body_status_field": "status"}, State.UNHEALTHY, Reason.PROTOCOL, "not valid JSON"),
        ("/code/500", {}, State.UNHEALTHY, Reason.ASSERTION, "HTTP 500 (expected 2xx/3xx)"),
        ("/code/204", {"expect_status": [200]}, State.UNHEALTHY, Reason.ASSERTION, "expected 200"),
        ("/code/418", {"expect_status": [418]}, State.OK, None, "HTTP 418"),
        ("/redirect", {}, State.OK, None, "HTTP 302"),
        ("/redirect", {"follow_redirects": True, "expect_status": [200]}, State.OK, None, "HTTP 200"),
        ("/redirect-loop", {"follow_redirects": True}, State.UNHEALTHY, Reason.PROTOCOL, "redirects"),
        ("/huge", {}, State.UNHEALTHY, Reason.PROTOCOL, "larger than 1048576 bytes"),
        ("/endless", {}, State.UNHEALTHY, Reason.PROTOCOL, "larger than 1048576 bytes"),
        ("/invalid-json", {"body_status_field": "status"}, State.UNHEALTHY, Reason.PROTOCOL, "not valid JSON"),
        ("/deep-json", {"body_status_field": "status"}, State.UNHEALTHY, Reason.PROTOCOL, "not valid JSON"),
        ("/big-header", {}, State.UNHEALTHY, Reason.PROTOCOL, "invalid HTTP response"),
        ("/auth", {}, State.UNHEALTHY, Reason.ASSERTION, "HTTP 401"),
        ("/auth", {"bearer_token": TOKEN, "body_status_field": "status"}, State.OK, None, "status=ok"),
    ],
)
async def test_http_answers(
    peers: Peers,
    ctx: ProbeContext,
    path: str,
    fields: dict[str, Any],
    state: State,
    reason: Reason | None,
    message: str,
) -> None:
    result = await probe(peers.url(path), ctx, **fields)
    assert (result.state, result.reason) == (state, reason), result.message
    assert message in result.message
    assert result.latency is not None and 0 < result.latency < 2


async def test_phases_and_details(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers.url("/nest/ok"), ctx, body_status_field="status")
    assert result.details["status_code"] == 200
    assert set(result.phases) >= {"connect", "request", "body"}
    assert all(0 <= seconds < 1 for seconds in result.phases.values())


async def test_slow_answer_is_degraded(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers.url("/slow?ms=300"), ctx, degraded_latency="100ms")
    assert result.state is State.DEGRADED
    assert "slow answer" in result.message and "> 100ms" in result.message
    assert result.latency is not None and result.latency >= 0.3


async def test_fast_answer_under_the_latency_limit_is_ok(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers.url("/plain"), ctx, degraded_latency="1s")
    assert result.state is State.OK


@pytest.mark.parametrize(
    ("server", "reason", "message"),
    [
        ("hang", Reason.TIMEOUT, "no answer within 500ms"),
        ("trickle", Reason.TIMEOUT, "no answer within 500ms"),
        ("closed", Reason.REFUSED, "connection refused"),
        ("garbage", Reason.PROTOCOL, "invalid HTTP response"),
        ("close", Reason.PROTOCOL, "closed"),  # a reset or an orderly close, depending on timing
    ],
)
async def test_broken_servers(peers: Peers, ctx: ProbeContext, server: str, reason: Reason, message: str) -> None:
    result = await run_probe(target(f"http://{peers.address(server)}/health", timeout="500ms"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, reason), result.message
    assert message in result.message
    assert len(result.message) <= 320 and "\n" not in result.message  # short, one line, whatever the peer sent
    assert result.latency is not None and result.latency < 1.5  # hard-bounded by the timeout


async def test_dns_failure(ctx: ProbeContext) -> None:
    result = await probe("http://no-such-host.invalid/health", ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.DNS), result.message


async def test_https_with_ca_file_reports_the_certificate(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers.url("/nest/ok", "https"), ctx, ca_file=str(peers.certs.ca_file))
    assert result.state is State.OK, result.message
    certificate = result.details["certificate"]
    assert 364 < certificate["days_left"] <= 365
    assert result.gauges["tls_cert_not_after_timestamp_seconds"] == certificate["not_after_timestamp"]


async def test_https_with_unknown_ca_is_tls_failure(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers.url("/nest/ok", "https"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TLS)
    assert "certificate verification failed" in result.message
    assert "tls_cert_not_after_timestamp_seconds" in result.gauges  # read without verification


async def test_https_expired_certificate_still_exports_its_date(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers.url("/plain", "https-expired"), ctx, ca_file=str(peers.certs.ca_file))
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TLS)
    assert "expired" in result.message
    assert result.details["certificate"]["days_left"] < 0
    assert (
        result.gauges["tls_cert_not_after_timestamp_seconds"] < result.details["certificate"]["not_after_timestamp"] + 1
    )


async def test_insecure_skip_verify(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers.url("/plain", "https-expired"), ctx, insecure_skip_verify=True)
    assert result.state is State.OK


async def test_header_values_never_reach_the_result(peers: Peers, ctx: ProbeContext) -> None:
    from prober.redact import REDACTOR

    secret = "canary-header-value-123"
    http_target = target(peers.url("/echo-headers"), headers={"X-Api-Key": secret}, body_contains="nothing-like-it")
    REDACTOR.replace(http_target.secrets())
    result = await run_probe(http_target, ctx)
    assert result.reason is Reason.ASSERTION
    assert secret not in repr(result)


def test_a_reset_after_connecting_is_protocol_whatever_form_it_takes() -> None:
    """A peer that resets the connection surfaces from aiohttp in three forms, depending on timing."""
    import errno

    import aiohttp

    from prober.errors import ProbeFailure, driver_errors
    from prober.probes._aiohttp import classify

    for exc in (
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    ):
        with pytest.raises(ProbeFailure) as caught, driver_errors(classify):
            raise exc
        assert caught.value.reason is Reason.PROTOCOL, exc
        assert "closed" in caught.value.message, exc


async def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    """The JSON body of the final answer, through the probe's own exchange with redirects followed."""
    import json

    from yarl import URL

    from prober.probes import _http1

    def no_tls() -> Any:
        raise AssertionError("no https here")

    answer = await _http1.fetch(
        URL(url), method, headers or {}, no_tls, follow_redirects=True, max_redirects=3, max_body=1 << 20
    )
    return json.loads(answer.body)


async def test_a_redirect_to_another_origin_drops_the_authorization(peers: Peers) -> None:
    auth = {"Authorization": "Bearer t0ken"}
    port = peers.ports["http"]
    same = await fetch(peers.url("/redirect-to?to=/echo-auth"), headers=auth)
    other = await fetch(peers.url(f"/redirect-to?to=http://localhost:{port}/echo-auth"), headers=auth)
    assert (same["status"], other["status"]) == ("Bearer t0ken", "")


async def test_a_redirect_to_another_origin_drops_every_configured_header_and_cookie(peers: Peers) -> None:
    """Every configured header is a secret (an API key, a cookie, a token): none follows a redirect to
    another origin (another host, port or scheme), as browsers and curl drop Authorization and Cookie;
    within the origin they are all sent. A second hop back to the first origin does not restore them."""
    secrets = {"X-Api-Key": "k3y-CANARY", "Cookie": "session=CANARY", "Authorization": "Bearer t0ken"}
    port = peers.ports["http"]
    same = await fetch(peers.url("/redirect-to?to=/echo-all-headers"), headers=secrets)
    assert {k: same.get(k.lower()) for k in secrets} == secrets
    sent = await fetch(peers.url(f"/redirect-to?to=http://localhost:{port}/echo-all-headers"), headers=secrets)
    assert not any(k.lower() in sent for k in secrets), sent
    back = f"http://localhost:{port}/redirect-to?to=http://127.0.0.1:{port}/echo-all-headers"
    sent = await fetch(peers.url(f"/redirect-to?to={back}"), headers=secrets)
    assert not any(k.lower() in sent for k in secrets), sent


@pytest.mark.parametrize(
    ("status", "method", "then"), [(303, "POST", "GET"), (302, "POST", "GET"), (307, "POST", "POST")]
)
async def test_the_method_after_a_redirect(peers: Peers, status: int, method: str, then: str) -> None:
    answer = await fetch(peers.url(f"/redirect-to?to=/method&status={status}"), method=method)
    assert answer["method"] == then


async def test_url_userinfo_is_sent_as_basic_auth(peers: Peers) -> None:
    answer = await fetch(f"http://user:pw@{peers.address('http')}/echo-auth")
    assert answer["status"] == "Basic dXNlcjpwdw=="  # base64("user:pw")


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "OPTIONS"])
async def test_methods(peers: Peers, ctx: ProbeContext, method: str) -> None:
    result = await probe(peers.url("/method"), ctx, method=method)
    assert (result.state, result.message) == (State.OK, "HTTP 200"), result.message


async def test_a_compressed_body_is_decoded(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers.url("/gzip"), ctx, body_status_field="status")
    assert (result.state, result.message) == (State.OK, "HTTP 200, status=ok"), result.message


async def test_https_phases_include_the_handshake(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers.url("/plain", "https"), ctx, ca_file=str(peers.certs.ca_file))
    assert set(result.phases) == {"dns", "connect", "tls", "request", "body"}, result.phases  # "localhost"
    assert result.latency is not None and sum(result.phases.values()) <= result.latency


def test_a_header_value_with_a_line_break_is_a_config_error_that_does_not_show_it() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        target("http://127.0.0.1/health", headers={"X-Key": "secret\r\nInjected: 1"})
    message = caught.value.errors()[0]["msg"]  # what the config loader prints (never the input)
    assert "contains a line break" in message and "secret" not in message
