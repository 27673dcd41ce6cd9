"""The daemon's own HTTP surface under hostile clients (issue table rows: concurrent scrapes and /status
loops, clients that never read, slowloris and idle connections, malformed requests, a non-UTF-8
Authorization header, a bad --listen). The server is the daemon's own (``prober.server.serve``), run in
the test's event loop against raw sockets; timed figures are in bench/RESULTS-attacks.md, not here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from prober.metrics import ProberRegistry
from prober.models import ServerConfig
from prober.server import HELD_BODIES, Api, Listening, serve
from prober.status import Board, Result, State, TargetStatus
from tests.daemon import Daemon
from tests.helpers import run_cli


class BigRegistry(ProberRegistry):
    """A registry whose /metrics body is ``size`` bytes; counts its renders."""

    def __init__(self, board: Board, size: int) -> None:
        super().__init__(board)
        self.size = size
        self.renders = 0

    def render(self, openmetrics: bool) -> bytes:
        self.renders += 1
        return b"#" * (self.size - 1) + b"\n"


def filled_board(targets: int = 50) -> Board:
    board = Board()
    for index in range(targets):
        status = TargetStatus(f"t{index}", "tcp", True, interval=15.0)
        status.record(Result(State.OK, latency=0.001), 1, 1)
        board.targets[status.name] = status
    return board


@contextlib.asynccontextmanager
async def surface(size: int = 1000, **settings: object) -> AsyncIterator[tuple[Api, BigRegistry, Listening]]:
    board = filled_board()
    registry = BigRegistry(board, size)

    async def no_reload() -> list[str]:
        return []

    api = Api(board, registry, ServerConfig.model_validate(settings), no_reload, lambda: None)
    listening = await serve(api, "127.0.0.1", 0, shutdown_timeout=1.0)
    try:
        yield api, registry, listening
    finally:
        await listening.close()
        api.renders.close()


async def get(port: int, path: str, headers: bytes = b"") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode() + headers + b"\r\n")
        data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


async def test_concurrent_scrapes_share_one_render() -> None:
    from prober.server import SENDING, WAITING

    async with surface(size=200_000) as (api, registry, listening):
        answers = await asyncio.gather(*(get(listening.port, "/metrics") for _ in range(SENDING + WAITING)))
        assert {status for status, _ in answers} == {200}
        assert all(len(body) == 200_000 for _, body in answers)
        assert registry.renders <= 3  # 80 scrapes within a second: one render, shared (a few under load)
        events = api.board.http_events
        assert events["body_rendered"] == registry.renders
        assert events.get("body_shared", 0) + events.get("body_reused", 0) == SENDING + WAITING - registry.renders


async def test_scrapes_past_the_queue_get_503_at_once_and_status_never_does() -> None:
    """/metrics: SENDING bodies written at once, WAITING more waiting, a 503 at once for the rest (what
    cannot be served within bounds is refused, not queued). /status, the readiness gate, is never
    refused for being busy."""
    from prober.server import SENDING, WAITING

    async with surface(size=4 * 2**20) as (api, _registry, listening):
        scrapes = [get(listening.port, "/metrics") for _ in range(SENDING + WAITING + 40)]
        statuses = [get(listening.port, "/status") for _ in range(40)]
        answers = await asyncio.gather(*scrapes, *statuses)
        scraped, status = answers[: len(scrapes)], answers[len(scrapes) :]
        codes = [code for code, _ in scraped]
        assert codes.count(503) >= 40 and codes.count(200) >= SENDING
        assert {code for code, _ in status} == {200}
        assert api.board.http_events["send_queue_full"] == codes.count(503)


async def test_status_loops_share_one_render() -> None:
    async with surface() as (api, _registry, listening):
        answers = await asyncio.gather(*(get(listening.port, "/status") for _ in range(100)))
        assert {status for status, _ in answers} == {200}
        assert len({body for _, body in answers}) <= 3
        assert api.board.http_events["body_rendered"] <= 3


async def test_a_reused_body_is_rendered_again_after_render_reuse() -> None:
    async with surface(render_reuse="100ms") as (_api, registry, listening):
        await get(listening.port, "/metrics")
        await get(listening.port, "/metrics")
        assert registry.renders == 1
        await asyncio.sleep(0.15)
        await get(listening.port, "/metrics")
        assert registry.renders == 2


async def test_a_body_past_render_reuse_is_not_kept_between_scrapes() -> None:
    """A /metrics body of 10,000 targets is 16 MB: once its reuse time is over and nobody is reading it,
    the daemon lets it go instead of holding it until the next scrape."""
    async with surface(size=2**20, render_reuse="100ms") as (api, _registry, listening):
        await get(listening.port, "/metrics")
        assert len(api.renders._fresh) == 1
        await asyncio.sleep(0.2)
        assert api.renders._fresh == {}


async def test_a_render_that_takes_too_long_is_a_503_not_a_queue() -> None:
    async with surface(render_timeout="200ms") as (api, registry, listening):
        gate = asyncio.Event()
        loop = asyncio.get_running_loop()

        def slow(openmetrics: bool) -> bytes:
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(5)
            return b"late\n"

        registry.render = slow  # type: ignore[method-assign]
        answers = await asyncio.gather(*(get(listening.port, "/metrics") for _ in range(20)))
        gate.set()
        assert {status for status, _ in answers} == {503}
        assert api.board.http_events["body_rendered"] == 1  # twenty waiting requests, one render
        # each refusal counted with its cause: most waited for the render; on a loaded machine some time out
        # waiting for their turn to be sent first
        events = api.board.http_events
        refused = events["render_wait_timeout"] + events.get("send_wait_timeout", 0) + events.get("send_queue_full", 0)
        assert refused == 20 and events["render_wait_timeout"] >= 1, events


async def test_clients_that_never_read_hold_no_copy_of_the_body_and_are_dropped() -> None:
    """40 clients ask for a 32 MiB /metrics and never read: written in 64 KiB pieces, each waiting for the
    client, a slow reader holds a piece, not a copy (before: 40 copies, about 1.2 GB); each is dropped at
    write_timeout."""
    size = 32 * 2**20
    async with surface(size=size, write_timeout="1500ms") as (api, registry, listening):
        registry.render(False)  # the first render's own allocations out of the measurement
        registry.renders = 0
        before = rss_mb()
        sockets = []
        for _ in range(40):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", listening.port))
            sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sockets.append(sock)
        await asyncio.sleep(1.0)
        held = rss_mb() - before
        assert held < 200, f"{held:.0f} MB held by 40 clients that do not read a {size >> 20} MiB body"
        deadline = asyncio.get_running_loop().time() + 10
        while api.board.http_events.get("slow_reader_dropped", 0) < 40:
            assert asyncio.get_running_loop().time() < deadline, api.board.http_events
            await asyncio.sleep(0.1)
        assert registry.renders <= HELD_BODIES + 1  # slow readers never hold more bodies than that
        for sock in sockets:
            sock.close()


async def test_idle_and_slowloris_connections_are_closed_after_idle_timeout() -> None:
    async with surface(idle_timeout="500ms") as (_api, _registry, listening):
        idle = socket.create_connection(("127.0.0.1", listening.port))
        slow = socket.create_connection(("127.0.0.1", listening.port))
        slow.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")  # a head never finished
        loop = asyncio.get_running_loop()
        for sock in (idle, slow):
            sock.setblocking(False)
        started = loop.time()
        for sock in (idle, slow):
            assert await asyncio.wait_for(loop.sock_recv(sock, 100), 5) == b""  # closed by the server
        assert loop.time() - started < 3
        idle.close()
        slow.close()


async def test_over_the_cap_the_oldest_idle_connection_makes_room() -> None:
    async with surface(max_connections=20) as (api, _registry, listening):
        loop = asyncio.get_running_loop()
        idle = []
        for _ in range(20):
            sock = socket.socket()
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", listening.port))
            idle.append(sock)
        await asyncio.sleep(0.1)
        # the 21st (a kubelet's /healthz) is served; the oldest idle connection was closed for it
        assert (await get(listening.port, "/healthz"))[0] == 200
        assert api.board.http_events["idle_connection_closed"] >= 1
        assert await asyncio.wait_for(loop.sock_recv(idle[0], 100), 5) == b""
        assert api.connections is not None and api.connections.open() <= 20
        for sock in idle:
            sock.close()


async def test_over_the_cap_with_every_connection_busy_a_newcomer_gets_503() -> None:
    size = 32 * 2**20
    async with surface(size=size, max_connections=5, write_timeout="5s") as (api, _registry, listening):
        loop = asyncio.get_running_loop()
        busy = []
        for _ in range(5):  # five slow readers of a big body: busy until write_timeout
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", listening.port))
            sock.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            busy.append(sock)
        await asyncio.sleep(0.3)
        status, body = await get(listening.port, "/healthz")
        assert status == 503 and b"too many connections" in body
        assert api.board.http_events["connection_refused"] == 1
        for sock in busy:
            sock.close()


async def test_malformed_requests_get_400_and_at_most_a_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="prober.server")
    async with surface() as (api, _registry, listening):
        for _ in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", listening.port)
            writer.write(b"GET /status HTTP/1.1\r\nHost: x\r\nBad Header\x00: y\r\n\r\n")
            answer = await reader.read()
            writer.close()
            assert answer.split(b" ", 2)[1] == b"400", answer
        assert api.board.http_events["malformed_request"] == 200
    lines = [r for r in caplog.records if r.name == "prober.server"]
    assert len(lines) <= 2  # one line per 10 s, with a count
    assert all(r.levelno == logging.DEBUG and r.exc_info is None and r.exc_text is None for r in lines)
    assert all("\n" not in r.getMessage() for r in lines)


async def test_a_non_utf8_byte_in_authorization_is_a_401(caplog: pytest.LogCaptureFixture) -> None:
    async with surface(bearer_token="tok-123456") as (_api, _registry, listening):
        status, _ = await get(listening.port, "/status", b"Authorization: Bearer \xff\xfe\r\n")
        assert status == 401
        status, _ = await get(listening.port, "/status", b"Authorization: Bearer tok-123456\r\n")
        assert status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999", "127.0.0.1:", ":::"])
def test_a_bad_listen_is_a_one_line_error_with_exit_2(tmp_path: Path, listen: str) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text("targets:\n  - {name: t, kind: tcp, address: '127.0.0.1:1'}\n")
    done = run_cli("run", "-c", str(path), "--listen", listen)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"--listen: expected host:port (or [ipv6]:port), got {listen!r}"], (
        done.stderr
    )


# --- hostile configs at reload ---------------------------------------------------------------------

INVALID = Path(__file__).resolve().parent.parent / "configs" / "invalid"


@pytest.mark.parametrize(
    "name", ["no-targets.yaml", "billion-laughs.yaml", "nested-too-deep.yaml", "huge-integer.yaml"]
)
def test_a_hostile_config_at_reload_is_a_400_and_keeps_the_old_one(tmp_path: Path, name: str) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text(
        "server: {enable_reload_endpoint: true}\ndefaults: {interval: 1s, timeout: 500ms}\n"
        "targets:\n  - {name: closed, kind: tcp, critical: false, address: '127.0.0.1:1'}\n"
    )
    daemon = Daemon(path)
    try:
        daemon.wait_until(lambda: daemon.get("/readyz")[0] == 200, what="first result")
        path.write_text((INVALID / name).read_text())
        status, _, body = daemon.request("/-/reload", method="POST")
        assert status == 400, body
        assert str(path).encode() in body
        assert b"prober_config_last_reload_successful 0.0" in daemon.get("/metrics")[1]
        assert set(daemon.status()[1]["checks"]) == {"closed"}
        assert "Traceback" not in daemon.log()
    finally:
        daemon.stop()
