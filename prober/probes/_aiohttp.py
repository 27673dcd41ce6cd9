"""aiohttp's client exceptions mapped to the fixed reasons: the one mapping for every kind whose traffic
goes through aiohttp: the http probe's exchange (aiohttp's protocol and parser, :mod:`._http1`) and the
HTTP parts of minio and clickhouse (aiohttp's client session)."""

from __future__ import annotations

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

from prober.errors import ProbeFailure, classify_os_error, describe, shorten
from prober.status import Reason


def classify(exc: BaseException) -> ProbeFailure | None:
    if isinstance(exc, TimeoutError):  # ServerTimeoutError, ConnectionTimeoutError: a timeout of the client's own
        return ProbeFailure(Reason.TIMEOUT, "timed out")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ProbeFailure(Reason.DNS, f"name resolution failed: {describe(exc.os_error)}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ProbeFailure(Reason.TLS, f"certificate verification failed: {describe(exc.certificate_error)}")
    if isinstance(exc, aiohttp.ClientSSLError):
        return ProbeFailure(Reason.TLS, f"TLS error: {describe(exc)}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return classify_os_error(exc.os_error) or ProbeFailure(Reason.REFUSED, describe(exc))
    if isinstance(exc, aiohttp.ClientOSError):  # a reset or broken pipe after connecting
        return classify_os_error(exc) or ProbeFailure(Reason.PROTOCOL, describe(exc))
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ProbeFailure(Reason.PROTOCOL, f"too many redirects ({len(exc.history)} followed)")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ProbeFailure(Reason.PROTOCOL, "server closed the connection without an answer")
    if isinstance(exc, aiohttp.ClientResponseError):  # unparsable status line, oversized header, ...
        said = shorten(str(exc.message), 120) or describe(exc)  # a parser's words can span lines
        return ProbeFailure(Reason.PROTOCOL, f"invalid HTTP response: {said}")
    if isinstance(exc, HttpProcessingError):  # from aiohttp's parser, as the http probe's exchange meets it
        said = shorten(str(exc.message), 120) or type(exc).__name__
        return ProbeFailure(Reason.PROTOCOL, f"invalid HTTP response: {said}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ProbeFailure(Reason.PROTOCOL, f"invalid response body: {describe(exc)}")
    if isinstance(exc, aiohttp.ClientError):
        return ProbeFailure(Reason.PROTOCOL, describe(exc))
    return None
