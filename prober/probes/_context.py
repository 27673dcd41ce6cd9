"""Resources shared by probe runs: one HTTP client session (for the HTTP APIs of minio and clickhouse;
the http probe makes its own single exchange, see :mod:`._http1`), cached TLS contexts, a small
thread pool for the few drivers that block, and each target's memory of its previous run (the few kinds
that compare runs: bullmq's ``failed_delta``). Created once per daemon (or per ``prober once``), so a run
allocates no clients or contexts of its own."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp

from prober.models import TargetBase
from prober.probes import _budget, _http1
from prober.probes._kit import Run
from prober.probes._net import Resolver


def _same(before: TargetBase, now: TargetBase) -> bool:
    """The same target config (a reload makes new objects; conditions compare by their text)."""
    if before is now:
        return True
    return type(before) is type(now) and before.model_dump(mode="json") == now.model_dump(mode="json")


class ProbeContext:
    """Shared, long-lived probe resources. ``close()`` releases them."""

    def __init__(self, blocking_workers: int = 8) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._ssl: dict[tuple[str | None, bool, tuple[str, ...]], ssl.SSLContext] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._blocking_workers = blocking_workers
        self.resolver = Resolver()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._memory: dict[str, tuple[TargetBase, dict[str, Any]]] = {}

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

    def memory(self, target: TargetBase) -> dict[str, Any]:
        """The target's memory of its previous runs: a dict the kind fills as it likes, kept in this process
        only. It starts empty on the first run, and again whenever the target's config changed (any field:
        a memory of another queue or prefix would compare the wrong things); :meth:`retain` drops the
        memories of targets a reload removed."""
        found = self._memory.get(target.name)
        if found is None or not _same(found[0], target):
            found = self._memory[target.name] = (target, {})
        return found[1]

    def retain(self, targets: Iterable[TargetBase]) -> None:
        """Keep only the memories of these targets, as they are configured now (a reload)."""
        current = {target.name: target for target in targets}
        self._memory = {
            name: (current[name], memory)  # the new object: the next run's identity check is enough
            for name, (target, memory) in self._memory.items()
            if name in current and _same(target, current[name])
        }

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
