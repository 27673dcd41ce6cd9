"""Start the prober daemon with benchmark-only variations, to measure levers before they are wired in.

    python -m bench.variants run -c CONFIG ...     (the same arguments as ``python -m prober``)

Environment: ``BENCH_UVLOOP=1`` runs the daemon on uvloop (``uvloop.install()``, the optional extra);
``BENCH_METRICS=loop`` serves /metrics with ``prober.metrics.render`` on the event loop,
``BENCH_METRICS=thread`` does the same in a worker thread (``asyncio.to_thread``). These replace
``Api.metrics`` in this process only: the proposed wiring for prober/server.py, measured as is.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiohttp import web
from prometheus_client.exposition import choose_encoder


def _patch_metrics(mode: str) -> None:
    from prober import metrics, server

    async def fast_metrics(self: server.Api, request: web.Request) -> web.Response:
        _, content_type = choose_encoder(request.headers.get("Accept", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        if mode == "thread":
            body = await asyncio.to_thread(metrics.render, self.registry, openmetrics)
        else:
            body = metrics.render(self.registry, openmetrics)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    server.Api.metrics = fast_metrics  # type: ignore[method-assign]


def main() -> int:
    if os.environ.get("BENCH_UVLOOP") == "1":
        import uvloop

        uvloop.install()
    mode = os.environ.get("BENCH_METRICS", "")
    if mode in ("loop", "thread"):
        _patch_metrics(mode)
    from prober.cli import main as prober_main

    return prober_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
