"""Every recipe of docs/conditions.md, run as written there against real servers: the recipe's YAML block is
read from the document (placeholders filled from the environment, as a user's config would be) and probed."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from prober import config
from prober.models import TargetBase
from prober.probes import ProbeContext
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import ROOT
from tests.peers import redis as redis_peers
from tests.peers.postgres import (  # noqa: F401
    MONITOR_USER,
    SUPERUSER,
    PgServer,
    caught_up,
    pg_primary_fixture,
    pg_replica_fixture,
)
from tests.peers.web import Peers

redis_servers = redis_peers.redis_servers
RECIPE = re.compile(r"```yaml recipe=(?P<name>\w+)\n(?P<body>.*?)```", re.DOTALL)


def recipes() -> dict[str, str]:
    return {m["name"]: m["body"] for m in RECIPE.finditer((ROOT / "docs" / "conditions.md").read_text())}


def recipe(name: str, environ: Mapping[str, str]) -> TargetBase:
    text = "targets:\n" + "".join(f"  {line}\n" for line in recipes()[name].splitlines())
    loaded = config.validate(config.parse_yaml(text, f"docs/conditions.md ({name})"), name, environ, Path.cwd())
    (target,) = loaded.targets
    return target


def test_every_recipe_is_run_here() -> None:
    assert set(recipes()) == {
        "heap",
        "hsts",
        "certificate",
        "array",
        "version",
        "replica",
        "component",
        "pending",
        "queue",
    }


def said(result: Result) -> tuple[State, Reason | None]:
    return result.state, result.reason


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.5, (State.OK, None)), (0.9, (State.DEGRADED, None)), (0.97, (State.UNHEALTHY, Reason.ASSERTION))],
)
async def test_heap(peers: Peers, ctx: ProbeContext, ratio: float, expected: tuple[State, Reason | None]) -> None:
    body = {"status": "ok", "checks": {"database": {"status": "ok"}, "memory": {"heapUsedRatio": ratio}}}
    result = await run_probe(recipe("heap", {"API_READY_URL": peers.script(f"r-heap-{ratio}", body)}), ctx)
    assert said(result) == expected, result.message


async def test_hsts(peers: Peers, ctx: ProbeContext) -> None:
    secure = peers.script("r-hsts", "ok", headers={"Strict-Transport-Security": "max-age=63072000; preload"})
    plain = peers.script("r-no-hsts", "ok")
    assert said(await run_probe(recipe("hsts", {"SITE_URL": secure}), ctx)) == (State.OK, None)
    lost = await run_probe(recipe("hsts", {"SITE_URL": plain}), ctx)
    assert said(lost) == (State.UNHEALTHY, Reason.ASSERTION) and "strict-transport-security" in lost.message


@pytest.mark.parametrize(("peer", "state"), [("tls-valid", State.OK), ("tls-three-weeks", State.DEGRADED)])
async def test_certificate(peers: Peers, ctx: ProbeContext, peer: str, state: State) -> None:
    environ = {"TLS_ADDRESS": peers.address(peer), "TLS_CA_FILE": str(peers.certs.ca_file)}
    result = await run_probe(recipe("certificate", environ), ctx)
    assert result.state is state, result.message
    if state is State.DEGRADED:  # the default rule (14 days) does not hold: the recipe's condition does
        assert re.fullmatch(r"degraded: certificate\.days_left < 30 \((20\.9\d*|21\.0)\)", result.message), (
            result.message
        )


async def test_array(peers: Peers, ctx: ProbeContext) -> None:
    some = peers.script("r-workers", {"workers": [{"id": "w1", "queue": "email"}]})
    none = peers.script("r-no-workers", {"workers": []})
    assert said(await run_probe(recipe("array", {"WORKERS_URL": some}), ctx)) == (State.OK, None)
    assert said(await run_probe(recipe("array", {"WORKERS_URL": none}), ctx)) == (State.UNHEALTHY, Reason.ASSERTION)


async def test_version(peers: Peers, ctx: ProbeContext) -> None:
    pinned = peers.script("r-v2", {"version": "2.4.1"})
    moved = peers.script("r-v3", {"version": "3.0.0"})
    assert said(await run_probe(recipe("version", {"VERSION_URL": pinned}), ctx)) == (State.OK, None)
    broken = await run_probe(recipe("version", {"VERSION_URL": moved}), ctx)
    assert said(broken) == (State.UNHEALTHY, Reason.ASSERTION) and "(3.0.0)" in broken.message


async def test_replica(pg_primary: PgServer, pg_replica: PgServer, ctx: ProbeContext) -> None:
    """Replay paused on a real streaming replica: degraded past 1 s (the kind's rule), unhealthy past 3 s (the
    recipe's condition); back to ok once replay resumes."""
    made = recipe("replica", {"REPLICA_DSN": pg_replica.dsn(MONITOR_USER)})
    await asyncio.to_thread(pg_primary.sql, "INSERT INTO ticks DEFAULT VALUES")  # a fresh last transaction
    await asyncio.to_thread(caught_up, pg_primary, pg_replica)
    assert (await run_probe(made, ctx)).state is State.OK
    seen: list[tuple[State, Reason | None]] = []
    await asyncio.to_thread(pg_replica.sql, "SELECT pg_wal_replay_pause()")
    try:
        await asyncio.to_thread(pg_replica.wait_sql, "SELECT pg_get_wal_replay_pause_state()", "paused")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not seen or seen[-1][0] is not State.UNHEALTHY):
            await asyncio.to_thread(pg_primary.sql, "INSERT INTO ticks DEFAULT VALUES")
            await asyncio.sleep(0.3)
            seen.append(said(await run_probe(made, ctx)))
    finally:
        await asyncio.to_thread(pg_replica.sql, "SELECT pg_wal_replay_resume()")
    assert (State.DEGRADED, None) in seen and seen[-1] == (State.UNHEALTHY, Reason.ASSERTION), seen
    await asyncio.to_thread(caught_up, pg_primary, pg_replica)
    assert (await run_probe(made, ctx)).state is State.OK


