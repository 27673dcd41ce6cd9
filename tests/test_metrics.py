"""The fast /metrics renderer writes exactly what prometheus_client's encoders write for the same
collector, in both formats, for every kind of value a board can hold."""

from __future__ import annotations

from typing import cast

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from prober.metrics import (
    DAEMON_FAMILIES,
    LAG_BUCKETS,
    TARGET_FAMILIES,
    ProberCollector,
    exposition,
    make_registry,
    render,
    render_collector,
)
from prober.status import Board, Component, Histogram, Reason, Result, State, TargetStatus


def board(buckets: tuple[float, ...] | None = None) -> Board:
    filled = Board(LAG_BUCKETS)
    if buckets is not None:
        filled.set_duration_buckets(buckets)
    filled.configured_targets = 7
    filled.jobs = 6
    filled.reload_success_time = 1_700_000_000.5
    results = [
        (
            "api",
            "http",
            True,
            Result(
                State.OK,
                latency=0.0123,
                phases={"connect": 0.001, "request": 0.01},
                components={"database": Component(State.OK, "up"), 'odd "name"': Component(State.UNKNOWN, "?")},
            ),
        ),
        ("cache", "redis", False, Result(State.UNHEALTHY, Reason.REFUSED, "connection refused", latency=0.002)),
        (
            "db",
            "postgres",
            True,
            Result(
                State.DEGRADED,
                message="lag",
                latency=7.5,
                gauges={"replication_lag_seconds": 42.0, "connection_usage_ratio": 0.25},
                info={"version": 'PostgreSQL 15.18 "quoted" \\ back', "role": "replica"},
            ),
        ),
        ("cert", "tls", True, Result(State.OK, latency=1e-05, gauges={"tls_cert_not_after_timestamp_seconds": 1.8e9})),
        ("bug", "tcp", True, Result(State.UNKNOWN, Reason.INTERNAL, "internal error", latency=0.3)),
        ("mem", "redis", False, Result(State.OK, latency=float("inf"), gauges={"memory_usage_ratio": 1.0})),
        (
            "jobs",
            "bullmq",
            True,
            Result(
                State.DEGRADED,
                message="email: 3 jobs waiting and no worker connected",
                latency=0.004,
                series={
                    "queue_jobs": (
                        (("email", "waiting"), 3.0),
                        (("email", "failed"), 12.0),
                        (('odd "q"', "active"), 0),
                    ),
                    "queue_oldest_waiting_age_seconds": ((("email",), 301.5),),
                    "queue_workers": ((("email",), 0.0),),
                },
            ),
        ),
        (
            "backup",
            "file",
            False,
            Result(
                State.OK,
                latency=0.001,
                gauges={"newest_object_timestamp_seconds": 1.7e9, "newest_object_size_bytes": 123456789.0},
            ),
        ),
        (
            "pending",
            "postgres",
            True,
            Result(State.OK, latency=0.02, series={"query_value": ((("pending",), 12.0), (("ratio",), 0.25))}),
        ),
    ]
    for name, kind, critical, result in results:
        status = TargetStatus(name, kind, critical, interval=15.0, histogram=Histogram(filled.duration_buckets))
        status.record(result, 1, 1, now=1_700_000_100.0)
        status.record(result, 1, 1, now=1_700_000_115.0)
        filled.targets[name] = status
    filled.targets["new"] = TargetStatus("new", "mongodb", True, interval=30.0)  # no result yet
    filled.groups = {"live": ("api",), "ready": ("api", "db", "cache", "gone")}  # a member not probed here
    for lag in (0.0, 0.004, 0.3, 12.0):
        filled.scheduler_lag.observe(lag)
    filled.http_events.update(body_rendered=3, body_shared=200)
    return filled


@pytest.mark.parametrize("buckets", [None, (), (1e-05, 0.5, 1, 25_000_000.0)], ids=["default", "none", "custom"])
@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_renderer_matches_prometheus_client(openmetrics: bool, buckets: tuple[float, ...] | None) -> None:
    """Also with metrics.duration_buckets: none (only +Inf), and bounds that Go formats with an exponent."""
    collector = ProberCollector(board(buckets))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if openmetrics:
        encoded = cast(bytes, openmetrics_latest(registry))  # type: ignore[no-untyped-call]
        expected = encoded.decode().removesuffix("# EOF\n")
    else:
        expected = generate_latest(registry).decode()
    assert render_collector(collector, openmetrics) == expected
    assert render_collector(collector, openmetrics) == expected  # again: label text kept from the first scrape


