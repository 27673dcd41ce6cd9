"""What the workload checks cost per run: bullmq on a queue of ten jobs against one of a million, the file kind,
minio's newest_object, and query: on postgres, clickhouse and mongodb, each beside its kind without the check.

    .venv/bin/python -m bench.workload [--window 20] [--jobs 1000000] [--out bench/WORKLOAD.md]

Method (the same as bench/run.py's "Dependency probes"): one ``python -m prober run`` process per case, five
targets every second, all cases of a group running at once over the same window; CPU per run is the prober
process's utime+stime (/proc, all threads: minio-py's and the file kind's worker threads included) divided by
its runs (``prober_probe_duration_seconds_count``), wall time per run the mean of that histogram; for bullmq the
redis-server's own CPU per run is shown too (one server per case). Absolute numbers move on a shared machine;
the cases of one group are measured side by side.

Peers: redis-server, PostgreSQL 15 (Debian); SeaweedFS ``weed`` (S3), the ClickHouse engine behind the tests'
HTTP front, nx-27017 (MongoDB wire protocol) from the test requirements (``.ci/requirements-test.txt``),
started with the tests' own helpers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.servers import ROOT, Postgres, Prober, Redis, Stack, cpu_seconds, parse_metrics

COUNT, INTERVAL = 5, 1.0  # targets per case, seconds between runs
HISTOGRAM = {"prober_probe_duration_seconds_sum", "prober_probe_duration_seconds_count"}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def runs_and_wall(text: str) -> tuple[float, float]:
    found = parse_metrics(text, HISTOGRAM)
    return (
        sum(v for _, v in found["prober_probe_duration_seconds_count"]),
        sum(v for _, v in found["prober_probe_duration_seconds_sum"]),
    )


def measure(
    stack: Stack, cases: dict[str, dict[str, Any]], window: float, servers: dict[str, int] | None = None
) -> dict[str, dict[str, Any]]:
    """Run every case (one prober process each, COUNT copies of its target) at once over one window."""
    timing = {"interval": f"{INTERVAL:g}s", "timeout": "900ms"}
    probers = {
        name: Prober(stack, [{**timing, **target, "name": f"t{i}"} for i in range(COUNT)], name=f"prober-{name}")
        for name, target in cases.items()
    }
    for prober in probers.values():
        prober.wait_ready()
    time.sleep(2)
    servers = servers or {}
    before = {name: (p.proc.cpu(), runs_and_wall(p.metrics()[0])) for name, p in probers.items()}
    server_before = {name: cpu_seconds(pid) for name, pid in servers.items()}
    time.sleep(window)
    after = {name: (p.proc.cpu(), runs_and_wall(p.metrics()[0])) for name, p in probers.items()}
    server_after = {name: cpu_seconds(pid) for name, pid in servers.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, prober in probers.items():
        runs = after[name][1][0] - before[name][1][0]
        wall = after[name][1][1] - before[name][1][1]
        checks = prober.status()["checks"]
        out[name] = {
            "runs": runs,
            "cpu_ms": (after[name][0] - before[name][0]) / max(runs, 1) * 1000,
            "wall_ms": wall / max(runs, 1) * 1000,
            "states": sorted({c["status"] for c in checks.values()}),
            "message": next(iter(checks.values()))["message"],
        }
        if name in servers:
            out[name]["server_cpu_ms"] = (server_after[name] - server_before[name]) / max(runs, 1) * 1000
        stack.stop(prober.proc)
    return out


# --- bullmq ----------------------------------------------------------------------------------------

FILL = """
local now = ARGV[3]
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('HSET', KEYS[1] .. i, 'name', 'send', 'data', '{"to":"user' .. i .. '@example.com"}',
    'opts', '{"attempts":0,"delay":0}', 'timestamp', now, 'delay', '0', 'priority', '0')
  redis.call('LPUSH', KEYS[2], i)
