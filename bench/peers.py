"""Delay peers for the accuracy benchmark, run as their own processes (their CPU does not matter).

``python -m bench.peers http PORT DELAY``: an HTTP/1.1 server on 127.0.0.1:PORT that reads a request and
answers ``{"status":"ok"}`` exactly DELAY seconds later (one thread per connection, ``time.sleep``: about
0.1 ms of overshoot, measured and reported on ``/stats``).

``python -m bench.peers tcp DELAY STATS_FILE``: a TCP peer whose *handshake* takes DELAY seconds. The
kernel completes a handshake itself and ``tc netem`` is not available on this kernel, so this peer owns
a tun device: packets to 10.77.0.2 reach this process, which answers each SYN with a SYN-ACK DELAY
seconds later (and a RST to whatever follows the handshake). Connecting to 10.77.0.2:ANY_PORT therefore
takes DELAY plus a few tens of microseconds. The measured SYN->SYN-ACK delays are written to STATS_FILE
on SIGTERM.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import json
import os
import random
import signal
import socket
import socketserver
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

TUN_LOCAL = "10.77.0.1"
TUN_PEER = "10.77.0.2"
BODY = b'{"status":"ok"}'


def _summary(values: list[float], delay: float) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    over = sorted((v - delay) * 1000 for v in values)
    return {
        "count": len(over),
        "overshoot_median_ms": statistics.median(over),
        "overshoot_p99_ms": over[min(len(over) - 1, int(len(over) * 0.99))],
    }


# --- HTTP -------------------------------------------------------------------------------------


def _wait_until(due: float) -> None:
    """Sleep to within a millisecond of ``due``, then spin: a timer alone is up to 1 ms late."""
    rest = due - time.perf_counter() - 0.001
    if rest > 0:
        time.sleep(rest)
    while time.perf_counter() < due:
        pass


class _Delayed:
    """One thread that sends queued items at their due time (heap ordered), spinning the last ms."""

    def __init__(self, send: Callable[[Any], object]) -> None:
        self._send = send
        self._heap: list[tuple[float, int, Any]] = []
        self._cond = threading.Condition()
        self._seq = 0
        self.delays: list[float] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def put(self, due: float, received: float, item: Any) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, (received, item)))
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] - time.perf_counter() > 0.002:
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.perf_counter() - 0.0015)
                due, _, (received, item) = heapq.heappop(self._heap)
            _wait_until(due)
            self._send(item)
            self.delays.append(time.perf_counter() - received)


def http_peer(port: int, delay: float) -> None:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
    ).encode()

    def send(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(head + BODY)
            sock.close()

    sender = _Delayed(send)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            received = time.perf_counter()
            if data.startswith(b"GET /stats"):
                body = json.dumps(_summary(sender.delays, delay)).encode()
                sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                return
            self.server.keep.add(sock)  # type: ignore[attr-defined]
            sender.put(received + delay, received, sock)

        def finish(self) -> None:
            pass

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 1024
        keep: set[socket.socket] = set()

        def shutdown_request(self, request: Any) -> None:
            if request not in self.keep:
                super().shutdown_request(request)
            else:
                self.keep.discard(request)

    with Server(("127.0.0.1", port), Handler) as server:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        server.serve_forever()


# --- TCP over tun -----------------------------------------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _packet(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + tcp


def tcp_peer(delay: float, stats_file: str) -> None:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"benchtun%d", IFF_TUN | IFF_NO_PI))
    name = ifr[:16].rstrip(b"\0").decode()
    subprocess.run(["ip", "addr", "add", TUN_LOCAL, "peer", TUN_PEER, "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)

    def send(packet: bytes) -> None:
        os.write(fd, packet)

    sender = _Delayed(send)

    def stop(*_: object) -> None:
        with open(stats_file, "w") as out:
            json.dump(_summary(list(sender.delays), delay), out)
        os._exit(0)  # the tun device goes away with the process

    signal.signal(signal.SIGTERM, stop)
    print(f"ready {name}", flush=True)
    while True:
        frame = os.read(fd, 65536)
        received = time.perf_counter()
        if len(frame) < 40 or frame[0] >> 4 != 4 or frame[9] != 6:
            continue
        ihl = (frame[0] & 0x0F) * 4
        src, dst = frame[12:16], frame[16:20]
        sport, dport, seq, ack, _off, flags = struct.unpack("!HHIIBB", frame[ihl : ihl + 14])
        if flags & 0x04:  # RST: nothing to answer
            continue
        if flags & 0x02 and not flags & 0x10:  # SYN
            reply = _packet(dst, src, dport, sport, random.getrandbits(32), (seq + 1) & 0xFFFFFFFF, 0x12)
            sender.put(received + delay, received, reply)
        elif flags & 0x01 or len(frame) > ihl + ((frame[ihl + 12] >> 4) * 4):  # FIN or data: reset
            os.write(fd, _packet(dst, src, dport, sport, ack, 0, 0x04))


if __name__ == "__main__":
    if sys.argv[1] == "http":
        http_peer(int(sys.argv[2]), float(sys.argv[3]))
    else:
        tcp_peer(float(sys.argv[2]), sys.argv[3])
