"""The bullmq probe against real redis-server processes, with BullMQ's own client (PyPI ``bullmq``, the same
Lua scripts and key layout as the Node library) adding jobs and working on them, and against hostile peers."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import yaml
from bullmq import Queue, Worker
from pydantic import ValidationError

from prober.probes import ProbeContext
from prober.probes import bullmq as bullmq_probe
from prober.probes.bullmq import BullmqTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import free_port, run_cli
from tests.peers import redis as peers
from tests.peers.redis import (
    GARBAGE_REASONS,
    MASTER_NAME,
    PASSWORD,
    SENTINEL_PASSWORD,
    Garbage,
    Process,
    SentinelGroup,
    Servers,
    garbage_peer,
)

redis_servers = peers.redis_servers
sentinel_group = peers.sentinel_group

Handler = Callable[[Any, str], Awaitable[Any]]


def target(url: str, **fields: Any) -> BullmqTarget:
    values = {"name": "jobs", "kind": "bullmq", "url": url, "queues": ["email"], "timeout": "2s", **fields}
    return BullmqTarget.model_validate(values)


async def probe(ctx: ProbeContext, url: str, **fields: Any) -> Result:
    return await run_probe(target(url, **fields), ctx)


def connection(server: Process) -> dict[str, Any]:
    return {"connection": server.url()}


@asynccontextmanager
async def queue(server: Process, name: str = "email", **options: Any) -> AsyncIterator[Queue]:
    made = Queue(name, {**connection(server), **options})
    try:
        yield made
    finally:
        await made.close()


@asynccontextmanager
async def worker(server: Process, handler: Handler, name: str = "email", **options: Any) -> AsyncIterator[Worker]:
    made = Worker(name, handler, {**connection(server), **options})
    try:
        # started (its connections named) before anything else: a Worker closed before its run loop has
        # started leaves that loop's connections open (bullmq 3.4.4)
        await until(lambda: made.running, "the worker to start")
        yield made
    finally:
        await made.close()


async def succeed(_job: Any, _token: str) -> str:
    return "done"


async def fail(_job: Any, _token: str) -> None:
    raise ValueError("the mail server said no")


async def until(check: Callable[[], Any], what: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def counts(server: Process, name: str = "email") -> dict[str, int]:
    with server.client() as client:
        return {
            "wait": client.llen(f"bull:{name}:wait"),
            "active": client.llen(f"bull:{name}:active"),
            "failed": client.zcard(f"bull:{name}:failed"),
            "completed": client.zcard(f"bull:{name}:completed"),
        }


@pytest.fixture
def server(redis_servers: Servers) -> Process:
    return redis_servers.server()


# --- producers, workers, failures ------------------------------------------------------------------


async def test_jobs_waiting_without_a_worker_then_worked_off(ctx: ProbeContext, server: Process) -> None:
    async with queue(server) as email:
        for index in range(5):
            await email.add("send", {"to": f"user{index}@example.com"})
        await email.add("later", {}, {"delay": 60_000})
        await email.add("urgent", {}, {"priority": 1})
        waiting = await probe(ctx, server.url())
        assert waiting.state is State.DEGRADED, waiting.message
        assert waiting.message == "email: 6 jobs waiting and no worker connected"
        seen = waiting.details["queues"]["email"]
        bullmq_counts = await email.getJobCounts()  # BullMQ's own counts: wait and prioritized apart
        assert seen["waiting"] == bullmq_counts["waiting"] + bullmq_counts["prioritized"] == 6
        assert (seen["delayed"], seen["active"], seen["workers"], seen["paused"]) == (1, 0, 0, False)
        assert 0 <= seen["oldest_waiting_age_seconds"] < 5
        assert waiting.details["maxmemory_policy"] == "noeviction"
        async with worker(server, succeed):
            await until(lambda: counts(server)["completed"] == 6, "the worker to finish the jobs")
            done = await probe(ctx, server.url())
            assert done.state is State.OK, done.message
            seen = done.details["queues"]["email"]
            assert (seen["waiting"], seen["completed"], seen["delayed"]) == (0, 6, 1)
            assert seen["oldest_waiting_age_seconds"] is None  # nothing waits
            assert seen["workers"] >= 1  # the Python client names two connections per worker
            assert seen["workers"] == len(await email.get_workers())  # counted as Queue.getWorkers() counts
            assert done.message.startswith("1 queue: 0 waiting, 0 active, 0 failed since the last run")
            assert set(done.phases) == {"connect", "auth", "query"}


async def registered(email: Queue) -> None:
    """Wait until the worker's connections carry their names (what Queue.getWorkers() and the probe see)."""
    deadline = time.monotonic() + 15
    while not await email.get_workers():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker never registered")
        await asyncio.sleep(0.05)


