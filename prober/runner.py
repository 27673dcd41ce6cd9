"""One probe run, made safe: hard-bounded by the target's timeout, every failure turned into a
result value, the latency verdict applied and secrets masked. Nothing raises out of here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from prober.errors import ProbeFailure, describe
from prober.models import TargetBase, format_duration
from prober.probes import PROBES, ProbeContext
from prober.redact import REDACTOR
from prober.status import Reason, Result, State, unhealthy


def _from_failure(failure: ProbeFailure) -> Result:
    return unhealthy(failure.reason, failure.message, details=failure.details, gauges=failure.gauges)


def _internal(exc: BaseException) -> Result:
    return Result(State.UNKNOWN, Reason.INTERNAL, f"internal error: {type(exc).__name__}: {describe(exc)}", error=exc)


def _slow(target: TargetBase, result: Result) -> Result:
    limit = target.degraded_latency
    if limit is not None and result.state is State.OK and result.latency is not None and result.latency > limit:
        result.state = State.DEGRADED
        result.message = f"slow answer: {result.latency * 1000:.0f} ms > {format_duration(limit)}" + (
            f" ({result.message})" if result.message else ""
        )
    return result


async def run_probe(target: TargetBase, ctx: ProbeContext) -> Result:
    """Run the target's probe once. Returns a result for every outcome; re-raises only cancellation."""
    probe = PROBES[target.kind]
    started = time.perf_counter()
    try:
        async with asyncio.timeout(target.timeout):
            result = await probe(target, ctx)
    except TimeoutError:
        result = unhealthy(Reason.TIMEOUT, f"no answer within {format_duration(target.timeout)}")
    except ProbeFailure as failure:
        result = _from_failure(failure)
    except Exception as exc:  # a bug of ours: unknown, never unhealthy
        result = _internal(exc)
    if result.latency is None:
        result.latency = time.perf_counter() - started
    result = _slow(target, result)
    result.message = REDACTOR(result.message)
    if result.details:
        result.details = REDACTOR.deep(result.details)
    if result.info:
        result.info = {k: REDACTOR(v) for k, v in result.info.items()}
    return result


async def run_all(targets: Iterable[TargetBase], ctx: ProbeContext, max_concurrency: int) -> dict[str, Result]:
    """Probe every target once, concurrently (``prober once``)."""
    gate = asyncio.Semaphore(max_concurrency)

    async def one(target: TargetBase) -> tuple[str, Result]:
        async with gate:
            return target.name, await run_probe(target, ctx)

    return dict(await asyncio.gather(*(one(t) for t in targets)))
