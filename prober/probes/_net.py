"""Plain socket steps shared by the probes: resolve, connect, TLS handshake, each timed."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time

from prober.errors import ProbeFailure
from prober.status import Reason


@functools.lru_cache(maxsize=16384)  # asked on every run for the same few hosts
def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
