"""The probe registry: one module per kind, one async function per module, one map from kind to it.

Every probe has the same signature, ``async def probe(target, ctx) -> Result``: it takes the target's
validated config and the shared :class:`ProbeContext`, lets its driver raise, maps the driver's
exceptions to a :class:`~prober.errors.ProbeFailure` in one place, and returns a result. The config
union :data:`Target` is discriminated on ``kind``; a test asserts it and :data:`PROBES` agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from pydantic import Field

from prober.probes import clickhouse, http, minio, mongodb, postgres, redis, tcp, tls
from prober.probes._context import ProbeContext
from prober.status import Result

ProbeFn = Callable[[Any, ProbeContext], Awaitable[Result]]

PROBES: dict[str, ProbeFn] = {
    "clickhouse": clickhouse.probe,
    "http": http.probe,
    "minio": minio.probe,
    "mongodb": mongodb.probe,
    "postgres": postgres.probe,
    "redis": redis.probe,
    "tcp": tcp.probe,
    "tls": tls.probe,
}

Target = Annotated[
    clickhouse.ClickhouseTarget
    | http.HttpTarget
    | minio.MinioTarget
    | mongodb.MongodbTarget
    | postgres.PostgresTarget
    | redis.RedisTarget
    | tcp.TcpTarget
    | tls.TlsTarget,
    Field(discriminator="kind"),
]

__all__ = ["PROBES", "ProbeContext", "ProbeFn", "Target"]
