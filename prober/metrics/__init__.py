"""Prometheus metrics: every family defined once in :mod:`.families`, exposed by :mod:`.exposition`."""

from prober.metrics.exposition import ProberCollector, ProberRegistry, make_registry, render, render_collector
from prober.metrics.families import DAEMON_FAMILIES, GAUGES, LAG_BUCKETS, TARGET_FAMILIES

__all__ = [
    "DAEMON_FAMILIES",
    "GAUGES",
    "LAG_BUCKETS",
    "TARGET_FAMILIES",
    "ProberCollector",
    "ProberRegistry",
    "make_registry",
    "render",
    "render_collector",
]
