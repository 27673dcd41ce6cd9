"""``tls``: handshake, verify chain and hostname, and judge the leaf certificate's expiry."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from prober.errors import ProbeFailure, driver_errors
from prober.models import Address, ReadableFile, TargetBase, split_address
from prober.probes import _net
from prober.probes._context import ProbeContext
from prober.probes._tls import cert_facts, peer_cert_der, unverified_cert_facts
from prober.status import Reason, Result, degraded, ok, unhealthy

Days = Annotated[float, Field(ge=0)]


class TlsTarget(TargetBase):
    kind: Literal["tls"]
    address: Address
    server_name: str | None = None
    ca_file: ReadableFile | None = None
    degraded_days: Days = 14
    unhealthy_days: Days = 0


def _classify(_exc: BaseException) -> None:
    return None  # sockets and ssl: the shared mapping covers everything


def _expiry_note(facts: dict[str, object]) -> str:
    days = float(facts["days_left"])  # type: ignore[arg-type]
    return f"expired {-days:.1f} days ago" if days < 0 else f"expires in {days:.1f} days"


async def _add_unverified_cert(
    failure: ProbeFailure, target: TlsTarget, host: str, port: int, server_name: str, ctx: ProbeContext
) -> None:
    """The handshake failed: read the certificate without verifying it, so its expiry is still known."""
    facts = await unverified_cert_facts(host, port, server_name, ctx.ssl_context(verify=False), target.timeout / 2)
    if facts is not None:
        failure.details = facts
        failure.gauges = {"tls_cert_not_after_timestamp_seconds": facts["not_after_timestamp"]}
        failure.message = f"{failure.message} (certificate {_expiry_note(facts)})"


async def probe(target: TlsTarget, ctx: ProbeContext) -> Result:
    host, port = split_address(target.address)
    server_name = target.server_name or host
    phases: dict[str, float] = {}
    with driver_errors(_classify):
        sock = await _net.connect_socket(host, port, phases)
    try:
        with driver_errors(_classify):
            tls = await _net.handshake(sock, ctx.ssl_context(target.ca_file), server_name, phases)
    except ProbeFailure as failure:
        if failure.reason is Reason.TLS:
            await _add_unverified_cert(failure, target, host, port, server_name, ctx)
        raise
    with tls:
        der = peer_cert_der(tls)
        version = tls.version()
    if der is None:
        return unhealthy(Reason.TLS, "the server sent no certificate", phases=phases)
    facts = cert_facts(der)
    facts["tls_version"] = version
    gauges = {"tls_cert_not_after_timestamp_seconds": facts["not_after_timestamp"]}
    days = facts["days_left"]
    common = {"details": facts, "gauges": gauges, "phases": phases, "latency": sum(phases.values())}
    note = f"certificate {_expiry_note(facts)}"
    if days <= target.unhealthy_days:
        return unhealthy(Reason.TLS, f"{note} (unhealthy at {target.unhealthy_days:g} days)", **common)
    if days <= target.degraded_days:
        return degraded(f"{note} (degraded at {target.degraded_days:g} days)", **common)
    return ok(note, **common)
