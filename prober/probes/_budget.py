"""A byte budget per run, on every connection a probe's driver opens through the event loop.

A hostile or broken peer can announce a message of any size (a PostgreSQL message of 1 GiB, a Redis
bulk reply of 10^12 bytes) and then send it: the drivers buffer what was announced until it is whole.
Rather than teach every driver a limit, the runner gives each run a :class:`Budget` (a context
variable, so tasks a driver starts during the run share it) and the event loop's ``create_connection``
and ``start_tls`` (:func:`install`) put a counting protocol in front of the driver's own. Every byte a
peer sends during the run is counted; past the kind's budget (``BYTE_BUDGET`` in the kind's module,
documented in docs/kinds/<kind>.md) the connection is aborted and the run is ``protocol``, whatever the
driver made of the abort. Memory for one run is so bounded by about the budget plus one read (256 KiB).

The minio kind's S3 calls run synchronous urllib3 in a worker thread and count their bytes there
(``prober.probes.minio``), against the same limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

DEFAULT_BYTE_BUDGET = 4 * 2**20


class Budget:
    """The bytes one run may receive, over all its connections."""

    __slots__ = ("limit", "over", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.over = False

    def take(self, size: int) -> bool:
        """Count ``size`` received bytes; False once the budget is spent (the caller drops the
        connection)."""
        self.used += size
        if self.used > self.limit:
            self.over = True
        return not self.over


BUDGET: ContextVar[Budget | None] = ContextVar("prober_byte_budget", default=None)


class BudgetExceeded(ConnectionAbortedError):
    """What the driver is told when its connection is dropped for the budget."""


class _Counted(asyncio.Protocol):
    """In front of a driver's protocol: counts what arrives, forwards everything, aborts past the budget."""

    def __init__(self, inner: asyncio.BaseProtocol, budget: Budget) -> None:
        self.inner = inner
        self.budget = budget
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        _keep_counting(transport, self.budget)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None and self.budget.over:
            exc = BudgetExceeded(f"the peer sent more than {self.budget.limit} bytes in one run")
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def eof_received(self) -> bool | None:
        receive = getattr(self.inner, "eof_received", None)
        return receive() if receive is not None else None

    def _spent(self) -> None:
        abort = getattr(self.transport, "abort", None)
        if abort is not None:
            abort()

    def data_received(self, data: bytes) -> None:
        if self.budget.take(len(data)):
            self.inner.data_received(data)  # type: ignore[attr-defined]
        else:
            self._spent()


class _CountedBuffered(_Counted, asyncio.BufferedProtocol):
    """The same for a driver whose protocol reads into its own buffer."""

    def get_buffer(self, sizehint: int) -> Any:
        return self.inner.get_buffer(sizehint)  # type: ignore[attr-defined]

    def buffer_updated(self, nbytes: int) -> None:
        if self.budget.take(nbytes):
            self.inner.buffer_updated(nbytes)  # type: ignore[attr-defined]
        else:
            self._spent()


def _keep_counting(transport: asyncio.BaseTransport, budget: Budget) -> None:
    """A driver may hand the connection to another protocol of its own (asyncpg does, after its
    SSLRequest): the new one is counted too. asyncio's transports allow this; uvloop's do not, and there
    a driver that swaps protocols is counted only until the swap (uvloop is an opt-in)."""
    set_protocol = transport.set_protocol
    if getattr(set_protocol, "_prober_counted", False):
        return

    def counted_set_protocol(protocol: asyncio.BaseProtocol) -> None:
        counted = _counted(protocol, budget)
        counted.transport = transport
        set_protocol(counted)

    counted_set_protocol._prober_counted = True  # type: ignore[attr-defined]
    try:
        transport.set_protocol = counted_set_protocol  # type: ignore[method-assign]
    except AttributeError:
        pass


def _counted(inner: asyncio.BaseProtocol, budget: Budget) -> _Counted:
    if isinstance(inner, _Counted):
        return inner
    if isinstance(inner, asyncio.BufferedProtocol):
        return _CountedBuffered(inner, budget)
    return _Counted(inner, budget)


def install(loop: asyncio.AbstractEventLoop) -> bool:
    """Count bytes on the connections this loop makes while a run's budget is set. Returns False for a
    loop that does not allow it (uvloop's own class; the daemon runs uvloop through a subclass that
    does)."""
    if getattr(loop, "_prober_budget", False):
        return True
    create_connection: Callable[..., Any] = loop.create_connection
    start_tls: Callable[..., Any] = loop.start_tls

    async def counted_create_connection(protocol_factory: Callable[[], Any], *args: Any, **kwargs: Any) -> Any:
        budget = BUDGET.get()
        if budget is None:
            return await create_connection(protocol_factory, *args, **kwargs)
        transport, protocol = await create_connection(lambda: _counted(protocol_factory(), budget), *args, **kwargs)
        return transport, protocol.inner

    async def counted_start_tls(transport: Any, protocol: Any, *args: Any, **kwargs: Any) -> Any:
        budget = BUDGET.get()
        if budget is None:
            return await start_tls(transport, protocol, *args, **kwargs)
        counted = _counted(protocol, budget)
        tls_transport = await start_tls(transport, counted, *args, **kwargs)
        counted.transport = tls_transport
        if tls_transport is not None:
            _keep_counting(tls_transport, budget)
        return tls_transport

    try:
        loop.create_connection = counted_create_connection  # type: ignore[method-assign]
        loop.start_tls = counted_start_tls  # type: ignore[method-assign]
        loop._prober_budget = True  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return True
