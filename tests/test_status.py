"""The status model: debouncing (Kubernetes probe semantics) and critical/optional aggregation."""

from __future__ import annotations

import math

import pytest

from prober.models import DEFAULT_DURATION_BUCKETS as DURATION_BUCKETS
from prober.probes.tcp import TcpTarget
from prober.status import Board, Reason, Result, State, TargetStatus, overall, unhealthy

OK = Result(State.OK, latency=0.01)
DEGRADED = Result(State.DEGRADED, message="slow", latency=0.5)
DOWN = unhealthy(Reason.REFUSED, "connection refused")
BUG = Result(State.UNKNOWN, Reason.INTERNAL, "internal error")


def run(results: list[Result], failure_threshold: int = 1, success_threshold: int = 1) -> list[State]:
    status = TargetStatus("t", "tcp", critical=True)
    states = []
    for result in results:
        status.record(result, failure_threshold, success_threshold)
        states.append(status.state)
    return states


def test_first_result_is_taken_as_it_is() -> None:
    assert run([DOWN], failure_threshold=3) == [State.UNHEALTHY]
    assert run([DEGRADED], success_threshold=3) == [State.DEGRADED]


def test_failure_threshold() -> None:
    assert run([OK, DOWN, DOWN, DOWN], failure_threshold=3) == [State.OK, State.OK, State.OK, State.UNHEALTHY]
    assert run([OK, DOWN, OK, DOWN, DOWN], failure_threshold=3) == [State.OK] * 5


def test_success_threshold() -> None:
    states = run([DOWN, OK, OK, DEGRADED], success_threshold=3)
    assert states == [State.UNHEALTHY, State.UNHEALTHY, State.UNHEALTHY, State.DEGRADED]


def test_degraded_counts_as_an_answer() -> None:
    assert run([OK, DEGRADED, OK], failure_threshold=2) == [State.OK, State.DEGRADED, State.OK]


def test_internal_error_is_unknown_not_unhealthy() -> None:
    status = TargetStatus("t", "tcp", critical=True)
    status.record(OK, 1, 1)
    status.record(BUG, 1, 1)
    assert status.state is State.UNKNOWN
    assert status.internal_errors_total == 1
    assert status.failures_total[Reason.INTERNAL] == 1


def test_counters_and_histogram() -> None:
    status = TargetStatus("t", "tcp", critical=True)
    for result in (OK, DOWN, Result(State.OK, latency=7.0)):
        status.record(result, 1, 1, now=100.0)
    assert status.probes_total == 3
    assert status.failures_total == {Reason.REFUSED: 1}
    assert status.last_success == 100.0
    buckets = dict(status.histogram.cumulative())
    assert buckets[0.01] == 1 and buckets[10.0] == 2 and buckets[math.inf] == 2  # DOWN had no latency


def tcp(name: str) -> TcpTarget:
    return TcpTarget.model_validate({"name": name, "kind": "tcp", "address": "db:5432"})


def test_new_duration_buckets_restart_every_histogram() -> None:
    board = Board()
    board.apply([tcp("a"), tcp("b")])
    board.targets["a"].record(OK, 1, 1)
    assert board.targets["a"].histogram.bounds == DURATION_BUCKETS
    assert board.set_duration_buckets((0.1, 1.0))
    empty = [(0.1, 0), (1.0, 0), (math.inf, 0)]
    assert [t.histogram.cumulative() for t in board.targets.values()] == [empty, empty]
    assert board.targets["a"].probes_total == 1  # only the histogram starts afresh
    board.targets["a"].record(OK, 1, 1)
    board.apply([tcp("a"), tcp("c")])  # a new target gets the new buckets too
    assert board.targets["c"].histogram.cumulative() == empty
    assert not board.set_duration_buckets((0.1, 1.0))  # the same buckets again: nothing restarts
    assert board.targets["a"].histogram.cumulative() == [(0.1, 1), (1.0, 1), (math.inf, 1)]
    assert board.set_duration_buckets(())
    assert board.targets["a"].histogram.cumulative() == [(math.inf, 0)]
    board.targets["a"].record(OK, 1, 1)
    assert board.targets["a"].histogram.cumulative() == [(math.inf, 1)] and board.targets["a"].histogram.total == 0.01


def targets(*spec: tuple[State, bool]) -> list[TargetStatus]:
    out = []
    for index, (state, critical) in enumerate(spec):
        status = TargetStatus(f"t{index}", "tcp", critical)
        status.state = state
        out.append(status)
    return out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ([], State.UNKNOWN),
        ([(State.UNKNOWN, True)], State.UNKNOWN),
        ([(State.OK, True), (State.OK, False)], State.OK),
        ([(State.OK, True), (State.UNKNOWN, True)], State.OK),
        ([(State.OK, True), (State.DEGRADED, True)], State.DEGRADED),
        ([(State.OK, True), (State.UNHEALTHY, False)], State.DEGRADED),
        ([(State.DEGRADED, False), (State.UNHEALTHY, True)], State.UNHEALTHY),
        ([(State.UNHEALTHY, True), (State.OK, False)], State.UNHEALTHY),
    ],
)
def test_overall(spec: list[tuple[State, bool]], expected: State) -> None:
    assert overall(targets(*spec)) is expected
