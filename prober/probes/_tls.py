"""Certificate facts shared by the ``tls`` probe and ``https`` URLs of the ``http`` probe.

cryptography is imported on first use, so a config without TLS checks does not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography import x509

SECONDS_PER_DAY = 86400.0


def _name(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common:
        return str(common[0].value)
    return name.rfc4514_string()


def cert_facts(der: bytes, now: float | None = None) -> dict[str, Any]:
    """Expiry, days left, subject, issuer and SANs of a DER certificate."""
    from cryptography import x509
    from cryptography.x509.oid import ExtensionOID

    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc.timestamp()
    now = time.time() if now is None else now
    sans: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        alt: Any = ext.value
        sans = [str(v) for v in alt.get_values_for_type(x509.DNSName)]
        sans += [str(v) for v in alt.get_values_for_type(x509.IPAddress)]
    return {
        "not_after": cert.not_valid_after_utc.isoformat(),
        "not_after_timestamp": not_after,
        "days_left": round((not_after - now) / SECONDS_PER_DAY, 2),
        "subject": _name(cert.subject),
        "issuer": _name(cert.issuer),
        "sans": sans,
    }


def peer_cert_der(ssl_object: Any) -> bytes | None:
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der if isinstance(der, bytes) else None


async def fetch_unverified_cert(
    host: str, port: int, server_name: str, context: ssl.SSLContext, within: float
) -> bytes | None:
    """Handshake again without verification, only to read the peer's leaf certificate (an expired or
    untrusted certificate must still show its date). Returns None if even that fails."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            transport, _ = await loop.create_connection(
                asyncio.Protocol, host, port, ssl=context, server_hostname=server_name
            )
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    try:
        return peer_cert_der(transport.get_extra_info("ssl_object"))
    finally:
        transport.abort()
