"""Resources shared by probe runs: one HTTP client session (for the HTTP APIs of minio and clickhouse;
the http probe makes its own single exchange, see :mod:`._http1`), cached TLS contexts and a small
thread pool for the few drivers that block. Created once per daemon (or per ``prober once``), so a run
allocates no clients or contexts of its own."""

from __future__ import annotations

import asyncio
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp

from prober.models import TargetBase
from prober.probes import _budget, _http1
from prober.probes._kit import Run
from prober.probes._net import Resolver


class ProbeContext:
    """Shared, long-lived probe resources. ``close()`` releases them."""

    def __init__(self, blocking_workers: int = 8) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[tuple[str | None, bool, tuple[str, ...]], ssl.SSLContext] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._blocking_workers = blocking_workers
        self.resolver = Resolver()
        self._loop: asyncio.AbstractEventLoop | None = None

    def begin(self, target: TargetBase) -> Run:
        """A run of ``target`` starts: its deadline and phase timer (see :mod:`._kit`)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self.attach(loop)
        return Run(target.timeout)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Route the loop's name lookups through the probes' resolver, and count the bytes of the
        connections it makes during a run against the run's budget (:mod:`._budget`)."""
        self._loop = loop
        self.resolver.install(loop)
        _budget.install(loop)

    def http_session(self) -> aiohttp.ClientSession:
        """One session for the HTTP APIs the minio and clickhouse probes call. ``force_close``: each run
        opens a fresh TCP connection, so a broken network or a full backlog is seen; no DNS cache for the
        same reason."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                force_close=True, limit=0, use_dns_cache=False, enable_cleanup_closed=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": "prober"},
            )
        return self._session

    def ssl_context(
        self, ca_file: str | None = None, verify: bool = True, alpn: tuple[str, ...] = ()
    ) -> ssl.SSLContext:
        """A client TLS context, built once per (ca_file, verify, alpn) and reused by every run. ``alpn``:
        the protocols offered in the handshake (``("h2",)`` for gRPC, whose servers require it)."""
        key = (ca_file, verify, alpn)
        found = self._ssl.get(key)
        if found is None:
            if verify:
                found = ssl.create_default_context(cafile=ca_file)
            else:
                found = ssl.create_default_context()
                found.check_hostname = False
                found.verify_mode = ssl.CERT_NONE
            if alpn:
                found.set_alpn_protocols(list(alpn))
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
        await _http1.wait_closed(within=_http1.TLS_CLOSE_TIMEOUT)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.resolver.close()
