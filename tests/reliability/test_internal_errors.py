"""Bugs are not outages: an exception inside a probe marks the target unknown/internal, is counted,
logs its traceback once per change, and never makes the dependency (or the whole) unhealthy."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import generate_latest

from prober.metrics import make_registry
from prober.probes import PROBES, ProbeContext
from prober.probes.tcp import TcpTarget
from prober.scheduler import Scheduler
from prober.status import Board, Reason, State
from tests.peers.web import Peers


async def broken_probe(target: TcpTarget, ctx: ProbeContext) -> None:
    raise KeyError("a bug of ours")


async def test_broken_probe_is_unknown_not_unhealthy(
    peers: Peers, ctx: ProbeContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    target = TcpTarget(name="db", kind="tcp", address=peers.address("http"))
    board = Board()
    scheduler = Scheduler(board, ctx, max_concurrency=10)
    scheduler.apply((target,))
    caplog.set_level(logging.INFO)

    await scheduler.run_target("db")
    assert board.targets["db"].state is State.OK

    monkeypatch.setitem(PROBES, "tcp", broken_probe)
    for _ in range(3):
        await scheduler.run_target("db")
    status = board.targets["db"]
    assert status.state is State.UNKNOWN
    assert status.last is not None and status.last.reason is Reason.INTERNAL
    assert "internal error: KeyError" in status.last.message
    assert status.internal_errors_total == 3
    assert board.overall() is State.UNKNOWN  # never unhealthy
    tracebacks = [r for r in caplog.records if "internal error in the probe" in r.getMessage()]
    assert len(tracebacks) == 1 and tracebacks[0].exc_info is not None  # once per change, with the traceback

    text = generate_latest(make_registry(board)).decode()
    assert 'prober_internal_errors_total{kind="tcp",target="db"} 3.0' in text
    assert 'prober_status{kind="tcp",status="unknown",target="db"} 1.0' in text
    assert 'prober_status{kind="tcp",status="unhealthy",target="db"} 0.0' in text

    monkeypatch.undo()
    await scheduler.run_target("db")
    assert board.targets["db"].state is State.OK
    monkeypatch.setitem(PROBES, "tcp", broken_probe)
    await scheduler.run_target("db")
    tracebacks = [r for r in caplog.records if "internal error in the probe" in r.getMessage()]
    assert len(tracebacks) == 2  # a new change, logged again
    scheduler.shutdown()