def duration_lines(buckets: tuple[float, ...]) -> list[str]:
    text = render_collector(ProberCollector(board(buckets)), openmetrics=False)
    return [line for line in text.splitlines() if line.startswith("prober_probe_duration") and '"api"' in line]


def test_duration_buckets_shape_the_histogram() -> None:
    assert duration_lines((0.01, 1, 25_000_000.0)) == [
        'prober_probe_duration_seconds_bucket{kind="http",le="0.01",target="api"} 0.0',
        'prober_probe_duration_seconds_bucket{kind="http",le="1.0",target="api"} 2.0',
        'prober_probe_duration_seconds_bucket{kind="http",le="2.5e+07",target="api"} 2.0',
        'prober_probe_duration_seconds_bucket{kind="http",le="+Inf",target="api"} 2.0',
        'prober_probe_duration_seconds_count{kind="http",target="api"} 2.0',
        'prober_probe_duration_seconds_sum{kind="http",target="api"} 0.0246',
    ]
    assert duration_lines(()) == [
        'prober_probe_duration_seconds_bucket{kind="http",le="+Inf",target="api"} 2.0',
        'prober_probe_duration_seconds_count{kind="http",target="api"} 2.0',
        'prober_probe_duration_seconds_sum{kind="http",target="api"} 0.0246',
    ]


def test_label_text_follows_reloads() -> None:
    filled = board()
    collector = ProberCollector(filled)
    render_collector(collector, openmetrics=False)
    filled.targets["api"] = TargetStatus("api", "tcp", True, interval=15.0)  # a reload changed its kind
    del filled.targets["cache"]  # and removed this one
    text = render_collector(collector, openmetrics=False)
    assert 'prober_target_critical{kind="tcp",target="api"} 1.0' in text
    assert 'kind="http",target="api"' not in text and 'target="cache"' not in text


def test_whole_registry_renders_in_both_formats() -> None:
    registry = make_registry(board())
    text = render(registry, openmetrics=False).decode()
    assert 'prober_up{kind="http",target="api"} 1.0' in text and "process_" in text
    om = render(cast(CollectorRegistry, registry), openmetrics=True).decode()
    assert om.endswith("# EOF\n")


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_the_test_board_has_a_sample_of_every_family(openmetrics: bool) -> None:
    """The byte-for-byte test above proves something only for families with samples: every family of the
    table (and every label it has) must appear in it."""
    text = render_collector(ProberCollector(board()), openmetrics)
    for family in TARGET_FAMILIES:
        name = family.sample_name if family.type != "histogram" else f"{family.name}_bucket"
        lines = [line for line in text.splitlines() if line.startswith(name + "{")]
        assert lines, f"no sample of {family.name}"
        assert all(f'{label}="' in lines[0] for label in ("kind", "target", *family.labels)), lines[0]
    for daemon in DAEMON_FAMILIES:
        assert f"\n{daemon.name}" in text, f"no sample of {daemon.name}"


def test_a_renderer_failure_falls_back_counted_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    registry = make_registry(board())
    expected = render(registry, openmetrics=False).decode()

    def broken(*_args: object) -> list[str]:
        raise ValueError("a bug in the fast renderer")

    monkeypatch.setattr(exposition, "_lines", broken)
    first = render(registry, openmetrics=False).decode()
    second = render(registry, openmetrics=True).decode()
    assert "prober_metrics_render_fallbacks_total 1.0" in first
    assert "prober_metrics_render_fallbacks_total 2.0" in second

    def samples(text: str) -> list[str]:
        """The prober's own samples, less the fallback counter (process_ and python_ ones vary)."""
        skipped = ("process_", "python_", "# ", "prober_metrics_render_fallbacks")
        return [line for line in text.splitlines() if not line.startswith(skipped)]

    assert samples(first) == samples(expected)
    assert len([r for r in caplog.records if "fast /metrics renderer failed" in r.getMessage()]) == 1
