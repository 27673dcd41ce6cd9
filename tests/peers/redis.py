"""Real Redis peers on loopback: redis-server processes (a master, replicas, a TLS server, a cluster
node) and redis-sentinel processes, each on a free port with its data in a temporary directory,
started in the foreground and stopped by the fixture that started them. Plus hostile peers that
speak anything but RESP (an HTTP server, random bytes, a peer that hangs up, one that never answers).

Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import redis
import trustme

from prober.status import Reason
from tests.helpers import free_port, require, wait_for_port
from tests.peers.web import hello_http_server

PASSWORD = "Redis-S3cret-pw"  # the data nodes' requirepass (and masterauth)
SENTINEL_PASSWORD = "Sentinel-S3cret-pw"
MASTER_NAME = "mymaster"


@dataclass
class Process:
    """One redis-server or redis-sentinel process in the foreground."""

    port: int
    directory: Path
    popen: subprocess.Popen[bytes]
    password: str | None
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, password: str | None = None, user: str = "", scheme: str = "redis") -> str:
        secret = self.password if password is None else password
        return f"{scheme}://{user}:{secret}@127.0.0.1:{self.port}" if secret else f"{scheme}://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A synchronous admin client (a fresh connection per call, for test set-up)."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, decode_responses=True, protocol=2, **kwargs
        )

    def call(self, *args: Any) -> Any:
        with self.client() as client:
            return client.execute_command(*args)

    def info(self, section: str = "default") -> dict[str, Any]:
        with self.client() as client:
            found: dict[str, Any] = client.info(section)
            return found

    def freeze(self) -> None:
        os.kill(self.popen.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.popen.pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGCONT)  # a frozen process cannot handle SIGTERM
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def _start(command: list[str], port: int, directory: Path, password: str | None, log: Path) -> Process:
    with log.open("ab") as sink:
        popen = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=directory)
    process = Process(port, directory, popen, password, log)
    deadline = time.monotonic() + 15
    while True:
        try:
            wait_for_port(port, timeout=0.2)
            return process
        except TimeoutError:
            if popen.poll() is not None or time.monotonic() > deadline:
                process.stop()
                raise RuntimeError(f"{command[0]} did not start: {log.read_text(errors='replace')[-2000:]}") from None


@dataclass
class Servers:
    """Starts redis-server / redis-sentinel processes and stops every one of them at the end."""

    base: Path
    started: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)

    def _dir(self, name: str) -> Path:
        path = self.base / f"{name}-{len(self.started)}"
        path.mkdir(parents=True)
        return path

    def server(
        self, *extra: str, password: str | None = PASSWORD, wait_ready: bool = True, directory: Path | None = None
    ) -> Process:
        binary = require("redis-server")
        port = free_port()
        data = directory or self._dir("redis")
        log = self.base / f"redis-{port}.log"
        auth = ["--requirepass", password, "--masterauth", password] if password else []
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", *auth]
        command += ["--save", "", "--appendonly", "no", "--dir", str(data)]
        command += ["--repl-diskless-sync-delay", "0", *extra]  # replicas sync at once, not after 5 s
        process = _start(command, port, data, password, log)
        self.started.append(process)
        if wait_ready:
            _wait(lambda: process.info("persistence").get("loading") == 0, f"redis on {port} ready")
        return process

    def replica(self, master: Process, *extra: str) -> Process:
        replica = self.server("--replicaof", "127.0.0.1", str(master.port), *extra)
        _wait(lambda: replica.info("replication").get("master_link_status") == "up", "replica link up")
        return replica

    def sentinel(self, master: Process, quorum: int, down_after_ms: int) -> Process:
        binary = require("redis-sentinel")
        port = free_port()
        data = self._dir("sentinel")
        conf = data / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {port}",
                    "bind 127.0.0.1",
                    f"dir {data}",
                    f"requirepass {SENTINEL_PASSWORD}",
                    f"sentinel sentinel-pass {SENTINEL_PASSWORD}",
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} {quorum}",
                    f"sentinel auth-pass {MASTER_NAME} {PASSWORD}",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
                    f"sentinel failover-timeout {MASTER_NAME} 6000",
                    "",
                ]
            )
        )
        process = _start([binary, str(conf)], port, data, SENTINEL_PASSWORD, self.base / f"sentinel-{port}.log")
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with suppress(redis.RedisError):
            if condition():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:g}s")
        time.sleep(0.05)


async def wait_async(condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll ``condition`` (a quick synchronous check) without blocking the event loop in between."""
    deadline = time.monotonic() + limit
    while True:
        with suppress(redis.RedisError):
            if condition():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {limit:g}s")
        await asyncio.sleep(0.1)


