"""Plain socket steps shared by the tcp and tls probes: resolve, connect, upgrade to TLS, each timed."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time

from prober.errors import ProbeFailure
from prober.status import Reason


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


async def connect(host: str, port: int, phases: dict[str, float]) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """A TCP connection wrapped in a transport, for probes that go on to TLS."""
    sock = await connect_socket(host, port, phases)
    try:
        return await asyncio.get_running_loop().create_connection(asyncio.Protocol, sock=sock)
    except BaseException:
        sock.close()
        raise


async def start_tls(
    transport: asyncio.Transport,
    protocol: asyncio.Protocol,
    context: ssl.SSLContext,
    server_name: str,
    phases: dict[str, float],
) -> asyncio.Transport:
    started = time.perf_counter()
    tls = await asyncio.get_running_loop().start_tls(transport, protocol, context, server_hostname=server_name)
    if tls is None:
        raise ProbeFailure(Reason.TLS, "TLS handshake did not complete")
    phases["tls"] = time.perf_counter() - started
    return tls
