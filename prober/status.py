"""The status model: states, failure reasons, probe results, debouncing and aggregation.

A probe run yields a :class:`Result`. Each target keeps a :class:`TargetStatus` that turns the raw
results into a debounced state (Kubernetes probe semantics: ``failure_threshold`` consecutive
failures before a target leaves ok/degraded, ``success_threshold`` consecutive successes before it
returns) and carries the counters the metrics are read from at scrape time. :func:`overall`
aggregates targets into the state of the whole application. Nothing here knows how the state is
exported: that is the metrics side's business (:mod:`prober.metrics`).
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from prober.models import DEFAULT_DURATION_BUCKETS


class State(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class Reason(StrEnum):
    """Why a run failed. A fixed, bounded set: it becomes a metric label."""

    TIMEOUT = "timeout"
    REFUSED = "refused"
    DNS = "dns"
    TLS = "tls"
    AUTH = "auth"
    PROTOCOL = "protocol"
    ASSERTION = "assertion"
    INTERNAL = "internal"  # a bug of the prober itself: the target becomes unknown, never unhealthy


STATES: tuple[State, ...] = tuple(State)
REASONS: tuple[Reason, ...] = tuple(Reason)
_ORDER = {State.OK: 0, State.DEGRADED: 1, State.UNHEALTHY: 2}


@dataclass(frozen=True, slots=True)
class Component:
    """A dependency of the target as the target itself reports it (a health body's ``database``)."""

    state: State
    reported: str  # the application's own word: up, DOWN, warn, ...

    def as_json(self) -> dict[str, str]:
        return {"status": self.state.value, "reported": self.reported}


Series = tuple[tuple[tuple[str, ...], float], ...]
"""Samples of one labelled per-target family: (the values of its own labels, the value) each."""


@dataclass(slots=True)
class Result:
    """The outcome of one probe run."""

    state: State
    reason: Reason | None = None
    message: str = ""
    latency: float | None = None  # seconds; filled in by the runner when the probe leaves it out
    details: dict[str, Any] = field(default_factory=dict)  # the observations shown in /status, or a failure's facts
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase: dns, connect, tls, ...
    gauges: dict[str, float] = field(default_factory=dict)  # exported per-target gauges (see prober.metrics)
    info: dict[str, str] = field(default_factory=dict)  # version, role: prober_target_info labels
    components: dict[str, Component] = field(default_factory=dict)  # what a health body reports per dependency
    series: dict[str, Series] = field(
        default_factory=dict
    )  # labelled per-target samples, by family (see prober.metrics)
    error: BaseException | None = field(default=None, repr=False)  # an internal error, for the log

    @property
    def reached(self) -> bool:
        """The target answered correctly (prober_up == 1)."""
        return self.state in (State.OK, State.DEGRADED)


def ok(message: str = "", **kwargs: Any) -> Result:
    return Result(State.OK, None, message, **kwargs)


def degraded(message: str, **kwargs: Any) -> Result:
    return Result(State.DEGRADED, None, message, **kwargs)


def unhealthy(reason: Reason, message: str, **kwargs: Any) -> Result:
    return Result(State.UNHEALTHY, reason, message, **kwargs)


def worst(*states: State) -> State:
    """The worse of known states (ok < degraded < unhealthy)."""
    return max(states, key=lambda s: _ORDER.get(s, -1))


class Histogram:
    """Counts of run latencies per upper bound (the last bound is +Inf), and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = DEFAULT_DURATION_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, runs at or below it), +Inf last."""
        running, out = 0, []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass(slots=True)
class TargetStatus:
    """Everything the daemon remembers about one target between runs."""

    name: str
    kind: str
    critical: bool
    interval: float = 0.0
    state: State = State.UNKNOWN
    last: Result | None = None
    last_run: float | None = None  # wall-clock time the last run ended
    last_success: float | None = None  # wall-clock time of the last run that reached the target
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    probes_total: int = 0
    failures_total: Counter[Reason] = field(default_factory=Counter)
    internal_errors_total: int = 0
    skipped_runs_total: int = 0
    histogram: Histogram = field(default_factory=Histogram)
    starting_until: float | None = None  # wall-clock end of the start period (None: no start period)

    def starting(self, now: float | None = None) -> bool:
        """In the start period: it has not ended, and no run has reached the target yet."""
        if self.starting_until is None or self.last_success is not None:
            return False
        return (time.time() if now is None else now) < self.starting_until

    def record(self, result: Result, failure_threshold: int, success_threshold: int, now: float | None = None) -> State:
        """Store one run's result, update counters and the debounced state; return the old state."""
        now = time.time() if now is None else now
        previous = self.state
        starting = self.starting(now)
        self.last, self.last_run = result, now
        self.probes_total += 1
        if result.latency is not None:
            self.histogram.observe(result.latency)
        if result.reason is not None:
            self.failures_total[result.reason] += 1
        if result.reason is Reason.INTERNAL:
            self.internal_errors_total += 1
        if result.reached:
            self.last_success = now
        if starting and result.state is State.UNHEALTHY:
            # Docker's start period: the failure is kept (its reason and message show) but the target stays
            # unknown, and the failure does not count towards failure_threshold.
            self.consecutive_failures = self.consecutive_successes = 0
            self.state = State.UNKNOWN
            return previous
        self.state = self._debounce(result.state, failure_threshold, success_threshold)
        return previous

    def _debounce(self, raw: State, failure_threshold: int, success_threshold: int) -> State:
        if raw is State.UNKNOWN:  # the prober's own failure says nothing about the dependency
            self.consecutive_failures = self.consecutive_successes = 0
            return State.UNKNOWN
        if raw is State.UNHEALTHY:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            if self.state in (State.UNKNOWN, State.UNHEALTHY):
                return State.UNHEALTHY
            return State.UNHEALTHY if self.consecutive_failures >= failure_threshold else self.state
        self.consecutive_successes += 1
        self.consecutive_failures = 0
        if self.state is State.UNHEALTHY and self.consecutive_successes < success_threshold:
            return State.UNHEALTHY
        return raw


def overall(targets: Iterable[TargetStatus]) -> State:
    """Aggregate: unhealthy if a critical target is unhealthy; degraded if any target is degraded or
    an optional one is unhealthy; else ok. Unknown targets do not count; unknown if none is known."""
    seen = State.UNKNOWN
    for target in targets:
        if target.state is State.UNKNOWN:
            continue
        if target.state is State.UNHEALTHY and target.critical:
            return State.UNHEALTHY
        if target.state is State.OK:
            seen = State.OK if seen is State.UNKNOWN else seen
        else:  # degraded, or unhealthy but optional
            seen = State.DEGRADED
    return seen


class Configured(Protocol):
    """What the board needs to know of a configured target."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def critical(self) -> bool: ...
    @property
    def interval(self) -> float: ...
    @property
    def start_period(self) -> float: ...


class Board:
    """The latest stored results of every target, plus the daemon's own facts. Written by the
    scheduler, read by the metrics collector and /status; a read never triggers a probe."""

    def __init__(self, lag_buckets: tuple[float, ...] = ()) -> None:
        """``lag_buckets``: the bounds of the scheduler lag histogram (the metrics side chooses them)."""
        self.targets: dict[str, TargetStatus] = {}
        self.started = time.time()
        self.reload_successful = True
        self.reload_success_time: float | None = None
        self.scheduler_lag = Histogram(lag_buckets)  # waits between a run's due time and its start
        self.duration_buckets = DEFAULT_DURATION_BUCKETS  # of every target's run latency histogram
        self.jobs = 0
        self.groups: dict[str, tuple[str, ...]] = {}  # health groups: name -> target names (config order)
        self.configured_targets = 0  # in the config, before sharding
        self.event_loop_tasks = 0  # read on the event loop just before a scrape is rendered
        self.http_events: dict[str, int] = {}  # what the HTTP surface did to bound itself (server.py)

    def apply(self, targets: Iterable[Configured], now: float | None = None, start_periods: bool = False) -> None:
        """Adopt a new target set. Unchanged targets keep their state and counters; a target whose
        kind changed starts afresh; removed targets are forgotten (and so vanish from /metrics). With
        ``start_periods`` (the scheduler's), a new target's start period begins now; ``prober once`` has none."""
        now = time.time() if now is None else now
        fresh: dict[str, TargetStatus] = {}
        for target in targets:
            known = self.targets.get(target.name)
            if known is None or known.kind != target.kind:
                known = TargetStatus(
                    target.name, target.kind, target.critical, histogram=Histogram(self.duration_buckets)
                )
                if start_periods and target.start_period > 0:
                    known.starting_until = now + target.start_period
            known.critical, known.interval = target.critical, target.interval
            fresh[target.name] = known
        self.targets = fresh

    def set_duration_buckets(self, bounds: tuple[float, ...]) -> bool:
        """Use other buckets for run latencies (``metrics.duration_buckets``). Counts kept under the old
        buckets cannot be split into the new ones, so every target's histogram starts afresh: Prometheus
        sees a counter reset of the _bucket, _count and _sum series, which rate() and increase() take in
        their stride. Returns True if the buckets changed; the same buckets again change nothing."""
        if bounds == self.duration_buckets:
            return False
        self.duration_buckets = bounds
        for status in self.targets.values():
            status.histogram = Histogram(bounds)
        return True

    def overall(self) -> State:
        return overall(self.targets.values())

    def members(self, group: str) -> list[TargetStatus]:
        """The targets of a health group this process probes (a sharded replica has only its share)."""
        return [self.targets[name] for name in self.groups.get(group, ()) if name in self.targets]

    def group_state(self, group: str) -> State:
        """A group's state, aggregated as the whole is (its critical targets decide unhealthy)."""
        return overall(self.members(group))

    def ready(self) -> bool:
        return all(t.last is not None for t in self.targets.values())
