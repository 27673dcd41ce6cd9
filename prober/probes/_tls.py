"""Certificate facts shared by the ``tls`` probe and ``https`` URLs of the ``http`` probe.

cryptography is imported on first use, so a config without TLS checks does not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from typing import TYPE_CHECKING, Any

from prober.errors import ProbeFailure
from prober.judge import Observable
from prober.probes._net import connect_socket, handshake

if TYPE_CHECKING:
    from cryptography import x509

SECONDS_PER_DAY = 86400.0

# What a certificate says, as the tls kind observes it (and the http kind, under ``certificate``).
CERTIFICATE: dict[str, Observable] = {
    "days_left": Observable("double", "days until the leaf certificate expires (negative: expired)"),
    "not_after": Observable("string", "its notAfter, ISO 8601"),
    "not_after_timestamp": Observable("double", "its notAfter, Unix seconds"),
    "subject": Observable("string", "the subject's common name (else the whole subject)"),
    "issuer": Observable("string", "the issuer's common name (else the whole issuer)"),
    "sans": Observable("list", "the DNS names and IP addresses it is valid for"),
}


def expiry_note(days_left: float) -> str:
    return f"expired {-days_left:.1f} days ago" if days_left < 0 else f"expires in {days_left:.1f} days"


def _name(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common:
        return str(common[0].value)
    return name.rfc4514_string()


def cert_facts(der: bytes, now: float | None = None) -> dict[str, Any]:
    """Expiry, days left, subject, issuer and SANs of a DER certificate."""
    facts = dict(_parsed(der))
    facts["sans"] = list(facts["sans"])
    now = time.time() if now is None else now
    facts["days_left"] = round((facts["not_after_timestamp"] - now) / SECONDS_PER_DAY, 2)
    return facts


@functools.lru_cache(maxsize=1024)
def _parsed(der: bytes) -> dict[str, Any]:
    """What a certificate says, parsed once per distinct certificate (a target sends the same one run
    after run; parsing costs about 0.15 ms). Callers copy it."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    cert = x509.load_der_x509_certificate(der)
    sans: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        alt: Any = ext.value
        sans = [str(v) for v in alt.get_values_for_type(x509.DNSName)]
        sans += [str(v) for v in alt.get_values_for_type(x509.IPAddress)]
    return {
        "not_after": cert.not_valid_after_utc.isoformat(),
        "not_after_timestamp": cert.not_valid_after_utc.timestamp(),
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "sans": tuple(sans),
    }


def peer_cert_der(ssl_object: Any) -> bytes | None:
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der if isinstance(der, bytes) else None


async def unverified_cert_facts(
    host: str, port: int, server_name: str, context: ssl.SSLContext, within: float
) -> dict[str, Any] | None:
    """Handshake again without verification, only to read the peer's leaf certificate (an expired or
    untrusted certificate must still show its date): its :func:`cert_facts`, or None if even that fails."""
    try:
        async with asyncio.timeout(within):
            sock = await connect_socket(host, port, {})
            tls = await handshake(sock, context, server_name, {})
    except (OSError, TimeoutError, ProbeFailure):  # ssl.SSLError is an OSError
        return None
    with tls:
        der = peer_cert_der(tls)
    return cert_facts(der) if der is not None else None