@dataclass
class SentinelGroup:
    master: Process
    replica: Process
    sentinels: list[Process]
    quorum: int

    def addresses(self) -> list[str]:
        return [s.address for s in self.sentinels]

    def converged(self) -> None:
        """Wait until every Sentinel knows the 2 others and the replica (hello messages, every 2 s)."""

        def ready() -> bool:
            for sentinel in self.sentinels:
                view = sentinel.call("SENTINEL", "MASTER", MASTER_NAME)
                fields = dict(zip(view[::2], view[1::2], strict=True))
                if int(fields["num-other-sentinels"]) < 2 or int(fields["num-slaves"]) < 1:
                    return False
            return True

        _wait(ready, "Sentinels to discover each other and the replica")

    def named_master(self, sentinel: Process) -> str:
        """The master in ``SENTINEL MASTER`` (switched at the end of a failover, unlike
        GET-MASTER-ADDR-BY-NAME, which names the replica being promoted already)."""
        view = sentinel.call("SENTINEL", "MASTER", MASTER_NAME)
        fields = dict(zip(view[::2], view[1::2], strict=True))
        return f"{fields['ip']}:{fields['port']}"


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """One shared master for tests that do not break it."""
    servers = Servers(tmp_path_factory.mktemp("redis-shared"))
    try:
        yield servers.server()
    finally:
        servers.stop_all()


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[Servers]:
    """A factory of servers of the test's own (to stop, freeze, fill or break); all stopped at the end."""
    servers = Servers(tmp_path / "redis")
    try:
        yield servers
    finally:
        servers.stop_all()


@pytest.fixture
def sentinel_group(redis_servers: Servers) -> SentinelGroup:
    """A master, a replica and 3 Sentinels (quorum 2) monitoring the master. Call
    ``converged()`` before a failover: the Sentinels must first find each other and the replica."""
    master = redis_servers.server()
    replica = redis_servers.replica(master, "--replica-priority", "100")
    sentinels = [redis_servers.sentinel(master, quorum=2, down_after_ms=3000) for _ in range(3)]
    group = SentinelGroup(master, replica, sentinels, quorum=2)
    _wait(lambda: all(group.named_master(s) == master.address for s in sentinels), "Sentinels to name the master")
    return group


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Process, TlsFiles]]:
    """A TLS-only redis-server (``--port 0 --tls-port P``) with a certificate from a trustme CA."""
    base = tmp_path_factory.mktemp("redis-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(base / "ca.pem", base / "cert.pem", base / "key.pem", base / "other-ca.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    cert.private_key_pem.write_to_path(str(files.key))
    trustme.CA().cert_pem.write_to_path(str(files.other_ca))
    binary = require("redis-server")
    port = free_port()
    data = base / "data"
    data.mkdir()
    command = [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD]
    command += ["--tls-cert-file", str(files.cert), "--tls-key-file", str(files.key)]
    command += ["--tls-ca-cert-file", str(files.ca), "--tls-auth-clients", "no"]
    command += ["--save", "", "--appendonly", "no", "--dir", str(data)]
    process = _start(command, port, data, PASSWORD, base / "redis.log")
    try:
        yield process, files
    finally:
        process.stop()


# --- hostile peers -----------------------------------------------------------------------------------

Garbage = Literal["http", "random", "close", "hangup-after-command", "silent", "echo-error", "huge-reply"]
# what a redis-speaking kind (redis, bullmq) must make of each: never ok, never an exception of ours
GARBAGE_REASONS: list[tuple[Garbage, set[Reason]]] = [
    ("http", {Reason.PROTOCOL}),
    ("random", {Reason.PROTOCOL, Reason.TIMEOUT}),
    ("close", {Reason.PROTOCOL}),
    ("hangup-after-command", {Reason.PROTOCOL}),
    ("silent", {Reason.TIMEOUT}),
    ("echo-error", {Reason.PROTOCOL}),
]
HUGE_REPLY = 10**12  # what the "huge-reply" peer announces: a bulk string of 10^12 bytes


@dataclass
class GarbagePeer:
    port: int
    connections: int = 0
    sent: int = 0  # bytes of a huge reply actually sent


@asynccontextmanager
async def garbage_peer(mode: Garbage) -> AsyncIterator[GarbagePeer]:
    """A peer on loopback that does not speak RESP, served by the test's own event loop:
    ``http`` a real aiohttp server; ``random`` 4 KiB of seeded random bytes on connect; ``close``
    hangs up at once; ``hangup-after-command`` reads the first command and hangs up without a
    reply; ``silent`` reads and never answers; ``echo-error`` answers the first command with an
    error reply that quotes it, password and all; ``huge-reply`` answers the first command with a bulk
    string announced as 10^12 bytes, and sends it as fast as it is taken."""
    if mode == "http":
        runner, port = await hello_http_server()
        try:
            yield GarbagePeer(port)
        finally:
            await runner.cleanup()
        return

    peer = GarbagePeer(0)
    noise = random.Random(20240611).randbytes(4096)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.connections += 1
        try:
            if mode == "random":
                writer.write(noise)
                await writer.drain()
                await reader.read(65536)
            elif mode == "hangup-after-command":
                await reader.read(65536)
            elif mode == "echo-error":  # an error reply quoting the command it got (password included)
                received = await reader.read(65536)
                words = received.decode("utf-8", "replace").split()
                writer.write(f"-ERR you sent {' '.join(words)}\r\n".encode())
                await writer.drain()
                await reader.read(65536)
            elif mode == "huge-reply":
                await reader.read(65536)
                writer.write(f"${HUGE_REPLY}\r\n".encode())
                piece = bytes(1 << 20)
                while peer.sent < HUGE_REPLY:
                    writer.write(piece)
                    await writer.drain()
                    peer.sent += len(piece)
            elif mode == "silent":
                while await reader.read(65536):
                    pass
        except OSError:
            pass
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    peer.port = int(server.sockets[0].getsockname()[1])
    try:
        yield peer
    finally:
        server.close()
        await server.wait_closed()


def remove_dir(path: Path) -> None:
    shutil.rmtree(path)
