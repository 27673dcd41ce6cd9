"""Isolation: hung peers cost one timeout each and never delay healthy targets; max_concurrency bounds
open sockets, and waiting for it is measured and counted, never silent."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from prober.metrics import LAG_BUCKETS
from prober.models import TargetBase
from prober.probes import ProbeContext
from prober.probes.http import HttpTarget
from prober.probes.postgres import PostgresTarget
from prober.probes.tcp import TcpTarget
from prober.probes.tls import TlsTarget
from prober.scheduler import Scheduler
from prober.status import Board, Histogram, Reason
from tests.helpers import client_sockets
from tests.peers.postgres import PgServer, pg_scratch_fixture  # noqa: F401  (registers pg_scratch)
from tests.peers.web import Peers


@pytest.fixture
def full_backlog() -> Iterator[str]:
    """A port whose accept queue is full: new connections hang in SYN-SENT."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
        fillers.append(client)
    yield f"127.0.0.1:{port}"
    for client in fillers:
        client.close()
    server.close()


def quantile(histogram: Histogram, q: float) -> float:
    """The upper bound of the bucket holding the q-quantile."""
    buckets = histogram.cumulative()
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= q * total:
            return float(bound)
    return float("inf")


def targets(peers: Peers, backlog: str, frozen_dsn: str) -> tuple[list[TargetBase], list[TargetBase]]:
    timing = {"interval": "1s", "timeout": "500ms"}
    healthy: list[TargetBase] = [
        HttpTarget.model_validate({"name": f"ok{i}", "kind": "http", "url": peers.url("/plain"), **timing})
        for i in range(100)
    ]
    hung: list[TargetBase] = []
    for i in range(100):
        name, pick = f"hang{i}", i % 10
        if pick == 9:  # a SIGSTOPped PostgreSQL
            hung.append(PostgresTarget.model_validate({"name": name, "kind": "postgres", "dsn": frozen_dsn, **timing}))
        elif pick in (0, 1, 2):
            hung.append(
                HttpTarget.model_validate(
                    {"name": name, "kind": "http", "url": f"http://{peers.address('hang')}/", **timing}
                )
            )
        elif pick in (3, 4, 5):
            hung.append(
                TlsTarget.model_validate({"name": name, "kind": "tls", "address": peers.address("tls-hang"), **timing})
            )
        else:
            hung.append(TcpTarget.model_validate({"name": name, "kind": "tcp", "address": backlog, **timing}))
    return healthy, hung


async def test_hung_half_does_not_delay_the_healthy_half(
    peers: Peers, ctx: ProbeContext, full_backlog: str, pg_scratch: PgServer
) -> None:
    pg_scratch.freeze()
    healthy, hung = targets(peers, full_backlog, pg_scratch.dsn("app"))
    board = Board(LAG_BUCKETS)
    scheduler = Scheduler(board, ctx, max_concurrency=500)
    scheduler.apply((*healthy, *hung))
    scheduler.start()
    await asyncio.sleep(6.0)
    scheduler.shutdown()
    await asyncio.sleep(0.1)
    pg_scratch.thaw()
    runs = [board.targets[t.name].probes_total for t in healthy]
    for target in hung:
        last = board.targets[target.name].last
        assert last is not None and last.reason is Reason.TIMEOUT, (target.name, last)
        # ended at the timeout: a driver deadline may end it a little before (postgres: 95 % of it)
        assert last.latency is not None and 0.45 <= last.latency < 0.75, (target.name, last.latency)
    assert min(runs) >= 5, runs  # every interval, no run missed
    assert sum(board.targets[t.name].skipped_runs_total for t in (*healthy, *hung)) == 0
    p99 = quantile(board.scheduler_lag, 0.99)
    print(
        f"\nisolation: 100 healthy + 100 hung targets, runs per healthy target {min(runs)}..{max(runs)}, "
        f"start lag p99 <= {p99 * 1000:.0f} ms (bucket bound)"
    )
    assert p99 <= 0.25  # generous: the goal is 100 ms; the figure is printed


async def test_max_concurrency_bounds_sockets_and_waits_are_measured(peers: Peers, ctx: ProbeContext) -> None:
    limit = 5
    hung = [
        HttpTarget.model_validate(
            {
                "name": f"h{i}",
                "kind": "http",
                "url": f"http://{peers.address('hang')}/",
                "interval": "1s",
                "timeout": "500ms",
            }
        )
        for i in range(20)
    ]
    board = Board(LAG_BUCKETS)
    scheduler = Scheduler(board, ctx, max_concurrency=limit)
    port = peers.ports["hang"]
    scheduler.apply(tuple(hung))
    scheduler.start()
    peak = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 4.0
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        peak = max(peak, client_sockets(port))
    scheduler.shutdown()
    await asyncio.sleep(0.1)
    assert 0 < peak <= limit, peak
    assert quantile(board.scheduler_lag, 0.99) >= 0.5  # runs waited for a slot, and the wait shows
    assert all(set(board.targets[t.name].failures_total) <= {Reason.TIMEOUT} for t in hung)
    skipped = sum(board.targets[t.name].skipped_runs_total for t in hung)
    ran = sum(board.targets[t.name].probes_total for t in hung)
    assert skipped > 0 and ran > 0  # over capacity: skipped runs are counted, not silent
    print(f"\nmax_concurrency={limit}: 20 hung targets, peak open sockets {peak}, runs {ran}, skipped {skipped}")
