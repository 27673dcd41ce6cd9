"""Backup freshness on S3: ``minio``'s ``newest_object`` against a real S3 server (SeaweedFS ``weed``, with
SigV4 checks) holding objects of controlled ages and sizes, a peer that stalls in the middle of a listing,
and the shared limits (sizes, ages)."""

from __future__ import annotations

import asyncio
import io
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
import urllib3
from minio import Minio
from pydantic import ValidationError

from prober.probes import ProbeContext
from prober.probes._freshness import format_size, parse_size
from prober.probes.minio import CANARY_PREFIX, MinioTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.peers import minio as peers
from tests.peers.minio import ACCESS_KEY, BUCKET, SECRET_KEY
from tests.peers.minio import Weed as WeedServer

weed = peers.weed


class Store:
    """A prefix of the test's own in the shared bucket, written with a client of the test's own."""

    def __init__(self, server: WeedServer) -> None:
        self.pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=5))
        self.client = Minio(f"127.0.0.1:{server.port}", ACCESS_KEY, SECRET_KEY, secure=False, http_client=self.pool)
        self.prefix = f"backups/{uuid.uuid4().hex[:8]}/"

    def put(self, name: str, size: int, under: str | None = None) -> None:
        key = (self.prefix if under is None else under) + name
        self.client.put_object(BUCKET, key, io.BytesIO(b"b" * size), size)

    def close(self) -> None:
        for item in self.client.list_objects(BUCKET, prefix=self.prefix, recursive=True):
            if item.object_name:
                self.client.remove_object(BUCKET, item.object_name)
        self.pool.clear()


@pytest.fixture
def store(weed: WeedServer) -> Iterator[Store]:
    made = Store(weed)
    try:
        yield made
    finally:
        made.close()


def target(server: WeedServer, prefix: str, **newest: Any) -> MinioTarget:
    return MinioTarget.model_validate(
        {
            "name": "backups",
            "kind": "minio",
            "endpoint": server.endpoint,
            "health_endpoints": False,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "bucket": BUCKET,
            "region": "us-east-1",
            "timeout": "5s",
            "newest_object": {"prefix": prefix, **newest},
        }
    )


async def probe(ctx: ProbeContext, server: WeedServer, prefix: str, **newest: Any) -> Result:
    return await run_probe(target(server, prefix, **newest), ctx)


async def test_the_newest_object_is_found(weed: WeedServer, store: Store, ctx: ProbeContext) -> None:
    store.put("2026-01-01.dump", 4000)
    await asyncio.sleep(1.1)  # S3 stamps LastModified itself: ages are made by waiting
    store.put("2026-01-02.dump", 5000)
    await asyncio.sleep(1.1)  # LastModified has a resolution of a second on this server
    store.put("0-sorts-first-but-is-older.dump", 10, under=store.prefix + "old/")  # first by name, newest by time
    before = time.time()
    result = await probe(ctx, weed, store.prefix, min_size="1B")
    assert result.state is State.OK, result.message
    newest = result.details["newest_object"]
    assert newest["key"] == store.prefix + "old/0-sorts-first-but-is-older.dump"
    assert newest["size"] == 10 and 0 <= newest["age_seconds"] < 5
    assert result.details["objects"] == 3 and result.details["listing_truncated"] is False
    assert abs(result.gauges["newest_object_timestamp_seconds"] - before) < 5
    assert result.gauges["newest_object_size_bytes"] == 10.0
    assert "newest_object" in result.phases
    assert result.message.endswith(f"newest object {newest_and_age(result)} old ({newest['key']})")


def newest_and_age(result: Result) -> str:
    from prober.probes._kit import human_duration

    return human_duration(result.details["newest_object"]["age_seconds"])


async def test_stale_is_degraded_then_unhealthy(weed: WeedServer, store: Store, ctx: ProbeContext) -> None:
    """Ages with room for S3's one-second Last-Modified and a loaded machine: fresh under 2 s, degraded between
    2 and 6 s, unhealthy past 6 s."""
    store.put("nightly.dump", 2048)
    limits = {"max_age": "2s", "unhealthy_age": "6s"}
    fresh = await probe(ctx, weed, store.prefix, **limits)
    assert fresh.state is State.OK, fresh.message
    await asyncio.sleep(2.5)
    stale = await probe(ctx, weed, store.prefix, **limits)
    assert stale.state is State.DEGRADED, stale.message
    assert re.fullmatch(
        rf"the newest object under {store.prefix} in bucket {BUCKET} is [2-5](\.\d+)?s old \(> max_age 2s\): "
        rf"{store.prefix}nightly\.dump",
        stale.message,
    ), stale.message
    await asyncio.sleep(4.0)
    dead = await probe(ctx, weed, store.prefix, **limits)
    assert (dead.state, dead.reason) == (State.UNHEALTHY, Reason.ASSERTION), dead.message
    assert "(> unhealthy_age 6s)" in dead.message


async def test_nothing_under_the_prefix_is_unhealthy(weed: WeedServer, store: Store, ctx: ProbeContext) -> None:
    store.put(f"{CANARY_PREFIX}only-a-canary", 100, under="")  # the probe's own canaries are no backup
    result = await probe(ctx, weed, store.prefix)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == f"no object under {store.prefix} in bucket {BUCKET}"
    assert result.details["objects"] == 0
    assert "newest_object_timestamp_seconds" not in result.gauges
    with suppress(Exception):
        store.client.remove_object(BUCKET, f"{CANARY_PREFIX}only-a-canary")