end
redis.call('SET', KEYS[3], ARGV[2])
return 1
"""


def fill_queue(redis: Redis, jobs: int) -> None:
    """Ten jobs added by BullMQ's own client (the layout is BullMQ's), then ``jobs - 10`` more written in the
    same layout (a job hash each, its id pushed on the wait list), a hundred failed and completed ones."""
    from bullmq import Queue

    async def add() -> None:
        queue = Queue("email", {"connection": redis.url})
        try:
            for index in range(10):
                await queue.add("send", {"to": f"user{index}@example.com"})
            for _ in range(100):
                await queue.add("old", {}, {"removeOnFail": False})
        finally:
            await queue.close()

    asyncio.run(add())
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    try:
        with client.pipeline(transaction=False) as pipe:  # the hundred "old" jobs: 50 failed, 50 completed
            for job in range(11, 111):
                pipe.lrem("bull:email:wait", 1, str(job))
                pipe.zadd("bull:email:failed" if job % 2 else "bull:email:completed", {str(job): time.time() * 1000})
            pipe.execute()
        script = client.register_script(FILL)
        now = str(int(time.time() * 1000))
        step = 50_000
        for start in range(1000, 1000 + jobs - 10, step):
            end = min(start + step - 1, 1000 + jobs - 11)
            script(keys=["bull:email:", "bull:email:wait", "bull:email:id"], args=[start, end, now])
        waiting = client.llen("bull:email:wait")
        assert waiting == jobs, waiting
    finally:
        client.close()


def bullmq(stack: Stack, window: float, jobs: int) -> dict[str, dict[str, Any]]:
    small, big = Redis(stack), Redis(stack)
    log(f"bullmq: filling a queue of 10 jobs and one of {jobs:,}")
    started = time.monotonic()
    fill_queue(small, 10)
    fill_queue(big, jobs)
    log(f"bullmq: filled in {time.monotonic() - started:.0f}s; measuring {window:g}s")
    named = {"kind": "bullmq", "queues": ["email"], "max_wait": "1h"}
    cases = {
        "bullmq, 10 jobs": {"url": small.url, **named},
        f"bullmq, {jobs:,} jobs": {"url": big.url, **named},
    }
    servers = {name: server.proc.pid for name, server in zip(cases, (small, big), strict=True)}
    results = measure(stack, cases, window, servers)
    log("bullmq: queues: all on both, and the redis kind on the small one")
    wider = {
        "bullmq queues: all, 10 jobs": {"url": small.url, "kind": "bullmq", "queues": "all", "max_wait": "1h"},
        f"bullmq queues: all, {jobs:,} jobs": {"url": big.url, "kind": "bullmq", "queues": "all", "max_wait": "1h"},
        "redis kind (PING, INFO), same server": {"url": small.url, "kind": "redis"},
    }
    servers = {
        "bullmq queues: all, 10 jobs": small.proc.pid,
        f"bullmq queues: all, {jobs:,} jobs": big.proc.pid,
        "redis kind (PING, INFO), same server": small.proc.pid,
    }
    results.update(measure(stack, wider, window, {k: v for k, v in servers.items() if "all" in k}))
    for proc in (small.proc, big.proc):
        stack.stop(proc)
    return results


# --- files ----------------------------------------------------------------------------------------


def files(stack: Stack, window: float) -> dict[str, dict[str, Any]]:
    few, many = stack.dir / "few", stack.dir / "many"
    for directory, count in ((few, 30), (many, 10_000)):
        directory.mkdir()
        for index in range(count):
            (directory / f"db-{index:05d}.dump").write_bytes(b"d" * 2048)
    log(f"file: 30 files against 10,000; {window:g}s")
    cases = {
        "file, 30 files": {"kind": "file", "path": f"{few}/db-*.dump"},
        "file, 10,000 files (max_files)": {"kind": "file", "path": f"{many}/db-*.dump"},
    }
    return measure(stack, cases, window)


# --- S3 -------------------------------------------------------------------------------------------


def s3(stack: Stack, window: float) -> dict[str, dict[str, Any]]:
    from minio import Minio

    from tests.peers.minio import ACCESS_KEY, BUCKET, SECRET_KEY, running_weed

    with running_weed(stack.dir / "weed") as weed:
        client = Minio(f"127.0.0.1:{weed.port}", ACCESS_KEY, SECRET_KEY, secure=False)
        log("minio: writing 10 and 3,000 objects")
        for prefix, count in (("few/", 10), ("many/", 3000)):
            for index in range(count):
                client.put_object(BUCKET, f"{prefix}{index:05d}.dump", io.BytesIO(b"b" * 2048), 2048)
        base = {
            "kind": "minio",
            "endpoint": weed.endpoint,
            "health_endpoints": False,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "bucket": BUCKET,
            "region": "us-east-1",
        }
        base["interval"], base["timeout"] = "5s", "4s"  # listing 3,000 keys takes longer than the 900ms of others
        cases = {
            "minio, bucket only": base,
            "minio newest_object, 10 objects": {**base, "newest_object": {"prefix": "few/"}},
            "minio newest_object, 3,000 objects": {**base, "newest_object": {"prefix": "many/"}},
        }
        log(f"minio: {2 * window:g}s")
        return measure(stack, cases, 2 * window)  # runs every 5 s: twice the window for enough runs


# --- queries --------------------------------------------------------------------------------------


def postgres(stack: Stack, window: float) -> dict[str, dict[str, Any]]:
    pg = Postgres(stack)
    try:
        sql = (
            "CREATE TABLE jobs (id serial PRIMARY KEY, state text NOT NULL, created timestamptz NOT NULL); "
            "INSERT INTO jobs (state, created) SELECT CASE WHEN n % 10 = 0 THEN 'pending' ELSE 'done' END, "
            "now() - n * interval '1 second' FROM generate_series(1, 100000) AS n; "
            "CREATE INDEX ON jobs (state, created); ANALYZE jobs"
        )
        subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", "postgres", "-qc", sql],
            env={**os.environ, "PGPASSWORD": pg.password},
            check=True,
            capture_output=True,
        )
        query = (
            "SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - min(created)), 0)::int AS oldest_seconds "
            "FROM jobs WHERE state = 'pending'"
        )
        cases = {
            "postgres": {"kind": "postgres", "dsn": pg.dsn},
            "postgres query (count over 100,000 rows, index)": {"kind": "postgres", "dsn": pg.dsn, "query": query},
        }
        log(f"postgres: {window:g}s")
        return measure(stack, cases, window)
    finally:
        pg.stop()


def clickhouse(stack: Stack, window: float) -> dict[str, dict[str, Any]]:
    from tests.peers.clickhouse import ChdbFront

    (stack.dir / "chdb").mkdir()
    front = ChdbFront(stack.dir / "chdb").start()
    try:
        front.run("CREATE TABLE app.logs (level String, ts DateTime) ENGINE = MergeTree ORDER BY ts")
        front.run(
            "INSERT INTO app.logs SELECT if(number % 50 = 0, 'error', 'info'), now() - number FROM numbers(100000)"
        )
        query = "SELECT countIf(level = 'error') AS errors FROM app.logs WHERE ts > now() - INTERVAL 1 HOUR"
        cases = {
            "clickhouse": {"kind": "clickhouse", "url": front.url()},
            "clickhouse query (countIf over 100,000 rows)": {"kind": "clickhouse", "url": front.url(), "query": query},
        }
        log(f"clickhouse: {window:g}s")
        return measure(stack, cases, window)
    finally:
        front.stop()


def mongodb(stack: Stack, window: float) -> dict[str, dict[str, Any]]:
    import pymongo

    from tests.peers.mongodb import nx_server

    directory = stack.dir / "nx"
    directory.mkdir()
    with nx_server(directory) as server:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(server.uri, directConnection=True)
        try:
            client.app.devices.insert_many([{"name": f"d{i}", "online": i % 20 != 0} for i in range(1000)])
        finally:
            client.close()
        uri = f"{server.uri}app"
        cases = {
            "mongodb": {"kind": "mongodb", "uri": uri},
            "mongodb query (count over 1,000 documents)": {
                "kind": "mongodb",
                "uri": uri,
                "query": {"count": {"collection": "devices", "filter": {"online": False}}},
            },
        }
        log(f"mongodb: {window:g}s")
        return measure(stack, cases, window)


# --- the report ---------------------------------------------------------------------------------------


def table(rows: dict[str, dict[str, Any]], server: bool = False) -> str:
    header = ["case", "runs", "CPU ms/run", "wall ms/run"] + (["redis-server CPU ms/run"] if server else []) + ["state"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in rows.items():
        cells = [name, f"{row['runs']:.0f}", f"{row['cpu_ms']:.2f}", f"{row['wall_ms']:.2f}"]
        if server:
            cells.append(f"{row['server_cpu_ms']:.3f}" if "server_cpu_ms" in row else "")
        cells.append(",".join(row["states"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


GROUPS: dict[str, Callable[..., dict[str, dict[str, Any]]]] = {
    "bullmq": bullmq,
    "file": files,
    "minio": s3,
    "postgres": postgres,
    "clickhouse": clickhouse,
    "mongodb": mongodb,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per group")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in the large queue")
    parser.add_argument("--only", nargs="*", choices=sorted(GROUPS), help="groups to run (default: all)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "WORKLOAD.md"))
    args = parser.parse_args()
    started = time.monotonic()
    load = os.getloadavg()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    out = Path(args.out)
    if args.only and out.exists() and "```json" in out.read_text():  # keep the groups not run this time
        results = json.loads(out.read_text().split("```json\n", 1)[1].split("\n```", 1)[0])
    stack = Stack()
    try:
        for name in args.only or list(GROUPS):
            group = GROUPS[name]
            results.pop(name, None)
            results[name] = group(stack, args.window, args.jobs) if name == "bullmq" else group(stack, args.window)
    finally:
        stack.close()
    took = time.monotonic() - started
    sections = []
    for name, rows in sorted(results.items(), key=lambda item: list(GROUPS).index(item[0])):
        sections.append(f"## {name}\n\n{table(rows, server=name == 'bullmq')}\n")
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "# Workload checks: cost per run\n\n"
        f"Command: `.venv/bin/python -m bench.workload --window {args.window:g} --jobs {args.jobs}"
        + (
            f" --only {' '.join(args.only)}` ({took / 60:.1f} min; the other groups are from an earlier run)"
            if args.only
            else f"` ({took / 60:.1f} min)"
        )
        + "\n\n"
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}; load average "
        f"at the start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {when}.\n\n"
        f"Each case: one prober process, {COUNT} targets every {INTERVAL:g}s (timeout 900ms; minio: every 5s, "
        "timeout 4s, over twice the window), the cases of a group side by side "
        "over the same window. CPU per run: the prober's utime+stime (/proc, all threads) over its runs; wall per "
        "run: the mean of prober_probe_duration_seconds. bench/workload.py says how.\n\n" + "\n".join(sections)
    )
    text += (
        "\n<details><summary>raw data (JSON)</summary>\n\n```json\n"
        + json.dumps(results, indent=1)
        + "\n```\n</details>\n"
    )
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
