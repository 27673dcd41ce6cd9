"""The probe kit: the mechanics every kind's run shares, written once.

* one deadline rule: a run's own deadline is its ``timeout`` less a margin (a tenth of it, at most
  250 ms), so the step that hangs is the one a timeout names, and there is time left to close;
* one phase timer (``with run.phase("connect"):``);
* one bound on a step (``async with run.bounded("no answer to the query"):``), whose timeout names it.

Texts are shortened by :func:`prober.errors.shorten` (which masks secrets before it cuts), and a
result is redacted once, in the runner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

from prober.errors import ProbeFailure
from prober.models import format_duration
from prober.status import Reason

MARGIN_SHARE = 0.1  # of the timeout, kept back from a run's own deadline ...
MAX_MARGIN = 0.25  # ... but never more than this many seconds


def margin(timeout: float) -> float:
    """What a run keeps back from its timeout: time to report the step that hung and to close."""
    return min(MAX_MARGIN, timeout * MARGIN_SHARE)


class Run:
    """One run of one target: its deadline and its phases. Made by :meth:`ProbeContext.begin`."""

    __slots__ = ("deadline", "phases", "started", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.started = time.perf_counter()
        self.deadline = asyncio.get_running_loop().time() + timeout - margin(timeout)
        self.phases: dict[str, float] = {}

    def left(self, floor: float = 0.01) -> float:
        """Seconds left before the run's own deadline (at least ``floor``, for drivers that want a
        positive timeout)."""
        return max(self.deadline - asyncio.get_running_loop().time(), floor)

    @property
    def budget(self) -> float:
        """The run's own time, from its start to its deadline."""
        return self.timeout - margin(self.timeout)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time one phase of the run (recorded even when the step fails)."""
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = time.perf_counter() - begun

    @asynccontextmanager
    async def bounded(self, on_timeout: str | Callable[[], str]) -> AsyncIterator[None]:
        """Bound a step by the run's deadline; reaching it is a ``timeout`` failure saying ``on_timeout``
        (a callable is asked when the time is up: it can name the step the run was waiting in)."""
        try:
            async with asyncio.timeout_at(self.deadline):
                yield
        except TimeoutError:
            raise ProbeFailure(Reason.TIMEOUT, on_timeout if isinstance(on_timeout, str) else on_timeout()) from None


def human_duration(seconds: float) -> str:
    """A duration as people say it, in its two largest units: ``3.2s``, ``42s``, ``7m12s``, ``26h``, ``3d2h``."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.2g}s"
    left = round(seconds)
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    for index, (unit, size) in enumerate(units):
        if left >= size or unit == "s":
            first, rest = divmod(left, size)
            said = f"{first}{unit}"
            if index + 1 < len(units) and rest // units[index + 1][1]:
                said += f"{rest // units[index + 1][1]}{units[index + 1][0]}"
            return said
    return f"{left}s"  # unreachable: the loop ends with seconds


def config_duration(seconds: float) -> str:
    """A duration as a config writes it (the units a config takes: h, m, s, ms): ``26h``, ``90m``, ``45s``."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return format_duration(seconds)
