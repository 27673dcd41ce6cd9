"""Resources shared by probe runs: one HTTP client session, cached TLS contexts and a small thread
pool for the few drivers that block. Created once per daemon (or per ``prober once``), so a run
allocates no clients or contexts of its own."""

from __future__ import annotations

import asyncio
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.connector import Connection

from prober.probes._tls import peer_cert_der


@dataclass(slots=True)
class HttpPhases:
    """Timestamps of one HTTP request, filled in by aiohttp's trace hooks (perf_counter seconds)."""

    start: float = 0.0
    dns_start: float | None = None
    dns_end: float | None = None
    connect_start: float | None = None
    connect_end: float | None = None
    headers_received: float | None = None

    def phases(self, end: float) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.dns_start is not None and self.dns_end is not None:
            out["dns"] = self.dns_end - self.dns_start
        if self.connect_start is not None and self.connect_end is not None:
            out["connect"] = self.connect_end - self.connect_start - out.get("dns", 0.0)
        request_from = self.connect_end or self.start
        if self.headers_received is not None:
            out["request"] = self.headers_received - request_from
            out["body"] = end - self.headers_received
        return out


def _ctx(params: SimpleNamespace) -> HttpPhases | None:
    found = params.trace_request_ctx
    return found if isinstance(found, HttpPhases) else None


async def _on_dns_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (phases := _ctx(ctx)) is not None:
        phases.dns_start = time.perf_counter()


async def _on_dns_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (phases := _ctx(ctx)) is not None:
        phases.dns_end = time.perf_counter()


async def _on_connect_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (phases := _ctx(ctx)) is not None:
        phases.connect_start = time.perf_counter()


async def _on_connect_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (phases := _ctx(ctx)) is not None:
        phases.connect_end = time.perf_counter()


async def _on_request_end(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
    if (phases := _ctx(ctx)) is not None:
        phases.headers_received = time.perf_counter()


class CertResponse(aiohttp.ClientResponse):
    """A response that remembers the peer's leaf certificate (DER), read while the connection was open."""

    peer_cert: bytes | None = None


class CertRequest(aiohttp.ClientRequest):
    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        response = await super().send(conn)
        transport = conn.transport
        if isinstance(response, CertResponse) and transport is not None:
            response.peer_cert = peer_cert_der(transport.get_extra_info("ssl_object"))
        return response


def _trace_config() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_dns_resolvehost_start.append(_on_dns_start)
    trace.on_dns_resolvehost_end.append(_on_dns_end)
    trace.on_connection_create_start.append(_on_connect_start)
    trace.on_connection_create_end.append(_on_connect_end)
    trace.on_request_end.append(_on_request_end)
    return trace


class ProbeContext:
    """Shared, long-lived probe resources. ``close()`` releases them."""

    def __init__(self, blocking_workers: int = 8) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[tuple[str | None, bool], ssl.SSLContext] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._blocking_workers = blocking_workers

    def http_session(self) -> aiohttp.ClientSession:
        """One session for every HTTP probe. ``force_close``: each probe opens a fresh TCP
        connection, so a broken network or a full backlog is seen; no DNS cache for the same reason."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                force_close=True, limit=0, use_dns_cache=False, enable_cleanup_closed=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trace_configs=[_trace_config()],
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": "prober"},
                request_class=CertRequest,
                response_class=CertResponse,
            )
        return self._session

    def ssl_context(self, ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext:
        """A client TLS context, built once per (ca_file, verify) and reused by every run."""
        key = (ca_file, verify)
        found = self._ssl.get(key)
        if found is None:
            if verify:
                found = ssl.create_default_context(cafile=ca_file)
            else:
                found = ssl.create_default_context()
                found.check_hostname = False
                found.verify_mode = ssl.CERT_NONE
            self._ssl[key] = found
        return found

    def forget_tls_contexts(self) -> None:
        """Drop cached TLS contexts (on reload: a CA file may have changed)."""
        self._ssl.clear()

    async def run_blocking(self, func: Any, *args: Any) -> Any:
        """Run a blocking driver call in the shared worker pool, never on the event loop."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._blocking_workers, thread_name_prefix="prober-blocking")
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
