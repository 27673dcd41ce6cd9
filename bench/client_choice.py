"""Why probe traffic goes through aiohttp, not httpx: CPU per HTTP probe, fresh connection each time.

Runs N requests (concurrency C) against nginx on loopback, through (a) the prober's own http probe
(one exchange on aiohttp's protocol, parser and writer, with body checks and the runner), (b) a bare
aiohttp ClientSession with force_close, and (c) httpx.AsyncClient with no keep-alive; prints CPU
milliseconds per request of this process (user+system).
Usage: python bench/client_choice.py [N]
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))

from bench.servers import Nginx, Stack
from prober.probes import ProbeContext
from prober.probes.http import HttpTarget
from prober.runner import run_probe

CONCURRENCY = 10


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(name: str, count: int, one: Callable[[], Awaitable[None]]) -> float:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def guarded() -> None:
        async with gate:
            await one()

    await asyncio.gather(*(guarded() for _ in range(50)))  # warm up
    started_cpu, started = cpu(), time.perf_counter()
    await asyncio.gather(*(guarded() for _ in range(count)))
    per_request = (cpu() - started_cpu) / count * 1000
    print(f"{name:<34} {per_request:6.3f} ms CPU/request   ({count / (time.perf_counter() - started):7.0f} req/s)")
    return per_request


async def main(count: int) -> None:
    stack = Stack()
    try:
        url = Nginx(stack).url(0)
        ctx = ProbeContext()
        target = HttpTarget(name="b", kind="http", url=url, body_status_field="status")

        async def prober_probe() -> None:
            result = await run_probe(target, ctx)
            assert result.state.value == "ok", result.message

        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits) as client:

            async def httpx_get() -> None:
                response = await client.get(url)
                assert response.status_code == 200

            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def aiohttp_get() -> None:
                    async with session.get(url) as response:
                        await response.read()

                ours = await measure("prober http probe (aiohttp parts)", count, prober_probe)
                bare = await measure("aiohttp ClientSession, bare", count, aiohttp_get)
                other = await measure("httpx.AsyncClient, no keep-alive", count, httpx_get)
        await ctx.close()
        print(f"httpx / prober probe: {other / ours:.1f}x   prober probe / bare aiohttp: {ours / bare:.2f}x")
    finally:
        stack.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
