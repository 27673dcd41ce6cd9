"""What reading connection strings as the applications write them costs: `python -m bench.stacks`.

Measured in one run, against each other, and written to bench/STACKS.md:

1. the redactor with and without the credential-query-parameter pass, per message (uncached: a message seen
   before is answered from the redactor's memory, which costs the same either way);
2. parsing a DSN (the first time for a text, and from the parse cache every run after);
3. the postgres probe's CPU and wall time per run against a real PostgreSQL 15, with a plain libpq URL and
   with a Prisma URL whose `schema` the facts query checks (the same server, alternating, same process).
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from prober import redact
from prober.models import TargetBase
from prober.probes import ProbeContext, Target
from prober.probes.postgres import parse_dsn
from prober.runner import run_probe
from prober.status import State

OUT = Path(__file__).with_name("STACKS.md")
MESSAGES = [
    "HTTP 200, status=ok",
    "connection refused",
    "primary, PostgreSQL 15.18",
    "GET https://api.example.org/3/configuration?api_key=0123456789abcdef&language=en answered HTTP 401",
    'PostgreSQL server at "127.0.0.1:5432" rejected SSL upgrade',
    "no answer within 4.75s (authenticating to 10.0.0.5:6379)",
]


def _per_call(call: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        call()
    return (time.perf_counter() - started) / rounds


def _redact_before(text: str, secrets: tuple[str, ...]) -> str:
    """``Redactor._redact`` as it was before the credential-query pass (the same three passes)."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, redact.MASK)
    text = redact._USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{redact.MASK}@", text)
    text = redact._SCHEME_TOKEN.sub(lambda m: f"{m['scheme']} {redact.MASK}", text)
    return redact._KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{redact.MASK}", text)


def redactor_cost(rounds: int = 20000) -> tuple[float, float]:
    secrets = ("s3cr3t-password-1", "another-secret-2")
    with_query = _per_call(lambda: [redact.Redactor._redact(m, secrets) for m in MESSAGES], rounds)
    without = _per_call(lambda: [_redact_before(m, secrets) for m in MESSAGES], rounds)
    return with_query / len(MESSAGES), without / len(MESSAGES)


def parse_cost(rounds: int = 2000) -> tuple[float, float]:
    dsn = "postgresql://app:pw@db:5432/app?schema=public&connection_limit=10&pool_timeout=20&sslmode=require"
    counter = iter(range(10**9))
    first = _per_call(lambda: parse_dsn(f"{dsn}&application_name=a{next(counter)}"), rounds)
    cached = _per_call(lambda: parse_dsn(dsn), rounds * 50)
    return first, cached


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def postgres_cost(runs: int) -> dict[str, tuple[float, float]]:
    from tests.peers.postgres import APP_USER, make_primary

    server = make_primary()
    adapter = TypeAdapter[TargetBase](Target)
    try:
        targets = {
            "libpq URL": adapter.validate_python(
                {"name": "a", "kind": "postgres", "dsn": server.dsn(APP_USER, sslmode="disable")}
            ),
            "Prisma URL, schema checked": adapter.validate_python(
                {
                    "name": "b",
                    "kind": "postgres",
                    "dsn": server.dsn(APP_USER, schema="public", connection_limit="10", sslmode="disable"),
                }
            ),
        }
        ctx = ProbeContext()
        cpu = {name: 0.0 for name in targets}
        wall: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(runs):
            for name, target in targets.items():
                before_cpu, before = _cpu(), time.perf_counter()
                result = await run_probe(target, ctx)
                wall[name].append(time.perf_counter() - before)
                cpu[name] += _cpu() - before_cpu
                assert result.state is State.OK, result.message
        await ctx.close()
        return {name: (cpu[name] / runs, statistics.median(wall[name])) for name in targets}
    finally:
        server.destroy()


def main() -> None:
    with_query, without = redactor_cost()
    first, cached = parse_cost()
    runs = int(os.environ.get("BENCH_PG_RUNS", "300"))
    pg = asyncio.run(postgres_cost(runs))
    (plain_cpu, plain_wall), (prisma_cpu, prisma_wall) = pg.values()
    lines = [
        "# What reading the applications' connection strings costs",
        "",
        f"Command: `.venv/bin/python -m bench.stacks`; {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| what | measured | compared with | ratio |",
        "|---|---|---|---|",
        f"| redactor, one uncached message, with the credential-query pass | {with_query * 1e6:.2f} µs | "
        f"{without * 1e6:.2f} µs without it | {with_query / without:.2f} |",
        f"| parsing a Prisma DSN (first time for a text) | {first * 1e6:.1f} µs | {cached * 1e6:.2f} µs from the "
        f"parse cache (every run after) | {first / cached:.0f} |",
        f"| postgres run, Prisma URL with `schema` checked: CPU | {prisma_cpu * 1e3:.2f} ms | "
        f"{plain_cpu * 1e3:.2f} ms with a libpq URL | {prisma_cpu / plain_cpu:.2f} |",
        f"| postgres run, Prisma URL with `schema` checked: wall (median) | {prisma_wall * 1e3:.2f} ms | "
        f"{plain_wall * 1e3:.2f} ms with a libpq URL | {prisma_wall / plain_wall:.2f} |",
        "",
        f"{runs} runs of each postgres target, alternating, against one real PostgreSQL 15 on loopback "
        "(plaintext, a fresh connection per run); both run the same one-round-trip facts query, whose schema "
        "lookup is a bound parameter (null without a schema). The redactor remembers the result per text, so a "
        "repeated message costs one dict lookup either way; the table shows the first time a text is seen.",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