async def test_a_worker_that_fails_jobs(ctx: ProbeContext, server: Process) -> None:
    made = target(server.url(), interval="30s", unhealthy_if=["queues.email.failed_delta > 2"])
    async with queue(server) as email, worker(server, fail):
        await registered(email)
        first = await run_probe(made, ctx)  # counts the failures of the last interval: none yet
        assert first.state is State.OK, first.message
        assert first.details["queues"]["email"]["failed_delta"] == 0
        for index in range(4):
            await email.add("send", {"n": index})
        await until(lambda: counts(server)["failed"] == 4, "four failures")
        failing = await run_probe(made, ctx)
        assert (failing.state, failing.reason) == (State.UNHEALTHY, Reason.ASSERTION), failing.message
        assert failing.message == "unhealthy: queues.email.failed_delta > 2 (4)"
        assert failing.details["queues"]["email"]["failed"] == 4
        quiet = await run_probe(made, ctx)  # the same failures are not counted twice
        assert quiet.state is State.OK, quiet.message
        assert quiet.details["queues"]["email"]["failed_delta"] == 0
        await email.add("send", {"n": 4})
        await until(lambda: counts(server)["failed"] == 5, "a fifth failure")
        one_more = await run_probe(made, ctx)
        assert one_more.details["queues"]["email"]["failed_delta"] == 1


async def fail_six_trimmed(server: Process, email: Queue) -> None:
    """Six jobs that fail one after the other, each waited for in the failed set (which keeps two)."""
    for index in range(6):
        job = await email.add("send", {"n": index}, {"removeOnFail": {"count": 2}})
        with server.client() as client:
            done = f"{job.id}"
            await until(lambda: client.zscore("bull:email:failed", done) is not None, f"job {done} failed")  # noqa: B023
        await asyncio.sleep(0.003)  # distinct finishedOn scores


async def test_failures_removed_by_remove_on_fail_with_bullmq_metrics(ctx: ProbeContext, server: Process) -> None:
    """``removeOnFail: {count: 2}`` keeps the failed set at two members; BullMQ's own failure counter (workers
    with ``metrics``) still says six."""
    made = target(server.url())
    async with queue(server) as email, worker(server, fail, metrics={"maxDataPoints": 60}):
        await email.add("send", {"n": -1}, {"removeOnFail": {"count": 2}})
        await until(lambda: counts(server)["failed"] == 1, "the counter to exist")
        assert (await run_probe(made, ctx)).details["queues"]["email"]["failed_delta"] == 1  # the last interval's
        await fail_six_trimmed(server, email)
        result = await run_probe(made, ctx)
    assert result.details["queues"]["email"]["failed"] == 2
    assert result.details["queues"]["email"]["failed_delta"] == 6


async def test_failures_removed_by_remove_on_fail_without_metrics(ctx: ProbeContext, server: Process) -> None:
    """Without BullMQ's counter the probe counts the failed jobs newer than the last it saw: the two the set
    keeps, not 0 as a difference of its sizes would say; the four removed before the run are not seen."""
    made = target(server.url())
    async with queue(server) as email, worker(server, fail):
        await email.add("send", {"n": -1}, {"removeOnFail": {"count": 2}})
        await until(lambda: counts(server)["failed"] == 1, "the first failure")
        await run_probe(made, ctx)
        await asyncio.sleep(0.003)
        await fail_six_trimmed(server, email)
        result = await run_probe(made, ctx)
    assert result.details["queues"]["email"]["failed"] == 2
    assert result.details["queues"]["email"]["failed_delta"] == 2


