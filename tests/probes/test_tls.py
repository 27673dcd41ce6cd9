"""The tls probe against real TLS servers with trustme certificates."""

from __future__ import annotations

from typing import Any

import pytest

from prober.probes import ProbeContext
from prober.probes.tls import TlsTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.peers.web import Peers


async def probe(peers: Peers, server: str, ctx: ProbeContext, **fields: Any) -> Result:
    config = {"name": "cert", "kind": "tls", "address": peers.address(server), "timeout": "2s", **fields}
    config.setdefault("ca_file", str(peers.certs.ca_file))
    config.setdefault("server_name", "localhost")
    return await run_probe(TlsTarget.model_validate(config), ctx)


@pytest.mark.parametrize(
    ("server", "fields", "state", "reason", "message"),
    [
        ("tls-valid", {}, State.OK, None, "expires in 36"),
        ("tls-soon", {}, State.DEGRADED, None, "degraded at 14 days"),
        ("tls-soon", {"degraded_days": 7}, State.OK, None, "expires in"),
        ("tls-expiring", {}, State.DEGRADED, None, "expires in 2.0 days"),
        ("tls-expiring", {"unhealthy_days": 3}, State.UNHEALTHY, Reason.TLS, "unhealthy at 3 days"),
        ("tls-expired", {}, State.UNHEALTHY, Reason.TLS, "certificate has expired"),
        ("tls-wrong-host", {}, State.UNHEALTHY, Reason.TLS, "Hostname mismatch"),
        ("tls-unknown-ca", {}, State.UNHEALTHY, Reason.TLS, "unable to get local issuer certificate"),
        ("tls-valid", {"server_name": "example.org"}, State.UNHEALTHY, Reason.TLS, "Hostname mismatch"),
        ("tls-valid", {"ca_file": None}, State.UNHEALTHY, Reason.TLS, "certificate verification failed"),
    ],
)
async def test_certificates(
    peers: Peers,
    ctx: ProbeContext,
    server: str,
    fields: dict[str, Any],
    state: State,
    reason: Reason | None,
    message: str,
) -> None:
    if fields.get("ca_file", "") is None:
        fields = {k: v for k, v in fields.items() if k != "ca_file"}
        result = await run_probe(
            TlsTarget(name="cert", kind="tls", address=peers.address(server), server_name="localhost"), ctx
        )
    else:
        result = await probe(peers, server, ctx, **fields)
    assert (result.state, result.reason) == (state, reason), result.message
    assert message in result.message
    # the expiry is known in every case, including failed verification
    assert result.gauges["tls_cert_not_after_timestamp_seconds"] > 0


async def test_details(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers, "tls-valid", ctx)
    details = result.details
    assert details["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert details["subject"] == "localhost" or "localhost" in details["sans"]
    assert "127.0.0.1" in details["sans"]
    assert details["issuer"]
    assert set(result.phases) == {"connect", "tls"}


async def test_expired_certificate_reports_days(peers: Peers, ctx: ProbeContext) -> None:
    result = await probe(peers, "tls-expired", ctx)
    assert result.details["days_left"] < 0
    assert "expired 1.0 days ago" in result.message


@pytest.mark.parametrize(
    ("server", "reason"),
    [("tls-hang", Reason.TIMEOUT), ("closed", Reason.REFUSED), ("close", Reason.PROTOCOL), ("garbage", Reason.TLS)],
)
async def test_broken_peers(peers: Peers, ctx: ProbeContext, server: str, reason: Reason) -> None:
    result = await probe(peers, server, ctx, timeout="500ms")
    assert (result.state, result.reason) == (State.UNHEALTHY, reason), result.message
    assert result.latency is not None and result.latency < 1.5
