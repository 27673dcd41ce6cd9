"""Plain socket steps shared by the probes: resolve, connect, TLS handshake, each timed; and the
:class:`Resolver` every name lookup of a probe goes through."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prober.errors import ProbeFailure
from prober.status import Reason


@functools.lru_cache(maxsize=16384)  # asked on every run for the same few hosts
def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


AddrInfo = list[tuple[Any, ...]]
DNS_WORKERS = 64  # lookups at once: names that hang hold a thread each (one per name) until the system gives up


class Resolver:
    """Name lookups for probes, in a thread pool of their own (``prober-dns``), never the event loop's
    default executor, the render pool or the blocking drivers' pool.

    The system resolver (``getaddrinfo``) cannot be cancelled: a name whose server never answers holds a
    thread until the resolver's own timeout, long after the run that asked has timed out. So lookups are
    shared: one lookup per name (and family) at a time, whatever the port, and a run that asks while one
    is under way waits for the same answer. A name that never resolves therefore holds one thread and
    costs its own targets their timeout; other names are looked up by the other threads at once.

    Installed as the event loop's ``getaddrinfo`` (:meth:`install`), so the drivers that resolve through
    the loop (asyncpg, redis-py, pymongo, aiohttp) use it too. Under uvloop the loop resolves its own
    connections in libuv's thread pool, which nothing else shares either."""

    def __init__(self, workers: int = DNS_WORKERS, lookup: Callable[..., AddrInfo] = socket.getaddrinfo) -> None:
        self._workers = workers
        self._lookup = lookup
        self._executor: ThreadPoolExecutor | None = None
        self._flights: dict[tuple[Any, ...], asyncio.Future[AddrInfo]] = {}
        self.lookups = 0  # lookups started (shared ones count once)

    async def getaddrinfo(
        self, host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> AddrInfo:
        if host is None or isinstance(port, str) or (isinstance(host, str) and is_ip(host)):
            # numeric or service-name lookups answer at once: no sharing needed
            return await self._run(host, port, family, type, proto, flags)
        key = (host, family, type, proto, flags)
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._run(host, None, family, type, proto, flags))
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        infos = await asyncio.shield(flight)
        return [_with_port(info, port) for info in infos]

    def _landed(self, key: tuple[Any, ...], flight: asyncio.Future[AddrInfo]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here: every waiter may have gone

    async def _run(self, host: Any, port: Any, family: int, type: int, proto: int, flags: int) -> AddrInfo:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="prober-dns")
        self.lookups += 1
        lookup = functools.partial(self._lookup, host, port, family, type, proto, flags)
        return await asyncio.get_running_loop().run_in_executor(self._executor, lookup)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make this the loop's ``getaddrinfo`` (a loop that does not allow it keeps its own)."""
        try:
            loop.getaddrinfo = self.getaddrinfo  # type: ignore[method-assign]
        except AttributeError:  # uvloop's own Loop class: it resolves in libuv's pool
            pass

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _with_port(info: tuple[Any, ...], port: Any) -> tuple[Any, ...]:
    family, kind, proto, canonical, address = info
    number = int(port) if port is not None else 0
    return (family, kind, proto, canonical, (address[0], number, *address[2:]))


async def resolve(host: str, port: int, phases: dict[str, float]) -> list[str]:
    """The addresses of ``host``; an IP literal is returned as is and costs no lookup."""
    if is_ip(host):
        return [host]
    started = time.perf_counter()
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    phases["dns"] = time.perf_counter() - started
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ProbeFailure(Reason.DNS, f"{host} has no address")
    return addresses


async def connect_socket(host: str, port: int, phases: dict[str, float]) -> socket.socket:
    """A TCP connection (a bare non-blocking socket) to the first address of ``host`` that accepts one.

    For probes that only need the handshake: no transport or protocol is built, so a run costs no
    reader registration and no connection_made/connection_lost callbacks. The caller closes the socket.
    """
    loop = asyncio.get_running_loop()
    last_error: OSError | None = None
    for address in await resolve(host, port, phases):
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            started = time.perf_counter()
            await loop.sock_connect(sock, (address, port))
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        except BaseException:
            sock.close()
            raise
        phases["connect"] = time.perf_counter() - started
        return sock
    assert last_error is not None
    raise last_error


async def _ready(sock: ssl.SSLSocket, want: ssl.SSLError) -> None:
    """Wait until the socket can be read (or written, for SSLWantWriteError)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    writing = isinstance(want, ssl.SSLWantWriteError)
    (loop.add_writer if writing else loop.add_reader)(fd, waiter.set_result, None)
    try:
        await waiter
    finally:
        (loop.remove_writer if writing else loop.remove_reader)(fd)


async def handshake(
    sock: socket.socket, context: ssl.SSLContext, server_name: str, phases: dict[str, float]
) -> ssl.SSLSocket:
    """A TLS handshake on a connected non-blocking socket, driven straight from the event loop.

    OpenSSL reads and writes the socket itself: no transport, no memory BIOs and no copies through
    asyncio's SSL protocol (a third less CPU per handshake than ``start_tls``, see bench/PROFILE.md).
    The socket now belongs to the returned SSLSocket; on failure it is closed.
    """
    started = time.perf_counter()
    try:
        tls = context.wrap_socket(sock, server_hostname=server_name, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as want:
                await _ready(tls, want)
    except BaseException:
        tls.close()
        raise
    phases["tls"] = time.perf_counter() - started
    return tls
