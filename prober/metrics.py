"""Prometheus metrics, built at scrape time from the board by one custom collector.

Removed targets vanish by themselves, and a scrape never triggers a probe. Metric names are part of
the contract (dashboards and alert rules depend on them): see README, "Metrics".
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from prober import __version__
from prober.status import GAUGES, STATES, Board, State, TargetStatus

TK = ["target", "kind"]


class ProberCollector(Collector):
    def __init__(self, board: Board) -> None:
        self.board = board
        self._rows: dict[str, _Row] = {}

    def rows(self) -> list[_Row]:
        """The targets with their label text, for :func:`render_collector`; a snapshot, safe in a worker
        thread. The text is kept across scrapes: a target's name and kind never change (a reload that
        changes the kind makes a new TargetStatus, and so new text)."""
        known, fresh = self._rows, {}
        for t in tuple(self.board.targets.values()):
            row = known.get(t.name)
            if row is None or row[0] is not t:
                k, n = f'kind="{_esc(t.kind)}"', f'target="{_esc(t.name)}"'
                row = (t, k, n, f"{k},{n}")
            fresh[t.name] = row
        self._rows = fresh
        return list(fresh.values())

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
            histogram = t.histogram
            duration.add_metric(labels, buckets=histogram.cumulative(), sum_value=histogram.total)
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
        yield GaugeMetricFamily(
            "prober_event_loop_tasks", "asyncio tasks alive in the daemon.", value=float(board.event_loop_tasks)
        )


# --- fast rendering --------------------------------------------------------------------------
#
# prometheus_client's encoders build a Sample (a dict of labels) per sample and escape every label
# name and value on every scrape: for 10,000 targets (about 300,000 samples, 20 MB) that took 4 to 7 s
# here, on the event loop. ``render`` writes the same bytes from the board directly: label strings are
# built once per target per scrape, numbers are formatted once per distinct value. Headers come from
# prometheus_client itself (rendered for empty families), and a per-target family it does not know
# makes it fall back to prometheus_client for the whole output, so it can never drop a metric.


class _Families:
    """Metric families in the shape prometheus_client's encoders take (anything with ``collect()``)."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def _encode(metrics: Iterable[Metric], openmetrics: bool) -> str:
    """prometheus_client's own encoding, without OpenMetrics' final ``# EOF``."""
    families = cast(CollectorRegistry, _Families(metrics))
    if openmetrics:
        body = cast(bytes, openmetrics_latest(families))  # type: ignore[no-untyped-call]
        return body.decode().removesuffix("# EOF\n")
    return text_latest(families).decode()


