"""prober: a dependency-health prober sidecar with Prometheus metrics and a JSON /status."""

__version__ = "0.1.0"
