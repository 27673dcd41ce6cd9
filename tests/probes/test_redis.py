"""The redis probe against real redis-server and redis-sentinel processes and their real failures."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from prober.config import validate
from prober.errors import ProbeFailure
from prober.probes import ProbeContext
from prober.probes import redis as redis_probe
from prober.probes.redis import RedisTarget
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
    TlsFiles,
    garbage_peer,
    remove_dir,
    wait_async,
)

# the fixtures that start the servers, made visible to this module
redis_master = peers.redis_master
redis_servers = peers.redis_servers
redis_tls = peers.redis_tls
sentinel_group = peers.sentinel_group


def target(url: str, **fields: Any) -> RedisTarget:
    return RedisTarget.model_validate({"name": "cache", "kind": "redis", "url": url, "timeout": "2s", **fields})


async def probe(ctx: ProbeContext, url: str, **fields: Any) -> Result:
    return await run_probe(target(url, **fields), ctx)


def sentinel_target(group: SentinelGroup, **fields: Any) -> RedisTarget:
    values: dict[str, Any] = {
        "url": f"redis://:{PASSWORD}@ignored-with-sentinels",
        "sentinels": group.addresses(),
        "master_name": MASTER_NAME,
        "sentinel_password": SENTINEL_PASSWORD,
        **fields,
    }
    return target(values.pop("url"), **values)


def dump(result: Result) -> str:
    return json.dumps([result.message, result.details, result.info, result.gauges], default=str)


# --- one server -----------------------------------------------------------------------------------


async def test_ok(ctx: ProbeContext, redis_master: Process) -> None:
    result = await probe(ctx, redis_master.url())
    assert result.state is State.OK, result.message
    assert result.message.startswith("PONG from Redis 7.")
    assert result.info == {"version": result.details["version"], "role": "master"}
    assert result.details["role"] == "master"
    assert result.details["used_memory_bytes"] > 0
    assert result.details["maxmemory_bytes"] == 0
    assert "memory_usage_ratio" not in result.gauges  # no maxmemory: no ratio
    assert set(result.phases) == {"connect", "auth", "query"}


async def test_wrong_password_is_auth(ctx: ProbeContext, redis_master: Process) -> None:
    result = await probe(ctx, redis_master.url(password="Wrong-pw-123"))
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH)
    assert "invalid username-password pair" in result.message


async def test_missing_password_is_auth(ctx: ProbeContext, redis_master: Process) -> None:
    result = await probe(ctx, f"redis://127.0.0.1:{redis_master.port}")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH)
    assert "Authentication required" in result.message


async def test_password_field_overrides_url(ctx: ProbeContext, redis_master: Process) -> None:
    result = await probe(ctx, redis_master.url(password="stale-url-pw"), password=PASSWORD)
    assert result.state is State.OK, result.message


async def test_acl_user(ctx: ProbeContext, redis_master: Process) -> None:
    redis_master.call("ACL", "SETUSER", "probe", "on", ">Probe-pw-1", "-@all", "+ping", "+info")
    redis_master.call("ACL", "SETUSER", "noinfo", "on", ">Probe-pw-2", "-@all", "+ping")
    result = await probe(ctx, redis_master.url(user="probe", password="Probe-pw-1"))
    assert result.state is State.OK, result.message
    wrong = await probe(ctx, redis_master.url(user="probe", password="Probe-pw-2"))
    assert (wrong.state, wrong.reason) == (State.UNHEALTHY, Reason.AUTH)
    denied = await probe(ctx, redis_master.url(user="noinfo", password="Probe-pw-2"))
    assert (denied.state, denied.reason) == (State.UNHEALTHY, Reason.AUTH)
    assert "permission denied" in denied.message and "info" in denied.message


async def test_stopped_is_refused(ctx: ProbeContext, redis_servers: Servers) -> None:
    server = redis_servers.server()
    assert (await probe(ctx, server.url())).state is State.OK
    server.stop()
    result = await probe(ctx, server.url())
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED)
    assert result.message == "connection refused"


async def test_max_clients_reached_is_refused(ctx: ProbeContext, redis_servers: Servers) -> None:
    server = redis_servers.server("--maxclients", "1")
    with server.client(single_connection_client=True) as holder:
        holder.ping()  # the one slot is taken
        result = await probe(ctx, server.url())
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED), result.message
    assert result.message == "the server refuses clients: max number of clients reached"


async def test_frozen_times_out_and_recovers(ctx: ProbeContext, redis_servers: Servers) -> None:
    server = redis_servers.server()
    server.freeze()
    try:
        result = await probe(ctx, server.url(), timeout="1s")
    finally:
        server.thaw()
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT)
    assert "no answer within" in result.message and "authenticating" in result.message
    assert result.latency is not None and result.latency < 1.5
    again = await probe(ctx, server.url(), timeout="1s")
    assert again.state is State.OK, again.message


async def test_slow_answer_is_degraded(ctx: ProbeContext, redis_servers: Servers) -> None:
    server = redis_servers.server()
    server.freeze()
    asyncio.get_running_loop().call_later(0.3, server.thaw)
    result = await probe(ctx, server.url(), degraded_latency="100ms")
    assert result.state is State.DEGRADED, result.message
    assert result.message.startswith("slow answer: ") and "PONG from Redis" in result.message
    assert result.latency is not None and result.latency >= 0.3


async def test_maxmemory_filled_past_the_ratio_is_degraded(ctx: ProbeContext, redis_servers: Servers) -> None:
    server = redis_servers.server("--maxmemory", "4mb")
    before = await probe(ctx, server.url())
    assert before.state is State.OK, before.message
    assert 0 < before.gauges["memory_usage_ratio"] < 0.9
    with server.client() as client:
        index = 0
        while client.info("memory")["used_memory"] / (4 * 1024 * 1024) < 0.93:
            client.set(f"filler:{index}", "x" * 20000)
            index += 1
    result = await probe(ctx, server.url())
    assert result.state is State.DEGRADED, result.message
    assert "memory usage" in result.message and "of maxmemory (limit 90%)" in result.message
    assert 0.9 < result.gauges["memory_usage_ratio"] <= 1.05  # used_memory moves a little between reads
    assert result.details["maxmemory_bytes"] == 4 * 1024 * 1024
    looser = await probe(ctx, server.url(), max_memory_usage=0.999)
    assert looser.state is State.OK, looser.message


async def test_replica_ok_then_link_down_when_master_stops(ctx: ProbeContext, redis_servers: Servers) -> None:
    master = redis_servers.server()
    replica = redis_servers.replica(master)
    result = await probe(ctx, replica.url())
    assert result.state is State.OK, result.message
    assert result.info["role"] == "replica"
    assert result.details["master_link_status"] == "up"
    assert result.details["master_port"] == master.port
    assert 0 <= result.gauges["replication_lag_seconds"] < 60  # master_last_io_seconds_ago
    master.stop()
    await wait_async(lambda: replica.info("replication")["master_link_status"] == "down", "link down")
    down = await probe(ctx, replica.url())
    assert down.state is State.DEGRADED, down.message
    assert f"link to master 127.0.0.1:{master.port} is down" in down.message
    assert down.details["master_link_status"] == "down"
    assert down.gauges["replication_lag_seconds"] >= 0  # master_link_down_since_seconds


async def test_failed_bgsave_is_degraded(ctx: ProbeContext, redis_servers: Servers) -> None:
    server = redis_servers.server()
    remove_dir(server.directory)  # the fork cannot create its temp RDB file any more
    server.call("BGSAVE")
    await wait_async(lambda: server.info("persistence")["rdb_last_bgsave_status"] == "err", "failed BGSAVE")
    result = await probe(ctx, server.url())
    assert result.state is State.DEGRADED, result.message
    assert result.message == "the last RDB save (BGSAVE) failed"


async def test_loading_is_unhealthy(ctx: ProbeContext, redis_servers: Servers, tmp_path: Path) -> None:
    data = tmp_path / "rdb"
    data.mkdir()
    writer = redis_servers.server(directory=data)
    with writer.client() as client, client.pipeline(transaction=False) as pipe:
        for index in range(3000):
            pipe.set(f"k{index}", "v" * 100)
        pipe.execute()
    writer.call("SAVE")
    writer.stop()
    slow = ["--key-load-delay", "5000", "--loading-process-events-interval-bytes", "1024"]
    loading = redis_servers.server("--dbfilename", "dump.rdb", *slow, directory=data, wait_ready=False)
    result = await probe(ctx, loading.url())
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert "loading its dataset" in result.message and "% done" in result.message
    assert result.details["loading"] is True


async def test_cluster_state_fail_is_unhealthy_then_ok(ctx: ProbeContext, redis_servers: Servers) -> None:
    bus = ["--cluster-port", str(free_port())]  # not port + 10000, which may be taken or above 65535
    node = redis_servers.server("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", *bus)
    result = await probe(ctx, node.url())
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == "cluster_state is fail, not ok"
    node.call("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
    await wait_async(lambda: "cluster_state:ok" in node.call("CLUSTER", "INFO"), "cluster_state ok")
    covered = await probe(ctx, node.url())
    assert covered.state is State.OK, covered.message
    assert covered.details["cluster_state"] == "ok"
    assert covered.details["cluster_slots_ok"] == 16384


async def test_tls(ctx: ProbeContext, redis_tls: tuple[Process, TlsFiles]) -> None:
    server, files = redis_tls
    url = server.url(scheme="rediss")
    good = await probe(ctx, url, ca_file=str(files.ca))
    assert good.state is State.OK, good.message
    untrusted = await probe(ctx, url, ca_file=str(files.other_ca))
    assert (untrusted.state, untrusted.reason) == (State.UNHEALTHY, Reason.TLS)
    assert "certificate verification failed" in untrusted.message
    plaintext = await probe(ctx, server.url(), timeout="1s")
    assert plaintext.state is State.UNHEALTHY
    assert plaintext.reason in (Reason.PROTOCOL, Reason.TIMEOUT), plaintext.message


# --- hostile peers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "reasons"),
    GARBAGE_REASONS,
)
@pytest.mark.parametrize("password", [None, "Garbage-pw-1"])
async def test_garbage_peer(ctx: ProbeContext, mode: Garbage, reasons: set[Reason], password: str | None) -> None:
    async with garbage_peer(mode) as peer:
        url = f"redis://:{password}@127.0.0.1:{peer.port}" if password else f"redis://127.0.0.1:{peer.port}"
        result = await probe(ctx, url, timeout="1s")
        connections = peer.connections
    assert result.state is State.UNHEALTHY
    assert result.reason in reasons, result.message
    assert result.error is None  # a failure of the peer, not an exception of ours
    if mode != "http":
        assert connections == 1  # one attempt: no hidden retries
    if password:
        assert password not in dump(result)


async def test_failed_connect_is_not_retried(ctx: ProbeContext) -> None:
    """A TLS handshake the peer cuts is a connect() failure, which redis-py retries by policy: one try here."""
    async with garbage_peer("close") as peer:
        result = await probe(ctx, f"rediss://127.0.0.1:{peer.port}", timeout="1s")
        connections = peer.connections
    assert result.state is State.UNHEALTHY
    assert result.reason in (Reason.PROTOCOL, Reason.TLS), result.message
    assert connections == 1


async def test_echoed_password_is_masked_once_in_the_runner(ctx: ProbeContext) -> None:
    """A server quoting the AUTH it got: the probe reports its words as they are, and the runner (the one
    place results are redacted) masks the password before anything is cut or shown."""
    async with garbage_peer("echo-error") as peer:
        made = target(f"redis://probe:Echoed-pw-9@127.0.0.1:{peer.port}")
        with pytest.raises(ProbeFailure) as failure:
            await redis_probe.probe(made, ctx)
        result = await run_probe(made, ctx)
    assert failure.value.reason is Reason.PROTOCOL
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL)
    assert result.message == "error reply: you sent *3 $4 AUTH $5 probe $11 ***"


# --- Sentinel -------------------------------------------------------------------------------------


async def test_sentinel_follows_failover(ctx: ProbeContext, sentinel_group: SentinelGroup) -> None:
    group = sentinel_group
    group.converged()
    first = await run_probe(sentinel_target(group), ctx)
    assert first.state is State.OK, first.message
    assert first.details["address"] == group.master.address
    assert first.message.endswith(f"(master) at {group.master.address}, named by 3 of 3 Sentinels")
    assert first.details["sentinel"]["answered"] == 3 and first.details["sentinel"]["quorum"] == 2
    assert set(first.phases) == {"sentinel", "connect", "auth", "query"}

    group.master.stop()
    gone = await run_probe(sentinel_target(group), ctx)  # within down-after-milliseconds (3 s)
    assert (gone.state, gone.reason) == (State.UNHEALTHY, Reason.REFUSED), gone.message
    assert gone.message == f"master {group.master.address}: connection refused"

    def switched() -> bool:
        return all(group.named_master(sentinel) == group.replica.address for sentinel in group.sentinels)

    await wait_async(switched, "failover", limit=60)
    await wait_async(lambda: group.replica.info("replication")["role"] == "master", "promotion", limit=30)
    after = await run_probe(sentinel_target(group), ctx)
    assert after.state is State.OK, after.message
    assert after.details["address"] == group.replica.address
    assert after.info["role"] == "master"


async def test_sentinel_quorum(ctx: ProbeContext, sentinel_group: SentinelGroup) -> None:
    group = sentinel_group
    first, second, third = group.sentinels

    first.freeze()  # a Sentinel that hangs costs a third of the budget, not the run
    try:
        result = await run_probe(sentinel_target(group), ctx)
    finally:
        first.thaw()
    assert result.state is State.OK, result.message
    assert result.details["sentinel"]["answered"] == 2
    assert result.details["sentinel"]["sentinels"][0]["reason"] == "timeout"

    first.stop()
    two = await run_probe(sentinel_target(group), ctx)
    assert two.state is State.OK, two.message  # 2 answer, quorum 2

    second.stop()
    one = await run_probe(sentinel_target(group), ctx)
    assert one.state is State.DEGRADED, one.message
    assert one.message == "only 1 of 3 Sentinels answered (quorum 2)"
    assert one.details["address"] == group.master.address

    third.stop()
    none = await run_probe(sentinel_target(group), ctx)
    assert (none.state, none.reason) == (State.UNHEALTHY, Reason.REFUSED), none.message
    assert none.message.startswith(f"no Sentinel answered for {MASTER_NAME!r}: ")


async def test_sentinel_wrong_name_and_password(ctx: ProbeContext, sentinel_group: SentinelGroup) -> None:
    unknown = await run_probe(sentinel_target(sentinel_group, master_name="nosuch"), ctx)
    assert (unknown.state, unknown.reason) == (State.UNHEALTHY, Reason.ASSERTION), unknown.message
    assert unknown.message == "no Sentinel answered for 'nosuch': all 3: No such master with that name"
    bad = await run_probe(sentinel_target(sentinel_group, sentinel_password="Wrong-sentinel-pw"), ctx)
    assert (bad.state, bad.reason) == (State.UNHEALTHY, Reason.AUTH), bad.message
    master_pw = await run_probe(sentinel_target(sentinel_group, url="redis://:Wrong-master-pw@x"), ctx)
    assert (master_pw.state, master_pw.reason) == (State.UNHEALTHY, Reason.AUTH), master_pw.message
    assert master_pw.message.startswith(f"master {sentinel_group.master.address}: authentication failed")
    direct = await probe(ctx, sentinel_group.sentinels[0].url())
    assert (direct.state, direct.reason) == (State.UNHEALTHY, Reason.ASSERTION), direct.message
    assert "this is a Sentinel" in direct.message


# --- config, secrets, CLI ------------------------------------------------------------------------------


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="redis:// or rediss://"):
        target("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="database number"):
        target("redis://127.0.0.1:6379/zero")
    with pytest.raises(ValueError, match="both sentinels and master_name"):
        target("redis://x", sentinels=["127.0.0.1:26379"])
    with pytest.raises(ValueError, match="host:port"):
        target("redis://x", sentinels=["127.0.0.1"], master_name="m")
    parsed = target("rediss://user:p%40ss@example.com/2").connection
    assert (parsed.tls, parsed.host, parsed.port, parsed.username, parsed.password, parsed.db) == (
        True,
        "example.com",
        6379,
        "user",
        "p@ss",
        2,
    )
    assert target("redis://x", password="abc").secrets() == ["abc"]


async def test_password_file(ctx: ProbeContext, redis_master: Process, tmp_path: Path) -> None:
    (tmp_path / "redis.pw").write_text(PASSWORD + "\n")
    document = {
        "targets": [
            {
                "name": "cache",
                "kind": "redis",
                "url": f"redis://127.0.0.1:{redis_master.port}",
                "password_file": "redis.pw",
            }
        ]
    }
    config = validate(document, "test.yaml", {}, tmp_path)
    (loaded,) = config.targets
    assert isinstance(loaded, RedisTarget) and loaded.password is not None
    assert loaded.password.get_secret_value() == PASSWORD
    result = await run_probe(loaded, ctx)
    assert result.state is State.OK, result.message


async def test_password_never_in_result(ctx: ProbeContext, redis_master: Process, redis_servers: Servers) -> None:
    """Straight from the probe (before the runner's redaction): neither the right nor a wrong password."""
    secrets = [PASSWORD, "Wrong-pw-456"]
    ok = await redis_probe.probe(target(redis_master.url()), ctx)  # what it observed, not yet judged
    assert ok.summary.startswith("PONG from Redis")
    stopped = redis_servers.server()
    stopped.stop()
    for url in (redis_master.url(password="Wrong-pw-456"), stopped.url(), f"redis://:{PASSWORD}@127.0.0.1:1"):
        with pytest.raises(ProbeFailure) as failure:
            await redis_probe.probe(target(url), ctx)
        text = json.dumps([failure.value.message, failure.value.details], default=str)
        assert not any(secret in text for secret in secrets), text
    text = json.dumps(asdict(ok), default=str)
    assert not any(secret in text for secret in secrets)


def test_cli_once_json(redis_master: Process, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD)
    config = {
        "targets": [
            {"name": "cache", "kind": "redis", "url": f"redis://127.0.0.1:{redis_master.port}", "password_file": "pw"},
            {
                "name": "gone",
                "kind": "redis",
                "url": f"redis://:{PASSWORD}@127.0.0.1:{free_port()}",
                "critical": False,
                "timeout": "1s",
            },
        ]
    }
    path = tmp_path / "prober.yaml"
    path.write_text(yaml.safe_dump(config))
    run = run_cli("once", "-c", str(path), "--json")
    assert PASSWORD not in run.stdout + run.stderr
    status = json.loads(run.stdout)
    cache, gone = status["checks"]["cache"], status["checks"]["gone"]
    assert (cache["status"], cache["kind"], cache["reason"]) == ("ok", "redis", None)
    assert cache["details"]["role"] == "master"
    assert (gone["status"], gone["reason"]) == ("unhealthy", "refused")
    assert status["status"] == "degraded"  # the failing target is optional
    assert run.returncode == 1, run.stderr


# --- conditions over the observations ----------------------------------------------------------------


async def test_conditions_judge_what_redis_reports(ctx: ProbeContext, redis_servers: Servers) -> None:
    """BullMQ needs maxmemory-policy noeviction: a condition over the observed policy, on a real server."""
    server = redis_servers.server()
    rule = {"degraded_if": ["maxmemory_policy != 'noeviction'"], "unhealthy_if": ["connected_clients > 1000"]}
    assert (await probe(ctx, server.url(), **rule)).state is State.OK
    server.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    result = await probe(ctx, server.url(), **rule)
    assert (result.state, result.message) == (
        State.DEGRADED,
        "degraded: maxmemory_policy != 'noeviction' (allkeys-lru)",
    )


async def test_a_peer_announcing_a_huge_reply_costs_only_the_byte_budget(ctx: ProbeContext) -> None:
    """A bulk string announced as 10^12 bytes, sent as fast as it is taken: redis-py would buffer it
    until the run's timeout. The byte budget drops the connection after 4 MiB: ``protocol``."""
    import tracemalloc

    from prober.probes.redis import BYTE_BUDGET

    tracemalloc.start()
    try:
        async with garbage_peer("huge-reply") as peer:
            result = await probe(ctx, f"redis://127.0.0.1:{peer.port}", timeout="5s")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL), result.message
    assert result.message == f"the peer sent more than {BYTE_BUDGET} bytes in one run (the redis kind's limit)"
    assert peer.sent < 128 * 2**20
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB of Python allocations"
