"""The in-memory history: buckets, uptimes over their windows, transitions, bounds and target changes."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from prober.history import MESSAGE_BUDGET, TRANSITIONS, History
from prober.status import Reason, Result, State

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 900  # on a quarter-hour boundary


@dataclass(frozen=True)
class Target:
    name: str
    kind: str = "tcp"


def run(state: State, latency: float = 0.01, message: str = "", reason: Reason | None = None) -> Result:
    if state is State.UNHEALTHY and reason is None:
        reason = Reason.REFUSED
    return Result(state, reason, message or state.value, latency=latency)


def fresh(*names: str) -> History:
    history = History()
    history.apply([Target(n) for n in names])
    return history


def test_uptime_counts_reached_runs_and_ignores_the_probers_own_failures() -> None:
    history = fresh("a")
    for i in range(3):
        history.record("a", run(State.OK), State.OK, State.OK, T0 + i)
    history.record("a", run(State.DEGRADED), State.DEGRADED, State.OK, T0 + 3)
    history.record("a", run(State.UNHEALTHY), State.UNHEALTHY, State.DEGRADED, T0 + 4)
    history.record("a", run(State.UNKNOWN, reason=Reason.INTERNAL), State.UNKNOWN, State.UNHEALTHY, T0 + 5)
    assert history.uptime("a", "1h", T0 + 10) == 4 / 5
    assert history.uptime("a", "24h", T0 + 10) == 4 / 5
    assert history.uptime("nobody", "1h", T0) is None
    assert fresh("b").uptime("b", "1h", T0) is None  # no judged run: no uptime, not 0 % or 100 %


def test_an_hour_later_the_old_runs_leave_uptime_1h_but_stay_in_uptime_24h() -> None:
    history = fresh("a")
    history.record("a", run(State.UNHEALTHY), State.UNHEALTHY, State.UNKNOWN, T0)
    history.record("a", run(State.OK), State.OK, State.UNHEALTHY, T0 + 3600)
    assert history.uptime("a", "1h", T0 + 3600) == 1.0
    assert history.uptime("a", "24h", T0 + 3600) == 0.5
    # no run since: the windows still end now (the slow path, without rolling the ring)
    assert history.uptime("a", "1h", T0 + 2 * 3600) is None
    assert history.uptime("a", "24h", T0 + 2 * 3600) == 0.5
    assert history.uptime("a", "24h", T0 + 25 * 3600) is None


def test_buckets_hold_runs_states_and_latency_per_minute() -> None:
    history = fresh("a")
    history.record("a", run(State.OK, 0.010), State.OK, State.UNKNOWN, T0 + 1)
    history.record("a", run(State.UNHEALTHY, 0.030), State.OK, State.OK, T0 + 2)  # debounced: still ok
    history.record("a", run(State.OK, 0.020), State.OK, State.OK, T0 + 61)
    minutes = history.buckets("a", "1h", T0 + 61)
    assert len(minutes) == 60 and all(b is None for b in minutes[:-2])
    first, second = minutes[-2], minutes[-1]
    assert first is not None and second is not None
    assert (first.runs, first.up, first.down, first.state, first.raw) == (2, 1, 1, State.OK, State.UNHEALTHY)
    assert first.latency_min is not None and abs(first.latency_min - 0.010) < 1e-6
    assert first.latency_max is not None and abs(first.latency_max - 0.030) < 1e-6
    assert first.latency_mean is not None and abs(first.latency_mean - 0.020) < 1e-6
    assert first.start == T0 and second.start == T0 + 60
    assert history.letters("a", "1h", T0 + 61) == "-" * 58 + "oo"
    quarters = history.buckets("a", "24h", T0 + 61)
    assert len(quarters) == 96 and quarters[-1] is not None and quarters[-1].runs == 3


def test_the_timeline_shows_the_worst_debounced_state_of_each_minute() -> None:
    history = fresh("a")
    history.record("a", run(State.OK), State.OK, State.UNKNOWN, T0)
    history.record("a", run(State.UNHEALTHY), State.UNHEALTHY, State.OK, T0 + 30)
    history.record("a", run(State.OK), State.OK, State.UNHEALTHY, T0 + 60)
    history.record("a", run(State.DEGRADED), State.DEGRADED, State.OK, T0 + 180)
    assert history.letters("a", "1h", T0 + 180)[-4:] == "uo-d"
    means = history.means("a", "1h", T0 + 180)
    assert means[-2] is None and means[-1] is not None


def test_transitions_are_the_last_fifty_newest_first() -> None:
    history = fresh("a")
    state = State.UNKNOWN
    for i in range(TRANSITIONS + 10):
        after = State.UNHEALTHY if i % 2 else State.OK
        history.record("a", run(after, message=f"run {i}"), after, state, T0 + i)
        state = after
    history.record("a", run(State.OK), State.OK, State.OK, T0 + 100)  # no change: no transition
    changes = history.changes("a")
    assert len(changes) == TRANSITIONS
    assert changes[0].message == f"run {TRANSITIONS + 9}" and changes[-1].time == T0 + 10
    assert (changes[0].before, changes[0].after, changes[0].reason) == (State.OK, State.UNHEALTHY, "refused")
    assert changes[1].reason is None and changes[0].time == T0 + TRANSITIONS + 9
    assert [c.as_json()["to"] for c in history.changes("a", limit=2)] == ["unhealthy", "ok"]


def test_repeated_messages_are_kept_once() -> None:
    """A flapping target says the same two things over and over: every transition keeps its message."""
    history = fresh("a")
    state = State.UNKNOWN
    for i in range(TRANSITIONS * 2):
        after = State.UNHEALTHY if i % 2 else State.OK
        text = "connect: connection refused " + "x" * 100 if i % 2 else "HTTP 200 " + "y" * 100
        history.record("a", run(after, message=text), after, state, T0 + i)
        state = after
    assert all(c.message is not None for c in history.changes("a"))


def test_messages_are_bounded_per_target_and_the_newest_keep_theirs() -> None:
    history = fresh("a")
    state = State.UNKNOWN
    for i in range(TRANSITIONS):
        after = State.UNHEALTHY if i % 2 else State.OK
        history.record("a", run(after, message=f"{i:04d} " + "x" * 300), after, state, T0 + i)
        state = after
    changes = history.changes("a")
    kept = [c.message for c in changes if c.message is not None]
    assert sum(sys.getsizeof(m) for m in kept) <= MESSAGE_BUDGET
    assert changes[0].message is not None and changes[0].message.startswith(f"{TRANSITIONS - 1:04d} ")
    assert len(changes[0].message) == 160  # cut
    assert changes[-1].message is None and changes[-1].after is State.OK  # the oldest keep states, not text


def test_apply_forgets_removed_targets_reuses_their_slots_and_restarts_a_changed_kind() -> None:
    history = fresh("a", "b")
    for name in ("a", "b"):
        history.record(name, run(State.UNHEALTHY), State.UNHEALTHY, State.UNKNOWN, T0)
    history.apply([Target("a"), Target("c")])
    assert "b" not in history and len(history) == 2
    assert history.uptime("c", "1h", T0) is None and history.changes("c") == []  # b's slot, cleared
    assert history.uptime("a", "1h", T0) == 0.0
    history.apply([Target("a", kind="http"), Target("c")])
    assert history.uptime("a", "1h", T0) is None and history.changes("a") == []
    history.record("zzz", run(State.OK), State.OK, State.UNKNOWN, T0)  # not configured: ignored
    assert "zzz" not in history


def test_many_targets_grow_the_arrays_and_each_keeps_its_own() -> None:
    names = [f"t{i}" for i in range(300)]
    history = fresh(*names)
    for i, name in enumerate(names):
        history.record(name, run(State.OK if i % 3 else State.UNHEALTHY), State.OK, State.UNKNOWN, T0)
    assert [history.uptime(n, "1h", T0) for n in names[:4]] == [0.0, 1.0, 1.0, 0.0]


def test_a_clock_that_steps_back_counts_the_run_in_a_kept_bucket() -> None:
    history = fresh("a")
    history.record("a", run(State.OK), State.OK, State.UNKNOWN, T0 + 600)
    history.record("a", run(State.UNHEALTHY), State.UNHEALTHY, State.OK, T0 + 300)
    assert history.uptime("a", "1h", T0 + 600) == 0.5


def test_one_target_costs_a_few_kilobytes() -> None:
    """The layout the page's budget rests on (bench/history_memory.py measures RSS for 10,000 targets)."""
    assert History.bytes_per_target() + MESSAGE_BUDGET <= 6 * 1024