async def test_a_stopped_worker_leaves_jobs_waiting(ctx: ProbeContext, server: Process) -> None:
    async with queue(server) as email:
        async with worker(server, succeed):
            await email.add("send", {})
            await until(lambda: counts(server)["completed"] == 1, "the first job done")
            assert (await probe(ctx, server.url())).state is State.OK
        await email.add("send", {})  # the worker is gone
        result = await probe(ctx, server.url())
    assert result.state is State.DEGRADED, result.message
    assert result.message == "email: 1 job waiting and no worker connected"
    assert result.details["queues"]["email"]["workers"] == 0


async def test_a_paused_queue(ctx: ProbeContext, server: Process) -> None:
    async with queue(server) as email, worker(server, succeed):
        await email.pause()
        await email.add("send", {})
        await email.add("send", {})
        result = await probe(ctx, server.url())
        assert result.state is State.DEGRADED, result.message
        assert result.message == "email: paused with 2 jobs waiting"  # one problem, not also "no worker"
        assert result.details["queues"]["email"]["paused"] is True
        await email.resume()
        await until(lambda: counts(server)["completed"] == 2, "the jobs done after resume")
        resumed = await probe(ctx, server.url())
    assert resumed.state is State.OK, resumed.message
    assert resumed.details["queues"]["email"]["paused"] is False


async def test_an_aging_backlog(ctx: ProbeContext, server: Process) -> None:
    """A worker is connected but busy: the oldest waiting job gets older than max_wait."""
    release = asyncio.Event()

    async def stuck(_job: Any, _token: str) -> str:
        await release.wait()
        return "late"

    async with queue(server) as email, worker(server, stuck, concurrency=1):
        await email.add("first", {})
        await until(lambda: counts(server)["active"] == 1, "the first job taken")
        await email.add("second", {})
        await email.add("third", {})
        young = await probe(ctx, server.url(), max_wait="1s")
        assert young.state is State.OK, young.message
        await asyncio.sleep(1.3)
        old = await probe(ctx, server.url(), max_wait="1s")
        release.set()
    assert old.state is State.DEGRADED, old.message
    assert old.message.startswith("email: the oldest waiting job waits for 1.")
    assert old.message.endswith("s (max_wait 1s)")
    seen = old.details["queues"]["email"]
    assert seen["oldest_waiting_age_seconds"] > 1.3
    assert (seen["waiting"], seen["active"]) == (2, 1)
    assert old.series["queue_oldest_waiting_age_seconds"] == ((("email",), seen["oldest_waiting_age_seconds"]),)


async def test_a_delayed_job_waits_from_when_it_became_due(ctx: ProbeContext, server: Process) -> None:
    async with queue(server) as email:
        await email.add("later", {}, {"delay": 400})
        await asyncio.sleep(0.6)
        result = await probe(ctx, server.url())  # no worker promotes it; the counts read what Redis holds
    assert result.details["queues"]["email"]["delayed"] == 1
    await_seen = result.details["queues"]["email"]["oldest_waiting_age_seconds"]
    assert await_seen is None  # still in the delayed set: not waiting


