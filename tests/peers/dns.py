"""A real DNS server on loopback: Debian's dnsmasq, answering from a hosts file and a conf file the tests
write and change (SIGHUP rereads the hosts file), authoritative for ``zone.test``; plus the UDP peers no
dnsmasq configuration makes: one that answers SERVFAIL, one that sends garbage, one that never answers.

Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from tests.helpers import free_port, require

ZONE = "zone.test"
LONG_TXT = "long.zone.test"  # more than 512 bytes of TXT: truncated over UDP without EDNS
HOSTS = f"127.0.0.10 app.{ZONE}\n::10 app.{ZONE}\n"

AUTHORITATIVE = f"""
auth-server=ns1.{ZONE},127.0.0.1
auth-zone={ZONE}
auth-ttl=300
"""
CONF = f"""
local=/{ZONE}/
local-ttl=60
mx-host={ZONE},mail.{ZONE},10
txt-record={ZONE},"v=spf1 -all"
txt-record={LONG_TXT},{",".join(f'"{"t" * 60}{i}"' for i in range(12))}
srv-host=_http._tcp.{ZONE},app.{ZONE},8080,0,5
cname=www.{ZONE},app.{ZONE}
"""


class Dnsmasq:
    """``dnsmasq --no-daemon`` on a free loopback port (UDP and TCP), answering from ``hosts``, authoritative
    for ``zone.test`` (and refusing other names); or, with ``forward_to``, a caching forwarder of
    ``zone.test`` to the dnsmasq on that port."""

    def __init__(self, directory: Path, forward_to: int | None = None) -> None:
        self.directory = directory
        self.hosts = directory / "hosts"
        self.hosts.write_text(HOSTS if forward_to is None else "")
        conf = directory / "dnsmasq.conf"
        conf.write_text(CONF + AUTHORITATIVE if forward_to is None else f"server=/{ZONE}/127.0.0.1#{forward_to}\n")
        self.port = free_port()
        self.log = directory / "dnsmasq.log"
        argv = [require("dnsmasq"), "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1"]
        argv += ["--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts}"]
        argv += [f"--conf-file={conf}", "--user=root", "--pid-file=", "--log-facility=-"]
        with self.log.open("ab") as sink:
            self.popen = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        self._wait_answering()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ask(self, name: str, rdtype: str = "A") -> dns.message.Message:
        import dns.query

        return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", timeout=1, port=self.port)

    def _wait_answering(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.ask(f"app.{ZONE}")
                return
            except Exception as exc:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    said = self.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"dnsmasq did not start: {said}") from exc
                time.sleep(0.05)

    def set_hosts(self, text: str) -> None:
        """New host records, reread at once (SIGHUP), waited for until dnsmasq answers from them."""
        self.hosts.write_text(text)
        os.kill(self.popen.pid, signal.SIGHUP)
        first = text.split()
        deadline = time.monotonic() + 5
        while first and time.monotonic() < deadline:
            answer = self.ask(first[1])
            if any(first[0] in str(rrset) for rrset in answer.answer):
                return
            time.sleep(0.05)

    def freeze(self) -> None:
        os.kill(self.popen.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.popen.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.popen.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


class UdpPeer:
    """A UDP server in a thread whose answer to each datagram is ``answer(datagram)`` (None: no answer)."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.answer = answer
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while self.running:
            try:
                datagram, source = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self.answer(datagram)
            if reply is not None:
                self.sock.sendto(reply, source)

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


def servfail(datagram: bytes) -> bytes:
    response = dns.message.make_response(dns.message.from_wire(datagram))
    response.set_rcode(dns.rcode.SERVFAIL)
    return response.to_wire()


def garbage(datagram: bytes) -> bytes:
    return datagram[:2] + bytes(range(256))  # the query's id, then noise


@pytest.fixture(scope="module")
def dnsmasq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dnsmasq]:
    server = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def dnsmasq_forwarder(tmp_path_factory: pytest.TempPathFactory, dnsmasq: Dnsmasq) -> Iterator[Dnsmasq]:
    server = Dnsmasq(tmp_path_factory.mktemp("dnsmasq-forwarder"), forward_to=dnsmasq.port)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def udp_peers() -> Iterator[dict[str, UdpPeer]]:
    peers = {"servfail": UdpPeer(servfail), "garbage": UdpPeer(garbage), "silent": UdpPeer(lambda _d: None)}
    yield peers
    for peer in peers.values():
        peer.stop()