def _esc(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _Numbers(dict[float, str]):
    """floatToGoString, once per distinct value in a scrape (most values repeat: 0, 1, counts)."""

    def __missing__(self, value: float) -> str:
        if -1e6 < value < 1e6:
            # what floatToGoString returns for these (it switches to Go's exponent form only for larger
            # numbers, and treats inf and NaN, which fail this test, apart), without the call
            text = repr(float(value))
        else:
            text = cast(str, floatToGoString(value))  # type: ignore[no-untyped-call]
        self[value] = text
        return text

    def once(self, value: float) -> str:
        """A value that differs per target and run (a latency, a sum): formatted in place, not remembered."""
        return repr(value) if type(value) is float and -1e6 < value < 1e6 else self[value]


class _Escaped(dict[str, str]):
    """Label values escaped once per distinct value in a scrape (phase names, roles, versions repeat)."""

    def __missing__(self, value: str) -> str:
        text = self[value] = _esc(value)
        return text


_Row = tuple[TargetStatus, str, str, str]  # the status, 'kind="..."', 'target="..."', 'kind="...",target="..."'
_STATUS_LABELS = tuple((state, f'status="{state.value}"') for state in STATES)


def _lines(name: str, rows: list[_Row], num: _Numbers) -> list[str] | None:
    """The sample lines of one per-target family, in collect()'s order; None for a family not known here."""
    out: list[str] = []
    add = out.append
    if name == "prober_up":
        for t, _, _, kn in rows:
            if t.last is not None:
                add(f"prober_up{{{kn}}} {num[1.0 if t.last.reached else 0.0]}\n")
    elif name == "prober_status":
        for t, k, n, _ in rows:
            for state, label in _STATUS_LABELS:
                add(f"prober_status{{{k},{label},{n}}} {num[1.0 if t.state is state else 0.0]}\n")
    elif name == "prober_target_critical":
        for t, _, _, kn in rows:
            add(f"prober_target_critical{{{kn}}} {num[1.0 if t.critical else 0.0]}\n")
    elif name == "prober_probe_duration_seconds":
        _histograms(rows, num, add)
    elif name == "prober_probe_phase_duration_seconds":
        escaped = _Escaped()
        for t, k, n, _ in rows:
            if t.last is not None:
                for phase, seconds in t.last.phases.items():
                    label = escaped[phase]
                    add(f'prober_probe_phase_duration_seconds{{{k},phase="{label}",{n}}} {num.once(seconds)}\n')
    elif name == "prober_probes":
        for t, _, _, kn in rows:
            add(f"prober_probes_total{{{kn}}} {num[t.probes_total]}\n")
    elif name == "prober_probe_failures":
        for t, k, n, _ in rows:
            for reason, count in tuple(t.failures_total.items()):
                add(f'prober_probe_failures_total{{{k},reason="{reason.value}",{n}}} {num[count]}\n')
    elif name == "prober_internal_errors":
        for t, _, _, kn in rows:
            add(f"prober_internal_errors_total{{{kn}}} {num[t.internal_errors_total]}\n")
    elif name == "prober_skipped_runs":
        for t, _, _, kn in rows:
            add(f"prober_skipped_runs_total{{{kn}}} {num[t.skipped_runs_total]}\n")
    elif name == "prober_failure_reason_info":
        for t, k, n, _ in rows:
            if t.last is not None and t.last.reason is not None:
                add(f'prober_failure_reason_info{{{k},reason="{t.last.reason.value}",{n}}} {num[1.0]}\n')
    elif name == "prober_last_success_timestamp_seconds":
        for t, _, _, kn in rows:
            if t.last is not None and t.last_success is not None:
                add(f"prober_last_success_timestamp_seconds{{{kn}}} {num[t.last_success]}\n")
    elif name == "prober_last_run_timestamp_seconds":
        for t, _, _, kn in rows:
            if t.last is not None and t.last_run is not None:
                add(f"prober_last_run_timestamp_seconds{{{kn}}} {num[t.last_run]}\n")
    elif name == "prober_probe_interval_seconds":
        for t, _, _, kn in rows:
            add(f"prober_probe_interval_seconds{{{kn}}} {num[t.interval]}\n")
    elif name == "prober_target_info":
        escaped = _Escaped()
        for t, k, n, _ in rows:
            if t.last is not None and t.last.info:
                role, version = escaped[t.last.info.get("role", "")], escaped[t.last.info.get("version", "")]
                add(f'prober_target_info{{{k},role="{role}",{n},version="{version}"}} {num[1.0]}\n')
    elif name.startswith("prober_") and name[7:] in GAUGES:
        gauge = name[7:]
        for t, _, _, kn in rows:
            if t.last is not None and gauge in t.last.gauges:
                add(f"{name}{{{kn}}} {num[t.last.gauges[gauge]]}\n")
    else:
        return None
    return out


def _histograms(rows: list[_Row], num: _Numbers, add: Callable[[str], None]) -> None:
    """prober_probe_duration_seconds: the buckets' label text is made once per set of bounds, not per line."""
    bounds: tuple[float, ...] | None = None
    les: tuple[str, ...] = ()
    for t, k, n, kn in rows:
        if t.last is None:
            continue
        histogram = t.histogram  # read once: a reload may replace it meanwhile (metrics.duration_buckets)
        if histogram.bounds is not bounds:
            bounds, les = histogram.bounds, tuple(f',le="{le}",' for le in histogram.labels)
        running = 0
        for le, count in zip(les, histogram.counts, strict=True):
            running += count
            add(f"prober_probe_duration_seconds_bucket{{{k}{le}{n}}} {num[running]}\n")
        add(f"prober_probe_duration_seconds_count{{{kn}}} {num[running]}\n")
        add(f"prober_probe_duration_seconds_sum{{{kn}}} {num.once(histogram.total)}\n")


_TARGET_FAMILIES: list[Metric] = []  # the per-target families collect() yields, without samples
_HEADERS: dict[tuple[str, bool], str] = {}


def _target_families() -> list[Metric]:
    if not _TARGET_FAMILIES:
        empty = ProberCollector(Board())
        daemon = {m.name for m in empty._daemon_metrics()}
        _TARGET_FAMILIES.extend(m for m in empty.collect() if m.name not in daemon)
    return _TARGET_FAMILIES


CHUNK = 1000  # targets per piece of output (keeps the intermediate lists small)


def _pieces(collector: ProberCollector, openmetrics: bool) -> Iterator[str]:
    """The collector's exposition in pieces of at most ``CHUNK`` targets of one family."""
    families = _target_families()
    num = _Numbers()
    if any(_lines(family.name, [], num) is None for family in families):
        yield _encode(collector.collect(), openmetrics)  # a family this renderer does not know: prometheus_client
        return
    rows = collector.rows()
    for family in families:
        header = _HEADERS.get((family.name, openmetrics))
        if header is None:
            header = _HEADERS[(family.name, openmetrics)] = _encode([family], openmetrics)
        yield header
        for start in range(0, len(rows), CHUNK):
            yield "".join(_lines(family.name, rows[start : start + CHUNK], num) or ())
    yield _encode(collector._daemon_metrics(), openmetrics)


def render_collector(collector: ProberCollector, openmetrics: bool) -> str:
    """What prometheus_client would encode for ``collector.collect()``, byte for byte, built quickly."""
    return "".join(_pieces(collector, openmetrics))


class ProberRegistry(CollectorRegistry):
    """The daemon's registry. prometheus_client's encoders work on it as on any registry;
    :meth:`render` produces the same output much faster when targets are many."""

    def __init__(self, board: Board) -> None:
        super().__init__(auto_describe=False)
        self.prober = ProberCollector(board)
        self.register(self.prober)
        self.others: list[Collector] = [
            ProcessCollector(registry=self),
            PlatformCollector(registry=self),
            GCCollector(registry=self),
        ]

    def render(self, openmetrics: bool) -> bytes:
        """The exposition in the Prometheus text format (0.0.4) or OpenMetrics (1.0.0)."""
        return "".join(self._pieces(openmetrics)).encode()

    def _pieces(self, openmetrics: bool) -> Iterator[str]:
        yield from _pieces(self.prober, openmetrics)
        yield _encode((m for c in self.others for m in c.collect()), openmetrics)
        if openmetrics:
            yield "# EOF\n"


def render(registry: CollectorRegistry, openmetrics: bool) -> bytes:
    """Fast rendering for a :class:`ProberRegistry`, prometheus_client's encoders for any other."""
    if isinstance(registry, ProberRegistry):
        return registry.render(openmetrics)
    if openmetrics:
        return cast(bytes, openmetrics_latest(registry))  # type: ignore[no-untyped-call]
    return text_latest(registry)


def make_registry(board: Board) -> ProberRegistry:
    return ProberRegistry(board)


__all__ = ["ProberCollector", "ProberRegistry", "State", "make_registry", "render"]
