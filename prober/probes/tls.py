"""``tls``: handshake, verify chain and hostname, and judge the leaf certificate's expiry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from prober.errors import ProbeFailure, Words, driver_errors
from prober.judge import Observable, Observation, Rule, degraded_if, unhealthy_if
from prober.models import Address, ReadableFile, TargetBase, split_address
from prober.probes import _net
from prober.probes._context import ProbeContext
from prober.probes._kit import Run
from prober.probes._tls import CERTIFICATE, cert_facts, expiry_note, peer_cert_der, unverified_cert_facts
from prober.status import Reason

# not counted: the handshake runs on a bare socket, and OpenSSL bounds certificate chains (100 KiB)
BYTE_BUDGET = 1 * 2**20

Days = Annotated[float, Field(ge=0)]


class TlsTarget(TargetBase):
    kind: Literal["tls"]
    address: Address
    server_name: str | None = None
    ca_file: ReadableFile | None = None
    degraded_days: Days = 14
    unhealthy_days: Days = 0

    def where(self) -> str:
        return self.address if self.server_name is None else f"{self.address} ({self.server_name})"


MODEL = TlsTarget

OBSERVES: dict[str, Observable] = {
    **CERTIFICATE,
    "tls_version": Observable("string", "the negotiated protocol version (TLSv1.2, TLSv1.3)"),
    "certificate": Observable("map", "the same certificate facts as one map (as http has them)", shown=False),
}


def _too_close(target: TlsTarget, values: Mapping[str, Any]) -> str | None:
    if values["days_left"] > target.unhealthy_days:
        return None
    return f"certificate {expiry_note(values['days_left'])} (unhealthy at {target.unhealthy_days:g} days)"


def _close(target: TlsTarget, values: Mapping[str, Any]) -> str | None:
    if values["days_left"] > target.degraded_days:
        return None
    return f"certificate {expiry_note(values['days_left'])} (degraded at {target.degraded_days:g} days)"


RULES: tuple[Rule, ...] = (unhealthy_if(_too_close, Reason.TLS), degraded_if(_close))


WORDS: tuple[Words, ...] = ()  # no driver words to read: exception types say it all


def classify(_exc: BaseException) -> ProbeFailure | None:
    return None  # sockets and ssl: the shared mapping covers everything


async def _add_unverified_cert(
    failure: ProbeFailure, run: Run, host: str, port: int, server_name: str, ctx: ProbeContext
) -> None:
    """The handshake failed: read the certificate without verifying it, so its expiry is still known."""
    facts = await unverified_cert_facts(host, port, server_name, ctx.ssl_context(verify=False), run.left())
    if facts is not None:
        failure.details = facts
        failure.gauges = {"tls_cert_not_after_timestamp_seconds": facts["not_after_timestamp"]}
        failure.message = f"{failure.message} (certificate {expiry_note(facts['days_left'])})"


async def probe(target: TlsTarget, ctx: ProbeContext) -> Observation:
    host, port = split_address(target.address)
    server_name = target.server_name or host
    run = ctx.begin(target)
    with driver_errors(classify):
        sock = await _net.connect_socket(host, port, run.phases)
    try:
        with driver_errors(classify):
            tls = await _net.handshake(sock, ctx.ssl_context(target.ca_file), server_name, run.phases)
    except ProbeFailure as failure:
        if failure.reason is Reason.TLS:
            await _add_unverified_cert(failure, run, host, port, server_name, ctx)
        raise
    with tls:
        der = peer_cert_der(tls)
        version = tls.version()
    if der is None:
        raise ProbeFailure(Reason.TLS, "the server sent no certificate")
    facts = cert_facts(der)
    return Observation(
        {**facts, "tls_version": version, "certificate": dict(facts)},
        summary=f"certificate {expiry_note(facts['days_left'])}",
        phases=run.phases,
        latency=sum(run.phases.values()),
        gauges={"tls_cert_not_after_timestamp_seconds": facts["not_after_timestamp"]},
    )