async def test_too_small_is_degraded(weed: WeedServer, store: Store, ctx: ProbeContext) -> None:
    store.put("truncated.dump", 100)
    result = await probe(ctx, weed, store.prefix, min_size="1KiB")
    assert result.state is State.DEGRADED, result.message
    assert result.message == (
        f"the newest object under {store.prefix} in bucket {BUCKET} is 100 B (< min_size 1.0 KiB): "
        f"{store.prefix}truncated.dump"
    )


async def test_an_empty_newest_object_is_degraded_by_default(weed: WeedServer, store: Store, ctx: ProbeContext) -> None:
    store.put("failed-pg_dump.dump", 0)
    result = await probe(ctx, weed, store.prefix)
    assert result.state is State.DEGRADED, result.message
    assert "is 0 B (< min_size 1 B)" in result.message


async def test_a_listing_past_max_keys_is_degraded_never_unhealthy(
    weed: WeedServer, store: Store, ctx: ProbeContext
) -> None:
    for index in range(5):
        store.put(f"{index}.dump", 10)
    await asyncio.sleep(1.2)
    result = await probe(ctx, weed, store.prefix, max_keys=3, max_age="1s", unhealthy_age="1100ms")
    assert result.state is State.DEGRADED, result.message  # stale too, but the newest may lie past the bound
    assert result.details["objects"] == 3 and result.details["listing_truncated"] is True
    assert f"listing stopped at max_keys (3) under {store.prefix} in bucket {BUCKET}" in result.message
    whole = await probe(ctx, weed, store.prefix, max_keys=5, max_age="1s", unhealthy_age="1100ms")
    assert whole.state is State.UNHEALTHY, whole.message  # the whole listing: the age is known
    assert whole.details["listing_truncated"] is False


async def test_conditions_read_the_newest_object(weed: WeedServer, store: Store, ctx: ProbeContext) -> None:
    store.put("a.dump", 3000)
    made = target(weed, store.prefix).model_copy(update={})
    data = made.model_dump(mode="json") | {"secret_key": SECRET_KEY, "degraded_if": ["newest_object.size < 4096"]}
    result = await run_probe(MinioTarget.model_validate(data), ctx)
    assert result.state is State.DEGRADED, result.message
    assert result.message == "degraded: newest_object.size < 4096 (3000)"


async def test_a_peer_that_stalls_in_the_middle_of_the_listing(ctx: ProbeContext) -> None:
    """S3 headers and the start of the XML, then nothing: a timeout within the run's timeout."""

    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        with suppress(OSError, asyncio.CancelledError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 4000\r\n\r\n"
                b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>'
            )
            await writer.drain()
            await asyncio.sleep(30)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    made = MinioTarget.model_validate(
        {
            "name": "backups",
            "kind": "minio",
            "endpoint": f"http://127.0.0.1:{port}",
            "health_endpoints": False,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "bucket": BUCKET,
            "region": "us-east-1",
            "timeout": "1s",
            "newest_object": {"prefix": "backups/"},
        }
    )
    try:
        started = time.monotonic()
        result = await run_probe(made, ctx)
        elapsed = time.monotonic() - started
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result.message
    assert elapsed < 1.5
    assert SECRET_KEY not in result.message


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"bucket": None}, "newest_object needs a bucket and keys"),
        ({"access_key": None, "secret_key": None}, "newest_object needs a bucket and keys"),
        ({"newest_object": {"max_age": "2h", "unhealthy_age": "1h"}}, r"unhealthy_age \(1h\) must be longer"),
        ({"newest_object": {"min_size": "1 furlong"}}, "expected a size such as 1KiB"),
        ({"newest_object": {"max_keys": 0}}, "greater than or equal to 1"),
        ({"newest_object": {"max_keys": 10_000_000}}, "less than or equal to 1000000"),
        ({"newest_object": {"prefix": "x/", "extra": 1}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_newest_object_configs(fields: dict[str, Any], complaint: str) -> None:
    data: dict[str, Any] = {
        "name": "b",
        "kind": "minio",
        "endpoint": "http://127.0.0.1:9000",
        "access_key": "k",
        "secret_key": "s",
        "bucket": "backups",
        "newest_object": {"prefix": "x/"},
    }
    with pytest.raises(ValidationError, match=complaint):
        MinioTarget.model_validate(data | fields)


def test_defaults() -> None:
    made = MinioTarget.model_validate(
        {"name": "b", "kind": "minio", "endpoint": "http://h:9000", "access_key": "k", "secret_key": "s"}
        | {"bucket": "backups", "newest_object": {}}
    )
    assert made.newest_object is not None
    assert (made.newest_object.prefix, made.newest_object.max_keys) == ("", 10_000)
    assert (made.newest_object.max_age, made.newest_object.unhealthy_age, made.newest_object.min_size) == (
        26 * 3600,
        None,
        1,
    )


@pytest.mark.parametrize(
    ("text", "size"),
    [("1KiB", 1024), ("20MB", 20_000_000), ("512B", 512), ("512", 512), (512, 512), ("1.5 GiB", 1610612736)],
)
def test_sizes(text: Any, size: int) -> None:
    assert parse_size(text) == size


def test_sizes_are_said_in_binary_units() -> None:
    assert [format_size(n) for n in (0, 1023, 1024, 5 * 1024**2, 3 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]