async def test_eviction_policy_other_than_noeviction_is_degraded(ctx: ProbeContext, redis_servers: Servers) -> None:
    server = redis_servers.server("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
    async with queue(server) as email, worker(server, succeed):
        await email.add("send", {})
        await until(lambda: counts(server)["completed"] == 1, "the job done")
        result = await probe(ctx, server.url())
    assert result.state is State.DEGRADED, result.message
    assert result.message == (
        "maxmemory-policy is allkeys-lru: BullMQ requires noeviction (Redis may evict its keys, and jobs are lost "
        "without an error)"
    )
    assert result.details["maxmemory_policy"] == "allkeys-lru"


async def test_a_misspelt_queue_is_degraded(ctx: ProbeContext, server: Process) -> None:
    async with queue(server) as email, worker(server, succeed):
        await email.add("send", {})
        result = await probe(ctx, server.url(), queues=["email", "emial"])
    assert result.state is State.DEGRADED, result.message
    assert "emial: no such queue (no bull:emial:meta key" in result.message
    assert result.details["queues"]["emial"]["known"] is False


async def test_prefix_and_a_second_database(ctx: ProbeContext, server: Process) -> None:
    url = f"{server.url()}/3"
    async with queue(server, prefix="{myapp}", connection=url) as email:
        await email.add("send", {})
        result = await probe(ctx, url, prefix="{myapp}")
        elsewhere = await probe(ctx, server.url(), prefix="{myapp}")  # database 0 has nothing
    assert result.details["queues"]["email"]["waiting"] == 1
    assert elsewhere.details["queues"]["email"]["known"] is False


# --- queues: all ---------------------------------------------------------------------------------


async def test_all_queues_are_discovered(ctx: ProbeContext, server: Process) -> None:
    async with queue(server, "email") as email, queue(server, "thumbnails") as thumbnails:
        await email.add("send", {})
        await thumbnails.add("resize", {})
        result = await probe(ctx, server.url(), queues="all")
        found = await probe(ctx, server.url(), queues="all")
    assert sorted(result.details["queues"]) == ["email", "thumbnails"]
    assert result.details["discovery"] == {"complete": True, "queues_found": 2, "scan_calls": 1}
    assert found.details["discovery"]["scan_calls"] == 0  # the next discovery comes after RESCAN_AFTER
    assert result.message == (
        "email: 1 job waiting and no worker connected; thumbnails: 1 job waiting and no worker connected"
    )


async def test_discovery_is_capped_per_run_and_goes_on(ctx: ProbeContext, server: Process) -> None:
    """A keyspace larger than one run's SCAN budget: the first run says discovery is under way, the later
    ones finish it; every run costs at most SCAN_CALLS calls."""
    with server.client() as client, client.pipeline(transaction=False) as pipe:
        for index in range(40_000):
            pipe.set(f"filler:{index}", "x")
        pipe.hset("bull:email:meta", "opts.maxLenEvents", "10000")  # a queue with nothing waiting: every run ok
        pipe.execute()
    made = target(server.url(), queues="all")
    runs = [await run_probe(made, ctx) for _ in range(6)]
    assert all(r.state is State.OK for r in runs), [r.message for r in runs]
    first = runs[0].details["discovery"]
    assert first["scan_calls"] == bullmq_probe.SCAN_CALLS
    assert first["complete"] is False and "discovery under way" in first["note"]
    assert "discovery under way" in runs[0].message  # said in the message, not an alarm of its own
    assert all(r.details["discovery"]["scan_calls"] <= bullmq_probe.SCAN_CALLS for r in runs)
    assert runs[-1].details["discovery"]["complete"] is True
    assert list(runs[-1].details["queues"]) == ["email"]


async def test_discovery_caps_the_queues(ctx: ProbeContext, server: Process) -> None:
    with server.client() as client:
        for index in range(bullmq_probe.MAX_QUEUES + 5):
            client.hset(f"bull:q{index:03d}:meta", "opts.maxLenEvents", "10000")
    result = await probe(ctx, server.url(), queues="all")
    assert len(result.details["queues"]) == bullmq_probe.MAX_QUEUES
    assert result.details["discovery"]["capped"] == "55 queues found, the first 50 (by name) are read"
    assert len(result.series["queue_jobs"]) == bullmq_probe.MAX_QUEUES * len(bullmq_probe.STATES)


async def test_no_queue_at_all_is_degraded(ctx: ProbeContext, server: Process) -> None:
    result = await probe(ctx, server.url(), queues="all", prefix="nothing-here")
    assert result.state is State.DEGRADED, result.message
    assert result.message == "no BullMQ queue found (no nothing-here:*:meta key): a wrong prefix or database?"


# --- what the probe may not see -------------------------------------------------------------------


async def test_client_list_refused_leaves_workers_unknown(ctx: ProbeContext, server: Process) -> None:
    """An ACL user without CLIENT: workers are unknown (null, with a note), never reported as none."""
    server.call("ACL", "SETUSER", "probe", "on", ">Probe-pw-1", "~*", "+@read", "+info", "+ping", "-client")
    async with queue(server) as email:
        await email.add("send", {})
        result = await probe(ctx, server.url(user="probe", password="Probe-pw-1"))
    assert result.state is State.OK, result.message
    assert result.details["queues"]["email"]["workers"] is None
    assert result.details["workers_note"].startswith("CLIENT LIST is not permitted for this user")
    assert "queue_workers" in result.series and result.series["queue_workers"] == ()


async def test_a_replica_does_not_count_workers(ctx: ProbeContext, redis_servers: Servers) -> None:
    master = redis_servers.server()
    replica = redis_servers.replica(master)
    async with queue(master) as email:
        await email.add("send", {})
        await until(lambda: replica.info("replication")["master_repl_offset"] > 0, "replication")
        await until(lambda: counts(replica)["wait"] == 1, "the job on the replica")
        result = await probe(ctx, replica.url())
    assert result.state is State.OK, result.message
    assert result.details["role"] == "replica"
    assert result.details["queues"]["email"]["waiting"] == 1
    assert result.details["queues"]["email"]["workers"] is None
    assert "replica" in result.details["workers_note"]


async def test_a_key_of_another_type_is_not_a_queue(ctx: ProbeContext, server: Process) -> None:
    server.call("SET", "bull:email:wait", "not a list")
    result = await probe(ctx, server.url())
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message.startswith("bull:email:wait is not the LLEN type BullMQ uses: not a BullMQ queue?")


async def test_wrong_password_is_auth(ctx: ProbeContext, server: Process) -> None:
    result = await probe(ctx, server.url(password="Wrong-pw-1"))
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH), result.message


