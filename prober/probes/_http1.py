"""One HTTP/1.1 exchange on a fresh connection, built from aiohttp's own parts.

The ``http`` probe needs one request per run on a new connection and nothing of a client session:
no pool, cookies, tracing signals or middleware. It uses aiohttp's protocol (``ResponseHandler``, with
aiohttp's C response parser: chunked bodies, decompression, header limits) and aiohttp's request
writer (``StreamWriter``, which rejects header injection) on a socket connected by :mod:`._net`.
Measured in bench/client_choice.py: about 40 % less CPU per request than a ``ClientSession`` with
``force_close`` (see bench/PROFILE.md). Everything here raises what aiohttp, ``ssl`` and ``socket``
raise; :func:`prober.probes._aiohttp.classify` maps it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import StreamReader, encode_basic_auth
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_writer import StreamWriter
from multidict import CIMultiDict
from yarl import URL

from prober.errors import ProbeFailure
from prober.probes._net import connect_socket
from prober.probes._tls import peer_cert_der
from prober.status import Reason

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
DEFAULT_HEADERS: Mapping[str, str] = {
    "User-Agent": "prober",
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "close",
}

TLS_CLOSE_TIMEOUT = 2.0  # seconds a TLS peer gets to answer our close_notify before the socket is dropped
_closing: set[asyncio.Future[None]] = set()  # connections still closing after their run ended

TlsFor = Callable[[], ssl.SSLContext]
"""The target's client TLS context, asked for only when a URL is https (building one loads a CA store)."""


@dataclass(slots=True)
class Answer:
    """The final response of a run, with the timestamps (perf_counter seconds) the phases come from."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    peer_cert: bytes | None
    end: float
    phases: dict[str, float] = field(default_factory=dict)


def _request_headers(url: URL, method: str, headers: Mapping[str, str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict(DEFAULT_HEADERS)
    out["Host"] = url.host_port_subcomponent or ""
    if url.user is not None:
        out["Authorization"] = encode_basic_auth(url.user, url.password or "")
    if method in ("POST", "PUT"):
        out["Content-Length"] = "0"
    out.update(headers)  # the target's own headers win, Host included
    return out


async def _read_capped(payload: StreamReader, max_body: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await payload.read(65536):
        size += len(chunk)
        if size > max_body:
            raise ProbeFailure(Reason.PROTOCOL, f"response body larger than {max_body} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _connect(url: URL, tls: ssl.SSLContext | None, phases: dict[str, float]) -> ResponseHandler:
    loop = asyncio.get_running_loop()
    sock = await connect_socket(url.raw_host or "", url.port or 80, phases)
    started = time.perf_counter()
    try:
        _, protocol = await loop.create_connection(
            lambda: ResponseHandler(loop),
            sock=sock,
            ssl=tls,
            server_hostname=url.raw_host if tls else None,
            ssl_shutdown_timeout=TLS_CLOSE_TIMEOUT if tls else None,
        )
    except BaseException:
        sock.close()
        raise
    if tls is not None:
        phases["tls"] = time.perf_counter() - started
    return protocol


async def exchange(
    url: URL, method: str, headers: Mapping[str, str], tls: ssl.SSLContext | None, max_body: int
) -> tuple[Answer, str | None]:
    """One request and its complete response; also returns the Location header of a redirect."""
    phases: dict[str, float] = {}
    protocol = await _connect(url, tls, phases)
    complete = False
    try:
        connected = time.perf_counter()
        loop = asyncio.get_running_loop()
        protocol.set_response_params(skip_payload=method == "HEAD", read_until_eof=True, auto_decompress=True)
        writer = StreamWriter(protocol, loop)
        await writer.write_headers(
            f"{method} {url.raw_path_qs or '/'} HTTP/1.1", _request_headers(url, method, headers)
        )
        await writer.write_eof()
        message, payload = await protocol.read()
        while 100 <= message.code < 200 and message.code != 101:  # interim answers: the final one follows
            message, payload = await protocol.read()
        headers_at = time.perf_counter()
        body = await _read_capped(payload, max_body)
        end = time.perf_counter()
        phases["request"] = headers_at - connected
        phases["body"] = end - headers_at
        transport = protocol.transport
        der = peer_cert_der(transport.get_extra_info("ssl_object")) if transport is not None else None
        answer = Answer(message.code, message.headers, body, der, end, phases)
        complete = True
        return answer, message.headers.get("Location") if message.code in REDIRECT_CODES else None
    finally:
        _close(protocol, graceful=complete)


def _close(protocol: ResponseHandler, graceful: bool) -> None:
    """After a complete answer, an orderly close (FIN; for TLS a close_notify exchange, which runs on
    after the run and is awaited by :func:`wait_closed` at shutdown). After a failure or a cancelled
    run, at once."""
    if not graceful:
        protocol.abort()
        return
    closed = protocol.closed
    protocol.close()
    if closed is not None and not closed.done():
        _closing.add(closed)
        closed.add_done_callback(_forget)


def _forget(closed: asyncio.Future[None]) -> None:
    _closing.discard(closed)
    if not closed.cancelled():
        closed.exception()  # a reset while closing is nobody's business: retrieved, so never logged


async def wait_closed(within: float) -> None:
    """Let connections that are still closing finish (at shutdown), for at most ``within`` seconds."""
    loop = asyncio.get_running_loop()
    pending = {closed for closed in _closing if closed.get_loop() is loop}
    if pending:
        await asyncio.wait(pending, timeout=within)


def _next_method(status: int, method: str) -> str:
    """RFC 9110 15.4 as browsers and aiohttp apply it: 303 turns into GET, and so do 301/302 after a POST."""
    if method == "HEAD":
        return method
    if status == 303 or (status in (301, 302) and method == "POST"):
        return "GET"
    return method


def _redirect_target(url: URL, location: str) -> URL:
    try:
        target = url.join(URL(location))
    except ValueError:
        raise ProbeFailure(Reason.PROTOCOL, f"redirect to an invalid location {location[:100]!r}") from None
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise ProbeFailure(Reason.PROTOCOL, f"redirect to a non-HTTP location {location[:100]!r}")
    return target


async def fetch(
    url: URL,
    method: str,
    headers: Mapping[str, str],
    tls_for: TlsFor,
    *,
    follow_redirects: bool,
    max_redirects: int,
    max_body: int,
) -> Answer:
    """The answer to ``method url``, following up to ``max_redirects`` redirects if asked to.

    A redirect to another origin (scheme, host or port) drops every configured header: they are all
    secrets (README, ``headers``), a token, an API key or a cookie alike, and never leave the origin they
    were configured for, as browsers and curl drop Authorization and Cookie. A redirect back to the
    first origin does not bring them back."""
    own_headers = dict(headers)
    for _ in range(max_redirects + 1):
        tls = tls_for() if url.scheme == "https" else None
        answer, location = await exchange(url, method, own_headers, tls, max_body)
        if not follow_redirects or location is None:
            return answer
        following = _redirect_target(url, location)
        if following.origin() != url.origin():
            own_headers = {}
        url, method = following, _next_method(answer.status, method)
    raise ProbeFailure(Reason.PROTOCOL, f"too many redirects ({max_redirects} followed)")
