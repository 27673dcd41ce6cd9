"""The ``postgres`` kind against real PostgreSQL 15 servers (a TLS primary, a streaming replica, a
server with a small connection table, throwaway servers that are stopped or frozen) and hostile peers.
Every case goes through ``run_probe`` (the real path), one through ``prober once``."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr, TypeAdapter, ValidationError

from prober.config import load_file
from prober.errors import ConfigError
from prober.models import TargetBase
from prober.probes import ProbeContext, Target
from prober.probes.postgres import PostgresTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import free_port, run_cli
from tests.peers.postgres import (  # noqa: F401  (the *_fixture names register pg_primary, pg_replica, ...)
    APP_USER,
    MONITOR_USER,
    SUPERUSER,
    PgServer,
    caught_up,
    fake_postgres,
    pg_primary_fixture,
    pg_replica_fixture,
    pg_scratch_fixture,
    pg_small_fixture,
)
from tests.peers.web import Peers

TARGETS = TypeAdapter[TargetBase](Target)


@pytest.fixture(autouse=True)
async def settle() -> AsyncIterator[None]:
    """After each test, give the loop a moment before pytest closes it: a connection asyncpg closed after a
    failed TLS attempt finishes its TLS shutdown on the loop, which a daemon keeps running but a test's loop
    does not. Then collect garbage, so that anything really left open is reported against this test."""
    yield
    await asyncio.sleep(0.2)
    gc.collect()


def target(dsn: str, **fields: Any) -> PostgresTarget:
    made = TARGETS.validate_python({"name": "db", "kind": "postgres", "dsn": dsn, "timeout": "5s", **fields})
    assert isinstance(made, PostgresTarget)
    return made


def assert_no_secret(result: Result, *secrets: str) -> None:
    text = json.dumps([result.message, result.details, result.info], default=str)
    for secret in secrets:
        assert secret not in text, f"secret leaked into {text}"


@asynccontextmanager
async def held(server: PgServer, user: str, count: int) -> AsyncIterator[list[asyncpg.Connection]]:
    """``count`` open client connections, closed at the end."""
    connections: list[asyncpg.Connection] = []
    try:
        for _ in range(count):
            connections.append(await asyncpg.connect(server.dsn(user, sslmode="disable"), timeout=10))
        yield connections
    finally:
        for connection in connections:
            await connection.close(timeout=5)


# --- the healthy cases ------------------------------------------------------------------------------


async def test_primary_ok_with_version_role_and_gauges(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_primary.dsn(APP_USER)), ctx)
    assert result.state is State.OK, result.message
    assert result.reason is None
    assert result.message.startswith("primary, PostgreSQL 15.")
    assert result.info["role"] == "primary"
    assert result.info["version"].startswith("15.") and " " not in result.info["version"]
    assert result.details["server_version"].startswith(result.info["version"])
    assert result.details["role"] == "primary"
    assert result.details["tls"] is True  # sslmode defaults to prefer, and this server offers TLS
    assert result.details["max_connections"] == 100 and result.details["reserved_connections"] == 3
    assert result.details["connections_exact"] is False  # app lacks pg_read_all_stats: an estimate
    assert 1 <= result.details["connections_in_use"] < 97
    assert 0 < result.gauges["connection_usage_ratio"] == pytest.approx(result.details["connections_in_use"] / 97)
    assert "replication_lag_seconds" not in result.gauges  # a primary has no replay lag
    assert set(result.phases) == {"connect", "query"}
    assert result.latency is not None and result.latency == pytest.approx(sum(result.phases.values()))
    assert_no_secret(result, pg_primary.passwords[APP_USER])


async def test_connection_closed_after_each_run(pg_primary: PgServer, ctx: ProbeContext) -> None:
    count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'prober'"
    for _ in range(3):
        assert (await run_probe(target(pg_primary.dsn(APP_USER)), ctx)).state is State.OK
    # the server notices the goodbye at once; allow it a moment all the same
    await asyncio.to_thread(pg_primary.wait_sql, count, "0", 10)


async def test_replica_ok_idle_lag_is_zero(pg_primary: PgServer, pg_replica: PgServer, ctx: ProbeContext) -> None:
    await asyncio.to_thread(caught_up, pg_primary, pg_replica)
    result = await run_probe(target(pg_replica.dsn(MONITOR_USER), role="replica"), ctx)
    assert result.state is State.OK, result.message
    assert result.info["role"] == "replica" and result.details["role"] == "replica"
    # receive == replay: 0, however old the last replayed transaction is
    assert result.gauges["replication_lag_seconds"] == 0.0
    assert result.details["replication_lag_seconds"] == 0.0
    assert result.details["wal_receiver_status"] == "streaming"  # monitor may read pg_stat_wal_receiver
    assert result.details["connections_exact"] is True
    # the replica has no TLS: the default sslmode=prefer silently fell back to plaintext, and says so
    assert result.details["tls"] is False


# --- authentication, configuration, passwords --------------------------------------------------------


async def test_wrong_password_is_auth(pg_primary: PgServer, ctx: ProbeContext) -> None:
    wrong = "not-the-password-" + pg_primary.password[:4]
    result = await run_probe(target(pg_primary.dsn(APP_USER, password=wrong)), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH), result.message
    assert result.message == f'authentication failed: password authentication failed for user "{APP_USER}"'
    assert result.details["sqlstate"] == "28P01"
    assert_no_secret(result, wrong, pg_primary.passwords[APP_USER])


async def test_unknown_user_is_auth(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_primary.dsn("nobody", password="whatever")), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH), result.message


async def test_missing_database_is_assertion(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_primary.dsn(APP_USER, database="nodb")), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == 'database "nodb" does not exist'


async def test_password_field_overrides_the_dsn(pg_primary: PgServer, ctx: ProbeContext) -> None:
    right = pg_primary.passwords[APP_USER]
    made = target(pg_primary.dsn(APP_USER, password="stale-password"), password=SecretStr(right))
    result = await run_probe(made, ctx)
    assert result.state is State.OK, result.message
    assert set(made.secrets()) >= {"stale-password", right}


async def test_password_file_is_read_by_the_loader(pg_primary: PgServer, ctx: ProbeContext, tmp_path: Path) -> None:
    secret = tmp_path / "pg-password"
    secret.write_text(pg_primary.passwords[APP_USER] + "\n")
    config = tmp_path / "prober.yaml"
    config.write_text(
        "targets:\n"
        "  - name: db\n"
        "    kind: postgres\n"
        f"    dsn: {pg_primary.dsn(APP_USER, password='')}\n"
        f"    password_file: {secret}\n"
    )
    (made,) = load_file(str(config), environ={}).targets
    assert isinstance(made, PostgresTarget) and made.password is not None
    assert made.password.get_secret_value() == pg_primary.passwords[APP_USER]
    assert (await run_probe(made, ctx)).state is State.OK
    secret.write_text("wrong-password\n")  # read at load time: a reload picks up a rotated file
    (rotated,) = load_file(str(config), environ={}).targets
    result = await run_probe(rotated, ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH)


def test_password_file_missing_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "prober.yaml"
    config.write_text(
        "targets:\n  - name: db\n    kind: postgres\n    dsn: postgresql://app@127.0.0.1:5432/postgres\n"
        f"    password_file: {tmp_path / 'absent'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_file(str(config), environ={})
    assert "password_file" in str(caught.value)


@pytest.mark.parametrize(
    ("dsn", "complaint"),
    [
        ("mysql://u:hunter2pw@h/db", "postgresql:// or postgres://"),
        ("postgresql://u:hunter2pw@a:5432,b:5432/db", "several hosts"),
        ("postgresql://u:hunter2pw@h/db?sslmode=always", "sslmode must be one of"),
        ("postgresql://u:hunter2pw@h/db?sslrootcert=/nonexistent/ca.pem", "sslrootcert: cannot read"),
        ("postgresql://u:hunter2pw@h/db?sslcert=/c.pem&sslkey=/k.pem", "client certificates"),
        ("postgresql://u:hunter2pw@h/db?target_session_attrs=read-write", "role"),
        ("postgresql://u:hunter2pw@/db", "names no host"),
        ("postgresql://u:hunter2pw@h:99999/db", "not a valid URL"),
    ],
)
def test_bad_dsns_are_refused_without_echoing_them(dsn: str, complaint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        target(dsn)
    errors = caught.value.errors(include_input=False, include_url=False)
    assert complaint in errors[0]["msg"]
    assert "hunter2pw" not in json.dumps(errors, default=str)


@pytest.mark.parametrize(
    ("field", "value"),
    [("role", "leader"), ("max_connection_usage", 0), ("max_connection_usage", 1.5), ("max_replication_lag", "0s")],
)
def test_bad_thresholds_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        target("postgresql://u@h/db", **{field: value})


def test_defaults_and_query_password_is_a_secret() -> None:
    made = target("postgres://u@h/db?password=s3cr3t-in-query&connect_timeout=3")
    assert (made.role, made.max_replication_lag, made.max_connection_usage, made.ca_file) == ("any", 30.0, 0.9, None)
    assert made.sslmode == "prefer"
    assert "s3cr3t-in-query" in made.secrets()


async def test_libpq_only_options_are_not_sent_to_the_server(pg_primary: PgServer, ctx: ProbeContext) -> None:
    # asyncpg would pass connect_timeout/keepalives on as server settings, which the server rejects
    dsn = pg_primary.dsn(APP_USER, connect_timeout="3", keepalives="1", application_name="probe-test")
    result = await run_probe(target(dsn), ctx)
    assert result.state is State.OK, result.message


# --- TLS ---------------------------------------------------------------------------------------------


async def test_tls_verify_full_with_ca_file(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_primary.dsn(APP_USER, sslmode="verify-full"), ca_file=pg_primary.ca_file), ctx)
    assert result.state is State.OK, result.message
    assert result.details["tls"] is True


async def test_tls_verify_ca_with_ca_file(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_primary.dsn(APP_USER, sslmode="verify-ca"), ca_file=pg_primary.ca_file), ctx)
    assert result.state is State.OK, result.message
    assert result.details["tls"] is True


async def test_tls_verify_full_against_an_unknown_ca_is_tls(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_primary.dsn(APP_USER, sslmode="verify-full")), ctx)  # system CAs only
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TLS), result.message
    assert "certificate verification failed" in result.message


async def test_tls_require_is_encrypted_and_disable_is_not(pg_primary: PgServer, ctx: ProbeContext) -> None:
    required = await run_probe(target(pg_primary.dsn(APP_USER, sslmode="require")), ctx)
    assert required.state is State.OK and required.details["tls"] is True
    disabled = await run_probe(target(pg_primary.dsn(APP_USER, sslmode="disable")), ctx)
    assert disabled.state is State.OK and disabled.details["tls"] is False


async def test_tls_required_but_server_has_none_is_tls(pg_replica: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_replica.dsn(APP_USER, sslmode="require")), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TLS), result.message
    assert "did not accept TLS" in result.message


# --- failures of the server --------------------------------------------------------------------------


async def test_stopped_server_is_refused_then_recovers(pg_scratch: PgServer, ctx: ProbeContext) -> None:
    made = target(pg_scratch.dsn(SUPERUSER))
    assert (await run_probe(made, ctx)).state is State.OK
    await asyncio.to_thread(pg_scratch.stop)
    result = await run_probe(made, ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED), result.message
    assert result.message == "connection refused"
    await asyncio.to_thread(pg_scratch.start)
    assert (await run_probe(made, ctx)).state is State.OK


async def test_frozen_server_times_out_then_recovers(pg_scratch: PgServer, ctx: ProbeContext) -> None:
    made = target(pg_scratch.dsn(SUPERUSER), timeout="1s")
    assert (await run_probe(made, ctx)).state is State.OK
    pg_scratch.freeze()
    try:
        started = time.monotonic()
        result = await run_probe(made, ctx)
        assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result.message
        assert result.message == "no answer while connecting within 1s"
        assert time.monotonic() - started < 5  # bounded by the target's timeout, not the driver's 60 s
    finally:
        pg_scratch.thaw()
    result = await run_probe(made, ctx)
    assert result.state is State.OK, result.message


async def test_replica_with_paused_replay_lags_and_turns_degraded(
    pg_primary: PgServer, pg_replica: PgServer, ctx: ProbeContext
) -> None:
    made = target(pg_replica.dsn(MONITOR_USER), role="replica", max_replication_lag="1s")
    await asyncio.to_thread(pg_primary.sql, "INSERT INTO ticks DEFAULT VALUES")
    await asyncio.to_thread(caught_up, pg_primary, pg_replica)
    assert (await run_probe(made, ctx)).state is State.OK
    await asyncio.to_thread(pg_replica.sql, "SELECT pg_wal_replay_pause()")
    try:
        await asyncio.to_thread(pg_replica.wait_sql, "SELECT pg_get_wal_replay_pause_state()", "paused")
        deadline = time.monotonic() + 30
        result = await run_probe(made, ctx)
        while result.state is State.OK and time.monotonic() < deadline:
            await asyncio.to_thread(pg_primary.sql, "INSERT INTO ticks DEFAULT VALUES")  # the primary writes
            await asyncio.sleep(0.3)
            result = await run_probe(made, ctx)
        assert result.state is State.DEGRADED, result.message
        assert result.reason is None
        assert result.gauges["replication_lag_seconds"] > 1.0
        assert result.details["replication_lag_seconds"] > 1.0
        assert "replay lag" in result.message and "> 1s" in result.message
        assert result.info["role"] == "replica"
    finally:
        await asyncio.to_thread(pg_replica.sql, "SELECT pg_wal_replay_resume()")
    await asyncio.to_thread(caught_up, pg_primary, pg_replica)
    result = await run_probe(made, ctx)
    assert result.state is State.OK, result.message
    assert result.gauges["replication_lag_seconds"] == 0.0


async def test_role_primary_pointed_at_the_replica(pg_replica: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_replica.dsn(APP_USER), role="primary"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == "expected a primary, found a replica"
    assert result.info["role"] == "replica"  # what it found is still reported


async def test_role_replica_pointed_at_the_primary(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_primary.dsn(APP_USER), role="replica"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == "expected a replica, found a primary"


async def test_connection_usage_against_the_limit(pg_small: PgServer, ctx: ProbeContext) -> None:
    # max_connections=6, superuser_reserved_connections=1: 5 slots for ordinary roles
    async with held(pg_small, APP_USER, 3):
        below = await run_probe(target(pg_small.dsn(MONITOR_USER)), ctx)
        assert below.state is State.OK, below.message
        assert below.details["connections_in_use"] == 4  # three held, plus the probe's own
        assert below.details["connections_exact"] is True
        assert below.gauges["connection_usage_ratio"] == pytest.approx(0.8)
        strict = await run_probe(target(pg_small.dsn(MONITOR_USER), max_connection_usage=0.5), ctx)
        assert strict.state is State.DEGRADED, strict.message
        assert "connections 4/5 in use (80% > 50%)" in strict.message
    async with held(pg_small, APP_USER, 4):
        full = await run_probe(target(pg_small.dsn(MONITOR_USER)), ctx)
        assert full.state is State.DEGRADED, full.message
        assert full.gauges["connection_usage_ratio"] == pytest.approx(1.0)
        assert "connections 5/5 in use (100% > 90%)" in full.message


async def test_connection_table_full_is_refused(pg_small: PgServer, ctx: ProbeContext) -> None:
    async with held(pg_small, APP_USER, 5):
        result = await run_probe(target(pg_small.dsn(APP_USER)), ctx)
        assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED), result.message
        assert result.message.startswith("server refused the connection, no free slot: ")
        assert result.details["sqlstate"] == "53300"
        # a superuser still gets in through the reserved slot, and sees the table over-full
        superuser = await run_probe(target(pg_small.dsn(SUPERUSER)), ctx)
        assert superuser.state is State.DEGRADED, superuser.message
        assert superuser.gauges["connection_usage_ratio"] == pytest.approx(6 / 5)


# --- hostile peers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("peer", ["http", "garbage", "close", "hang"])
@pytest.mark.parametrize("sslmode", ["prefer", "disable", "require"])
async def test_hostile_peers_are_protocol_or_timeout(peers: Peers, ctx: ProbeContext, peer: str, sslmode: str) -> None:
    dsn = f"postgresql://app:pw-for-hostile@{peers.address(peer)}/postgres?sslmode={sslmode}"
    started = time.monotonic()
    result = await run_probe(target(dsn, timeout="1s"), ctx)
    assert result.state is State.UNHEALTHY, result.message
    expected = {Reason.PROTOCOL, Reason.TIMEOUT} | ({Reason.TLS} if sslmode == "require" else set())
    assert result.reason in expected, (result.reason, result.message)
    assert time.monotonic() - started < 5
    assert_no_secret(result, "pw-for-hostile")


async def test_hostile_peer_reasons_are_the_truthful_ones(peers: Peers, ctx: ProbeContext) -> None:
    async def reason(peer: str, sslmode: str) -> tuple[Reason | None, str]:
        dsn = f"postgresql://app:pw@{peers.address(peer)}/postgres?sslmode={sslmode}"
        result = await run_probe(target(dsn, timeout="1s"), ctx)
        return result.reason, result.message

    assert (await reason("garbage", "prefer"))[0] is Reason.PROTOCOL  # not 'S'/'N': not PostgreSQL
    assert (await reason("close", "prefer"))[0] is Reason.PROTOCOL
    assert (await reason("hang", "prefer"))[0] is Reason.TIMEOUT
    assert (await reason("http", "disable"))[0] in (Reason.PROTOCOL, Reason.TIMEOUT)


async def test_peer_closing_mid_startup_is_protocol(ctx: ProbeContext) -> None:
    async with fake_postgres("close-after-ssl-answer") as fake:
        result = await run_probe(target(f"postgresql://app:pw@127.0.0.1:{fake.port}/postgres", timeout="2s"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL), result.message


async def test_peer_silent_after_auth_is_a_query_timeout(ctx: ProbeContext) -> None:
    async with fake_postgres("silent-after-auth") as fake:
        started = time.monotonic()
        result = await run_probe(target(f"postgresql://app:pw@127.0.0.1:{fake.port}/postgres", timeout="1s"), ctx)
        assert time.monotonic() - started < 5
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result.message
    assert result.message == "connected, but no answer to the query within 1s"


async def test_password_echoed_in_an_auth_error_is_masked(ctx: ProbeContext) -> None:
    password = "echo-me-" + os.urandom(4).hex()
    async with fake_postgres("echo-password-in-auth-error") as fake:
        result = await run_probe(target(f"postgresql://app:{password}@127.0.0.1:{fake.port}/postgres"), ctx)
    assert fake.received == [password]  # the fake really had the password to echo
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH), result.message
    assert "***" in result.message
    assert_no_secret(result, password)


async def test_password_echoed_in_query_errors_is_masked(ctx: ProbeContext) -> None:
    password = "echo-me-" + os.urandom(4).hex()
    async with fake_postgres("echo-password-in-query-error") as fake:
        made = target(f"postgresql://app@127.0.0.1:{fake.port}/postgres", password=SecretStr(password))
        result = await run_probe(made, ctx)
    assert fake.received == [password]
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message.startswith("server error XX000: ")
    assert "***" in result.message
    assert_no_secret(result, password)


async def test_nothing_listening_is_refused(ctx: ProbeContext) -> None:
    result = await run_probe(target(f"postgresql://app:pw@127.0.0.1:{free_port()}/postgres"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED), result.message


async def test_unknown_host_is_dns(ctx: ProbeContext) -> None:
    result = await run_probe(target("postgresql://app:pw@no-such-host.invalid:5432/postgres"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.DNS), result.message


# --- the command line --------------------------------------------------------------------------------


def test_prober_once_json_against_the_real_primary(pg_primary: PgServer, tmp_path: Path) -> None:
    password = pg_primary.passwords[APP_USER]
    secret = tmp_path / "pg-password"
    secret.write_text(password + "\n")
    config = tmp_path / "prober.yaml"
    config.write_text(
        "targets:\n"
        "  - name: db\n"
        "    kind: postgres\n"
        f"    dsn: {pg_primary.dsn(APP_USER, password='', sslmode='verify-full')}\n"
        f"    password_file: {secret}\n"
        f"    ca_file: {pg_primary.ca_file}\n"
        "    role: primary\n"
        "  - name: db-wrong-password\n"
        "    kind: postgres\n"
        f"    dsn: {pg_primary.dsn(APP_USER, password='wrong-' + password)}\n"
    )
    done = run_cli("once", "-c", str(config), "--json")
    assert done.returncode == 2, done.stderr  # a critical target is unhealthy
    status = json.loads(done.stdout)
    good, bad = status["checks"]["db"], status["checks"]["db-wrong-password"]
    assert (good["status"], good["kind"], good["reason"]) == ("ok", "postgres", None), good
    assert good["details"]["role"] == "primary" and good["details"]["tls"] is True
    assert good["details"]["server_version"].startswith("15.")
    assert (bad["status"], bad["reason"]) == ("unhealthy", "auth"), bad
    assert password not in done.stdout + done.stderr


async def test_conditions_judge_what_postgres_reports(pg_primary: PgServer, ctx: ProbeContext) -> None:
    """Conditions over a real primary's observations; ``replication_lag_seconds`` is null on a primary, so a
    condition on it is written to hold only on a replica."""
    made = target(
        pg_primary.dsn(APP_USER, sslmode="disable"),
        unhealthy_if=["role == 'replica' && replication_lag_seconds > 5.0"],
        degraded_if=["connections_in_use >= 1 && server_version.startsWith('15')"],
    )
    result = await run_probe(made, ctx)
    assert result.state is State.DEGRADED, result.message
    assert (
        result.message.startswith("primary, PostgreSQL 15.")
        and "degraded: connections_in_use >= 1 && server_version.startsWith('15') (connections_in_use="
        in result.message
    )


async def test_a_peer_announcing_a_1_gib_message_costs_only_the_byte_budget(ctx: ProbeContext) -> None:
    """The fake announces a 1 GiB message and sends it as fast as it is taken; asyncpg would buffer all
    of it. The run's byte budget drops the connection after 1 MiB: ``protocol``, memory bounded."""
    import tracemalloc

    from prober.probes.postgres import BYTE_BUDGET

    tracemalloc.start()
    try:
        async with fake_postgres("huge-message") as fake:
            result = await run_probe(target(f"postgresql://app:pw@127.0.0.1:{fake.port}/postgres", timeout="5s"), ctx)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.PROTOCOL), result.message
    assert result.message == f"the peer sent more than {BYTE_BUDGET} bytes in one run (the postgres kind's limit)"
    assert fake.sent < 64 * 2**20  # the connection was dropped, not read to the end
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.0f} MiB of Python allocations"
