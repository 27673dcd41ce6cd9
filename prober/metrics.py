"""Prometheus metrics, built at scrape time from the board by one custom collector.

Removed targets vanish by themselves, and a scrape never triggers a probe. Metric names are part of
the contract (dashboards and alert rules depend on them): see README, "Metrics".
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from prober import __version__
from prober.status import GAUGES, STATES, Board, State

TK = ["target", "kind"]


class ProberCollector(Collector):
    def __init__(self, board: Board) -> None:
        self.board = board

    def collect(self) -> Iterator[Metric]:
        board = self.board
        up = GaugeMetricFamily(
            "prober_up", "1 if the last run reached the target and it answered correctly.", labels=TK
        )
        status = GaugeMetricFamily(
            "prober_status", "Debounced state of the target: 1 for the current state.", labels=[*TK, "status"]
        )
        critical = GaugeMetricFamily(
            "prober_target_critical", "1 if the target is critical (its failure makes the whole unhealthy).", labels=TK
        )
        duration = HistogramMetricFamily(
            "prober_probe_duration_seconds", "Latency of probe runs.", labels=TK, unit="seconds"
        )
        phases = GaugeMetricFamily(
            "prober_probe_phase_duration_seconds", "Duration of each phase of the last run.", labels=[*TK, "phase"]
        )
        probes = CounterMetricFamily("prober_probes", "Probe runs.", labels=TK)
        failures = CounterMetricFamily("prober_probe_failures", "Failed probe runs by reason.", labels=[*TK, "reason"])
        internal = CounterMetricFamily(
            "prober_internal_errors", "Runs that ended in an internal error of the prober.", labels=TK
        )
        skipped = CounterMetricFamily(
            "prober_skipped_runs", "Runs skipped because the previous run had not ended (max_concurrency).", labels=TK
        )
        reason_info = GaugeMetricFamily(
            "prober_failure_reason_info",
            "Reason of the last run's failure (present while it fails).",
            labels=[*TK, "reason"],
        )
        last_success = GaugeMetricFamily(
            "prober_last_success_timestamp_seconds", "When a run last reached the target.", labels=TK
        )
        last_run = GaugeMetricFamily("prober_last_run_timestamp_seconds", "When the last run ended.", labels=TK)
        interval = GaugeMetricFamily("prober_probe_interval_seconds", "Configured interval between runs.", labels=TK)
        target_info = GaugeMetricFamily(
            "prober_target_info", "Facts the last run read from the dependency.", labels=[*TK, "version", "role"]
        )
        gauges = {name: GaugeMetricFamily(f"prober_{name}", help_text, labels=TK) for name, help_text in GAUGES.items()}

        for t in board.targets.values():
            labels = [t.name, t.kind]
            critical.add_metric(labels, 1.0 if t.critical else 0.0)
            interval.add_metric(labels, t.interval)
            for state in STATES:
                status.add_metric([*labels, state.value], 1.0 if t.state is state else 0.0)
            probes.add_metric(labels, float(t.probes_total))
            internal.add_metric(labels, float(t.internal_errors_total))
            skipped.add_metric(labels, float(t.skipped_runs_total))
            for reason, count in t.failures_total.items():
                failures.add_metric([*labels, reason.value], float(count))
            last = t.last
            if last is None:
                continue
            up.add_metric(labels, 1.0 if last.reached else 0.0)
            duration.add_metric(labels, buckets=t.histogram.cumulative(), sum_value=t.histogram.total)
            for phase, seconds in last.phases.items():
                phases.add_metric([*labels, phase], seconds)
            if last.reason is not None:
                reason_info.add_metric([*labels, last.reason.value], 1.0)
            if t.last_success is not None:
                last_success.add_metric(labels, t.last_success)
            if t.last_run is not None:
                last_run.add_metric(labels, t.last_run)
            if last.info:
                target_info.add_metric([*labels, last.info.get("version", ""), last.info.get("role", "")], 1.0)
            for name, value in last.gauges.items():
                if name in gauges:
                    gauges[name].add_metric(labels, value)

        yield from (up, status, critical, duration, phases, probes, failures, internal, skipped, reason_info)
        yield from (last_success, last_run, interval, target_info, *gauges.values())
        yield from self._daemon_metrics()

    def _daemon_metrics(self) -> Iterator[Metric]:
        board = self.board
        overall = GaugeMetricFamily(
            "prober_overall_status", "Aggregate state of all targets: 1 for the current state.", labels=["status"]
        )
        current = board.overall()
        for state in STATES:
            overall.add_metric([state.value], 1.0 if current is state else 0.0)
        yield overall
        build = GaugeMetricFamily("prober_build_info", "Version of the prober.", labels=["version", "python"])
        build.add_metric([__version__, platform.python_version()], 1.0)
        yield build
        yield GaugeMetricFamily(
            "prober_config_last_reload_successful",
            "1 if the last config (re)load succeeded.",
            value=1.0 if board.reload_successful else 0.0,
        )
        if board.reload_success_time is not None:
            yield GaugeMetricFamily(
                "prober_config_last_reload_success_timestamp_seconds",
                "When the config was last loaded successfully.",
                value=board.reload_success_time,
            )
        yield GaugeMetricFamily("prober_targets", "Targets this process probes.", value=float(len(board.targets)))
        yield GaugeMetricFamily(
            "prober_config_targets", "Targets in the config (all shards).", value=float(board.configured_targets)
        )
        yield GaugeMetricFamily("prober_scheduler_jobs", "Scheduled probe jobs.", value=float(board.jobs))
        lag = HistogramMetricFamily(
            "prober_scheduler_lag_seconds",
            "Delay between a run's scheduled start and its actual start (including waiting for max_concurrency).",
            unit="seconds",
        )
        lag.add_metric([], buckets=board.scheduler_lag.cumulative(), sum_value=board.scheduler_lag.total)
        yield lag
        yield GaugeMetricFamily("prober_start_time_seconds", "When the daemon started.", value=board.started)
        yield GaugeMetricFamily("prober_event_loop_tasks", "asyncio tasks alive in the daemon.", value=_tasks())


def _tasks() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # no running loop (rendered outside the daemon)
        return 0.0


def make_registry(board: Board) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProberCollector(board))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


__all__ = ["ProberCollector", "State", "make_registry"]