def health(database: str = "up", redis: str = "up", minio: str = "up", status: str = "ok") -> dict[str, Any]:
    """The first stack's readiness body shape: its own word and one entry per dependency."""
    return {
        "status": status,
        "checks": {"database": {"status": database}, "redis": {"status": redis}, "minio": {"status": minio}},
    }


@pytest.mark.parametrize(
    ("body", "state", "words"),
    [
        (health(), State.OK, "HTTP 200"),
        (health(redis="down", status="degraded"), State.DEGRADED, "components: redis unhealthy"),
        (health(database="down", status="degraded"), State.UNHEALTHY, "critical component database down"),
        (health(minio="down"), State.DEGRADED, "degraded: components.minio == 'unhealthy' (unhealthy)"),
    ],
)
async def test_component(peers: Peers, ctx: ProbeContext, body: dict[str, Any], state: State, words: str) -> None:
    url = peers.script(f"r-components-{len(words)}-{state}", body)
    result = await run_probe(recipe("component", {"COMPONENTS_URL": url}), ctx)
    assert result.state is state and words in result.message, result.message
    assert {name: c.reported for name, c in result.components.items()} == {
        name: check["status"] for name, check in body["checks"].items()
    }


@pytest.mark.parametrize(("pending", "expected"), [(10, (State.OK, None)), (500, (State.DEGRADED, None))])
async def test_pending(
    pg_primary: PgServer, ctx: ProbeContext, pending: int, expected: tuple[State, Reason | None]
) -> None:
    sql = "CREATE TABLE recipe_jobs (state text); INSERT INTO recipe_jobs SELECT 'pending' FROM generate_series(1, {})"
    await asyncio.to_thread(pg_primary.sql, sql.format(pending))
    try:
        made = recipe("pending", {"JOBS_DSN": pg_primary.dsn(SUPERUSER, sslmode="disable")})
        result = await run_probe(made, ctx)
        assert said(result) == expected, result.message
        await asyncio.to_thread(
            pg_primary.sql, "INSERT INTO recipe_jobs SELECT 'pending' FROM generate_series(1, 1000)"
        )
        assert said(await run_probe(made, ctx)) == (State.UNHEALTHY, Reason.ASSERTION)
    finally:
        await asyncio.to_thread(pg_primary.sql, "DROP TABLE recipe_jobs")


async def eventually(check: Any, what: str) -> None:
    for _ in range(300):
        if check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"gave up waiting for {what}")


async def test_queue(redis_servers: redis_peers.Servers, ctx: ProbeContext) -> None:
    from bullmq import Queue, Worker

    server = redis_servers.server()

    async def fail(_job: Any, _token: str) -> None:
        raise ValueError("no")

    made = recipe("queue", {"QUEUE_REDIS_URL": server.url()})
    email = Queue("email", {"connection": server.url()})
    worker = Worker("email", fail, {"connection": server.url()})
    try:
        await eventually(lambda: worker.running, "the worker to start")
        assert said(await run_probe(made, ctx)) == (State.OK, None)
        for index in range(5):
            await email.add("send", {"n": index})
        await eventually(lambda: server.call("ZCARD", "bull:email:failed") == 5, "five failures")
        failing = await run_probe(made, ctx)
        assert said(failing) == (State.UNHEALTHY, Reason.ASSERTION), failing.message
        assert failing.message == "unhealthy: queues.email.failed_delta > 3 (5)"
    finally:
        await worker.close()
        await email.close()