async def test_stopped_server_is_refused(ctx: ProbeContext, server: Process) -> None:
    server.stop()
    result = await probe(ctx, server.url())
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED), result.message


async def test_sentinel_discovers_the_master(ctx: ProbeContext, sentinel_group: SentinelGroup) -> None:
    master = sentinel_group.master
    async with queue(master) as email:
        await email.add("send", {})
        result = await probe(
            ctx,
            f"redis://:{PASSWORD}@ignored-with-sentinels",
            sentinels=sentinel_group.addresses(),
            master_name=MASTER_NAME,
            sentinel_password=SENTINEL_PASSWORD,
        )
    assert result.state is State.DEGRADED, result.message  # one job, no worker: read from the master
    assert result.details["queues"]["email"]["waiting"] == 1
    assert result.details["address"] == master.address
    assert result.details["sentinel"]["answered"] == 3
    assert set(result.phases) == {"sentinel", "connect", "auth", "query"}
    assert f"(master {master.address}, named by the Sentinels)" not in result.message  # degraded: the problem


# --- hostile peers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reasons"),
    GARBAGE_REASONS,
)
async def test_garbage_on_the_port(ctx: ProbeContext, mode: Garbage, reasons: set[Reason]) -> None:
    async with garbage_peer(mode) as peer:
        result = await probe(ctx, f"redis://:Garbage-pw-1@127.0.0.1:{peer.port}", timeout="1s")
    assert result.state is State.UNHEALTHY
    assert result.reason in reasons, result.message
    assert result.error is None
    assert "Garbage-pw-1" not in json.dumps([result.message, result.details])


