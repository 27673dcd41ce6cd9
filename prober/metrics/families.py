"""Every metric the prober exports, defined once: name, type, help, labels and where its samples come
from. Both renderers (prometheus_client's collector and the fast text renderer, :mod:`.exposition`) are
driven by these tables, so adding a metric is one entry here, and the two can never disagree about
which families exist.

Metric names are part of the contract (dashboards and alert rules depend on them): see README, "Metrics".
Per-target families carry the labels ``target`` and ``kind`` plus their own (``labels``).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from prober import __version__
from prober.status import STATES, Board, Histogram, State, TargetStatus

if TYPE_CHECKING:
    from prometheus_client.core import Metric

Sample = tuple[tuple[str, ...], float]  # (values of the family's own labels, value)
Type = Literal["gauge", "counter", "histogram"]

# Upper bounds of prober_scheduler_lag_seconds (the run latency buckets are the config's:
# metrics.duration_buckets, default prober.models.DEFAULT_DURATION_BUCKETS).
LAG_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# Per-target gauges a probe may report in ``Result.gauges``, with their help text. Only these names are
# exported, so a probe cannot create unbounded series by accident.
GAUGES: dict[str, str] = {
    "replication_lag_seconds": "Replication lag seen by the last run (replicas and secondaries).",
    "connection_usage_ratio": "Connections in use divided by the connections available.",
    "memory_usage_ratio": "Memory in use divided by the configured limit.",
    "tls_cert_not_after_timestamp_seconds": "Expiry (notAfter) of the leaf certificate, even if verification failed.",
    "newest_object_timestamp_seconds": "When the newest object or file the target watches (a backup) was modified.",
    "newest_object_size_bytes": "Size of the newest object or file the target watches (a backup).",
}

# Labelled per-target families a probe may report in ``Result.series`` (family key -> name, help, labels).
# Each kind caps the samples it reports (bullmq: queues per target; query: columns).
SERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "queue_jobs": ("Jobs of each job queue, by state (waiting, active, delayed, failed, ...).", ("queue", "state")),
    "queue_oldest_waiting_age_seconds": ("Age of the oldest job waiting in each job queue (0: none).", ("queue",)),
    "queue_workers": ("Workers connected to each job queue, as the queue library registers them.", ("queue",)),
    "query_value": ("Numeric columns of the first row of the target's query.", ("column",)),
}


@dataclass(frozen=True, slots=True)
class Family:
    """One per-target family. Exactly one of ``value`` (one sample per target, None for none),
    ``samples`` (samples with the family's own ``labels``) or ``histogram`` says where samples come from."""

    name: str  # as prometheus_client takes it: counters without _total
    type: Type
    help: str
    value: Callable[[TargetStatus], float | None] | None = None
    samples: Callable[[TargetStatus], Iterable[Sample]] | None = None
    histogram: Callable[[TargetStatus], Histogram | None] | None = None
    labels: tuple[str, ...] = ()  # besides target and kind
    unit: str = ""
    varies: bool = False  # values differ per target and run (latencies): not worth remembering per scrape
    # the key of a result's ``gauges`` or ``series`` this family reads, if any: most kinds set none of them,
    # so the fast renderer looks for the keys once per scrape and skips a family no target has
    reads: str = ""

    @property
    def sample_name(self) -> str:
        return f"{self.name}_total" if self.type == "counter" else self.name


@dataclass(frozen=True, slots=True)
class Facts:
    """What the daemon-wide families read: the board, and the renderer's own count of fallbacks."""

    board: Board
    render_fallbacks: int = 0


@dataclass(frozen=True, slots=True)
class DaemonFamily:
    """One family about the daemon itself (few samples: always rendered by prometheus_client)."""

    name: str
    type: Type
    help: str
    samples: Callable[[Facts], Iterable[Sample]] | None = None
    histogram: Callable[[Facts], Histogram] | None = None
    labels: tuple[str, ...] = ()
    unit: str = ""


def _one(value: float | None) -> Iterable[Sample]:
    return () if value is None else (((), value),)


def _flag(condition: bool) -> float:
    return 1.0 if condition else 0.0


# one state's samples, made once: this family has five lines per target, the most of any
_STATUS_SAMPLES: dict[State, tuple[Sample, ...]] = {
    current: tuple(((state.value,), _flag(current is state)) for state in STATES) for current in STATES
}


def _status(t: TargetStatus) -> Iterable[Sample]:
    return _STATUS_SAMPLES[t.state]


def _phases(t: TargetStatus) -> Iterable[Sample]:
    return [] if t.last is None else [((phase,), seconds) for phase, seconds in t.last.phases.items()]


def _failures(t: TargetStatus) -> Iterable[Sample]:
    return [((reason.value,), float(count)) for reason, count in tuple(t.failures_total.items())]


def _reason(t: TargetStatus) -> Iterable[Sample]:
    return () if t.last is None or t.last.reason is None else (((t.last.reason.value,), 1.0),)


def _target_info(t: TargetStatus) -> Iterable[Sample]:
    if t.last is None or not t.last.info:
        return ()
    return (((t.last.info.get("version", ""), t.last.info.get("role", "")), 1.0),)


def _components(t: TargetStatus) -> Iterable[Sample]:
    if t.last is None:
        return ()
    return [
        ((name, state.value), _flag(component.state is state))
        for name, component in t.last.components.items()
        for state in STATES
    ]


def _gauge(name: str) -> Callable[[TargetStatus], float | None]:
    return lambda t: None if t.last is None else t.last.gauges.get(name)


def _series(key: str) -> Callable[[TargetStatus], Iterable[Sample]]:
    return lambda t: () if t.last is None else t.last.series.get(key, ())


TARGET_FAMILIES: tuple[Family, ...] = (
    Family(
        "prober_up",
        "gauge",
        "1 if the last run reached the target and it answered correctly.",
        value=lambda t: None if t.last is None else _flag(t.last.reached),
    ),
    Family(
        "prober_status",
        "gauge",
        "Debounced state of the target: 1 for the current state.",
        samples=_status,
        labels=("status",),
    ),
    Family(
        "prober_target_starting",
        "gauge",
        "1 during the target's start period (start_period: failed runs leave it unknown), else 0.",
        value=lambda t: _flag(t.starting()),
    ),
    Family(
        "prober_target_critical",
        "gauge",
        "1 if the target is critical (its failure makes the whole unhealthy).",
        value=lambda t: _flag(t.critical),
    ),
    Family(
        "prober_probe_duration_seconds",
        "histogram",
        "Latency of probe runs.",
        histogram=lambda t: None if t.last is None else t.histogram,
        unit="seconds",
    ),
    Family(
        "prober_probe_phase_duration_seconds",
        "gauge",
        "Duration of each phase of the last run.",
        samples=_phases,
        labels=("phase",),
        varies=True,
    ),
    Family("prober_probes", "counter", "Probe runs.", value=lambda t: float(t.probes_total)),
    Family("prober_probe_failures", "counter", "Failed probe runs by reason.", samples=_failures, labels=("reason",)),
    Family(
        "prober_internal_errors",
        "counter",
        "Runs that ended in an internal error of the prober.",
        value=lambda t: float(t.internal_errors_total),
    ),
    Family(
        "prober_skipped_runs",
        "counter",
        "Runs skipped because the previous run had not ended (max_concurrency).",
        value=lambda t: float(t.skipped_runs_total),
    ),
    Family(
        "prober_failure_reason_info",
        "gauge",
        "Reason of the last run's failure (present while it fails).",
        samples=_reason,
        labels=("reason",),
    ),
    Family(
        "prober_last_success_timestamp_seconds",
        "gauge",
        "When a run last reached the target.",
        value=lambda t: None if t.last is None else t.last_success,
    ),
    Family(
        "prober_last_run_timestamp_seconds",
        "gauge",
        "When the last run ended.",
        value=lambda t: None if t.last is None else t.last_run,
    ),
    Family(
        "prober_probe_interval_seconds",
        "gauge",
        "Configured interval between runs.",
        value=lambda t: t.interval,
    ),
    Family(
        "prober_target_info",
        "gauge",
        "Facts the last run read from the dependency.",
        samples=_target_info,
        labels=("version", "role"),
    ),
    Family(
        "prober_component_status",
        "gauge",
        "State of each dependency the target's health body reports (components:): 1 for the current state.",
        samples=_components,
        labels=("component", "status"),
    ),
    *(
        Family(f"prober_{name}", "gauge", help_text, value=_gauge(name), reads=name)
        for name, help_text in GAUGES.items()
    ),
    *(
        Family(f"prober_{key}", "gauge", help_text, samples=_series(key), labels=labels, reads=key)
        for key, (help_text, labels) in SERIES.items()
    ),
)


def _overall(facts: Facts) -> Iterable[Sample]:
    current = facts.board.overall()
    return [((state.value,), _flag(current is state)) for state in STATES]


def _groups(facts: Facts) -> Iterable[Sample]:
    board = facts.board
    return [
        ((group, state.value), _flag(current is state))
        for group in board.groups
        for current in (board.group_state(group),)
        for state in STATES
    ]


def _reload_time(facts: Facts) -> Iterable[Sample]:
    return _one(facts.board.reload_success_time)


DAEMON_FAMILIES: tuple[DaemonFamily, ...] = (
    DaemonFamily(
        "prober_overall_status",
        "gauge",
        "Aggregate state of all targets: 1 for the current state.",
        samples=_overall,
        labels=("status",),
    ),
    DaemonFamily(
        "prober_group_status",
        "gauge",
        "Aggregate state of each health group (groups:): 1 for the current state.",
        samples=_groups,
        labels=("group", "status"),
    ),
    DaemonFamily(
        "prober_build_info",
        "gauge",
        "Version of the prober.",
        samples=lambda _f: (((__version__, platform.python_version()), 1.0),),
        labels=("version", "python"),
    ),
    DaemonFamily(
        "prober_config_last_reload_successful",
        "gauge",
        "1 if the last config (re)load succeeded.",
        samples=lambda f: _one(_flag(f.board.reload_successful)),
    ),
    DaemonFamily(
        "prober_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the config was last loaded successfully.",
        samples=_reload_time,
    ),
    DaemonFamily(
        "prober_targets", "gauge", "Targets this process probes.", samples=lambda f: _one(len(f.board.targets))
    ),
    DaemonFamily(
        "prober_config_targets",
        "gauge",
        "Targets in the config (all shards).",
        samples=lambda f: _one(f.board.configured_targets),
    ),
    DaemonFamily("prober_scheduler_jobs", "gauge", "Scheduled probe jobs.", samples=lambda f: _one(f.board.jobs)),
    DaemonFamily(
        "prober_scheduler_lag_seconds",
        "histogram",
        "Delay between a run's scheduled start and its actual start (including waiting for max_concurrency).",
        histogram=lambda f: f.board.scheduler_lag,
        unit="seconds",
    ),
    DaemonFamily(
        "prober_start_time_seconds", "gauge", "When the daemon started.", samples=lambda f: _one(f.board.started)
    ),
    DaemonFamily(
        "prober_event_loop_tasks",
        "gauge",
        "asyncio tasks alive in the daemon.",
        samples=lambda f: _one(f.board.event_loop_tasks),
    ),
    DaemonFamily(
        "prober_http_events",
        "counter",
        "What the daemon's HTTP surface did to stay within its bounds: bodies rendered and shared, requests "
        "answered 503 while busy, connections closed (idle, slow reader) or refused (over the cap).",
        samples=lambda f: (((event,), float(count)) for event, count in sorted(f.board.http_events.items())),
        labels=("event",),
    ),
    DaemonFamily(
        "prober_metrics_render_fallbacks",
        "counter",
        "Scrapes the fast renderer could not write, answered by prometheus_client's encoder instead (a bug).",
        samples=lambda f: _one(f.render_fallbacks),
    ),
)


def metric_types() -> dict[str, Callable[..., Metric]]:
    """prometheus_client's family class for each type (imported on first use)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    return {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily, "histogram": HistogramMetricFamily}
