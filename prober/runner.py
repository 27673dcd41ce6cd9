"""One probe run, made safe: hard-bounded by the target's timeout, its observations judged, every
failure turned into a result value, and secrets masked once, here, before anything is cut to length.
Nothing raises out of here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from prober.errors import MESSAGE_LIMIT, RUN_SECRETS, ProbeFailure, describe, shorten
from prober.judge import judge
from prober.models import TargetBase, format_duration
from prober.probes import KINDS, PROBES, ProbeContext
from prober.probes._budget import BUDGET, Budget
from prober.redact import MASK, REDACTOR
from prober.status import Component, Reason, Result, State, unhealthy


def _from_failure(failure: ProbeFailure) -> Result:
    return unhealthy(failure.reason, failure.message, details=failure.details, gauges=failure.gauges)


def _internal(exc: BaseException) -> Result:
    return Result(State.UNKNOWN, Reason.INTERNAL, f"internal error: {type(exc).__name__}: {describe(exc)}", error=exc)


class _Masked:
    """The redactor, plus the target's own secrets (in the daemon the redactor knows them already; a
    run started elsewhere, as in the tests, may not have told it)."""

    def __init__(self, target: TargetBase) -> None:
        self.secrets = target.redacted

    def text(self, text: str) -> str:
        text = REDACTOR(text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def deep(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()} if value else value
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value


def _masked(mask: _Masked, result: Result) -> Result:
    """Secrets out, then the message cut to length (in this order: see :func:`prober.errors.shorten`)."""
    result.message = shorten(mask.text(result.message), MESSAGE_LIMIT)
    if result.details:
        result.details = mask.deep(result.details)
    if result.info:
        result.info = {k: mask.text(v) for k, v in result.info.items()}
    if result.series:
        result.series = {
            family: tuple((tuple(mask.text(label) for label in labels), value) for labels, value in samples)
            for family, samples in result.series.items()
        }
    if result.components:
        result.components = {
            mask.text(name): Component(c.state, mask.text(c.reported)) for name, c in result.components.items()
        }
    return result


async def run_probe(target: TargetBase, ctx: ProbeContext) -> Result:
    """Run the target's probe once and judge it. Returns a result for every outcome; re-raises only
    cancellation."""
    probe = PROBES[target.kind]
    kind = KINDS[target.kind]
    budget = Budget(kind.byte_budget)  # what the peers of this run may send (prober/probes/_budget.py)
    token = BUDGET.set(budget)
    mask = _Masked(target)
    secrets_token = RUN_SECRETS.set(mask.secrets)  # masked before any cut, inside the kind too
    started = time.perf_counter()
    try:
        async with asyncio.timeout(target.timeout):
            observed = await probe(target, ctx)
        result = judge(target, observed, kind.rules, time.perf_counter() - started, kind.hidden)
    except TimeoutError:
        result = unhealthy(Reason.TIMEOUT, f"no answer within {format_duration(target.timeout)}")
    except ProbeFailure as failure:
        result = _from_failure(failure)
    except Exception as exc:  # a bug of ours: unknown, never unhealthy
        result = _internal(exc)
    finally:
        BUDGET.reset(token)
        RUN_SECRETS.reset(secrets_token)
    if budget.over:  # whatever the driver made of the dropped connection, the peer sent too much
        result = unhealthy(
            Reason.PROTOCOL, f"the peer sent more than {budget.limit} bytes in one run (the {target.kind} kind's limit)"
        )
    if result.latency is None:
        result.latency = time.perf_counter() - started
    return _masked(mask, result)


async def run_all(targets: Iterable[TargetBase], ctx: ProbeContext, max_concurrency: int) -> dict[str, Result]:
    """Probe every target once, concurrently (``prober once``)."""
    gate = asyncio.Semaphore(max_concurrency)

    async def one(target: TargetBase) -> tuple[str, Result]:
        async with gate:
            return target.name, await run_probe(target, ctx)

    return dict(await asyncio.gather(*(one(t) for t in targets)))