async def test_a_peer_that_hangs_mid_answer(ctx: ProbeContext) -> None:
    """A peer that starts the INFO reply and stops halfway: a timeout naming the step, within the timeout."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            await reader.read(65536)  # the pipeline
            writer.write(b"$5000\r\n# Server\r\nredis_version:7.0.15\r\n")
            await writer.drain()
            await reader.read(65536)  # and nothing more
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        result = await probe(ctx, f"redis://127.0.0.1:{port}", timeout="1s")
        elapsed = time.monotonic() - started
    finally:
        server.close()
        await server.wait_closed()
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result.message
    assert result.message == f"no answer within 900ms (waiting for the queue counts of 127.0.0.1:{port})"
    assert elapsed < 1.5


async def test_nothing_listening(ctx: ProbeContext) -> None:
    result = await probe(ctx, f"redis://127.0.0.1:{free_port()}")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED)


# --- the memory of failed_delta -------------------------------------------------------------------


async def test_a_changed_target_forgets_its_previous_run(ctx: ProbeContext, server: Process) -> None:
    async with queue(server) as email, worker(server, fail):
        await registered(email)
        made = target(server.url())
        await run_probe(made, ctx)
        for index in range(3):
            await email.add("send", {"n": index})
        await until(lambda: counts(server)["failed"] == 3, "three failures")
        assert (await run_probe(made, ctx)).details["queues"]["email"]["failed_delta"] == 3
        same = target(server.url())  # a reload makes a new object with the same config: remembered
        ctx.retain([same])
        assert (await run_probe(same, ctx)).details["queues"]["email"]["failed_delta"] == 0
        changed = target(server.url(), max_wait="10m", interval="1h")  # another config: counts afresh
        ctx.retain([changed])
        assert (await run_probe(changed, ctx)).details["queues"]["email"]["failed_delta"] == 3  # within 1h
        ctx.retain([])  # removed
        assert ctx.memory(changed) == {}


# --- unit-level: client names and config -----------------------------------------------------------


def test_workers_are_matched_as_get_workers_matches_them() -> None:
    node = base64.b64encode(b"email").decode()
    listing = "\n".join(
        [
            f"id=1 addr=127.0.0.1:1 name=bull:{node} flags=b",  # a Node worker without a name
            f"id=2 addr=127.0.0.1:2 name=bull:{node}:w:mailer-1 flags=b",  # a named Node worker
            "id=3 addr=127.0.0.1:3 name=bull:email:w:py flags=b",  # the Python port's naming
            f"id=4 addr=127.0.0.1:4 name=bull:{node}:qe flags=N",  # QueueEvents: not a worker
            "id=5 addr=127.0.0.1:5 name=bull:emailer flags=N",  # another queue
            "id=6 addr=127.0.0.1:6 name= flags=N",
            f"id=7 addr=127.0.0.1:7 name=other:{node} flags=N",  # another prefix
        ]
    )
    assert bullmq_probe._count_workers(listing, "bull", ["email", "emailer"]) == {"email": 3, "emailer": 1}


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"queues": []}, r"expected a list of queue names \(\[email, thumbnails\]\) or all, got \[\]"),
        ({"queues": ["a:b"]}, r"queues\[0\]: a BullMQ queue name cannot contain ':'"),
        ({"queues": ["a", ""]}, r"queues\[1\]: expected a queue name"),
        ({"queues": ["a", "a"]}, "a queue is named twice"),
        ({"queues": [f"q{i}" for i in range(51)]}, "at most 50 queues per target, got 51"),
        ({"queues": "some"}, "or all, got 'some'"),
        ({"prefix": "has space"}, "String should match pattern"),
        ({"max_wait": "5"}, "expected a duration"),
        ({"sentinels": ["127.0.0.1:26379"]}, "set both sentinels and master_name"),
    ],
)
def test_bad_configs_are_refused(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        target("redis://127.0.0.1:6379", **fields)


def test_where_names_the_queues() -> None:
    assert target("redis://cache:6379/2").where() == "redis://cache:6379/2 (queues email, prefix bull)"
    assert target("redis://cache:6379", queues="all").where() == "redis://cache:6379 (all queues, prefix bull)"


async def test_prober_once_json(server: Process, tmp_path: Path) -> None:
    async with queue(server) as email:
        await email.add("send", {})
        config = tmp_path / "prober.yaml"
        password = tmp_path / "redis-password"
        password.write_text(PASSWORD + "\n")
        entry = {"name": "jobs", "kind": "bullmq", "url": f"redis://127.0.0.1:{server.port}", "queues": ["email"]}
        config.write_text(yaml.safe_dump({"targets": [entry | {"password_file": str(password)}]}))
        done = await asyncio.to_thread(run_cli, "once", "-c", str(config), "--json")
    assert done.returncode == 1, done.stderr  # degraded: one job waits, no worker
    check = json.loads(done.stdout)["checks"]["jobs"]
    assert check["status"] == "degraded" and check["kind"] == "bullmq"
    assert check["details"]["queues"]["email"]["waiting"] == 1
    assert PASSWORD not in done.stdout + done.stderr
