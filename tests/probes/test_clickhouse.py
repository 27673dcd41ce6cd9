"""The clickhouse probe against real ClickHouse engines and their failures.

Peers (tests/peers/clickhouse.py): the current engine (chdb) behind a ClickHouse-HTTP front for the
clickhouse-connect path, with ``system.replicas`` answered from a scripted table; the real Debian
clickhouse-server 18.16 for the old-version path, wrong passwords, a stopped and a frozen server; the
hostile peers of tests/peers/web.py for garbage on the port.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from prober.errors import ProbeFailure
from prober.probes import ProbeContext, clickhouse
from prober.probes.clickhouse import ClickhouseTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import run_cli
from tests.peers import clickhouse as peers_ch
from tests.peers.clickhouse import PASSWORD, ChdbFront, OldClickHouse, Replica
from tests.peers.web import Peers

# the fixtures of tests/peers/clickhouse.py, made visible to this module
old_clickhouse = peers_ch.old_clickhouse
chdb_front_session = peers_ch.chdb_front_session
chdb_front = peers_ch.chdb_front

USER_PART = f"prober:{PASSWORD}"


def target(url: str, **fields: Any) -> ClickhouseTarget:
    return ClickhouseTarget.model_validate({"name": "ch", "kind": "clickhouse", "url": url, "timeout": "2s", **fields})


async def probe(url: str, ctx: ProbeContext, **fields: Any) -> Result:
    return await run_probe(target(url, **fields), ctx)


async def raw_message(url: str, ctx: ProbeContext, **fields: Any) -> str:
    """The probe's own failure message and details, before the runner's redaction."""
    try:
        async with asyncio.timeout(5):
            result = await clickhouse.probe(target(url, **fields), ctx)
    except ProbeFailure as failure:
        return f"{failure.message} {failure.details}"
    except TimeoutError:
        return "timeout"
    return f"{result.summary} {result.values}"  # what it observed, not yet judged


def assert_unhealthy(result: Result, reason: Reason, *words: str) -> None:
    assert (result.state, result.reason) == (State.UNHEALTHY, reason), result.message
    for word in words:
        assert word in result.message, result.message
    assert "Traceback" not in result.message and "\n" not in result.message


# -- the current engine, through clickhouse-connect -------------------------------------------------------------


async def test_ok_reports_version_and_phases(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    result = await probe(chdb_front.url(), ctx)
    assert result.state is State.OK, result.message
    assert result.info == {"version": chdb_front.version}
    assert result.details["version"] == chdb_front.version and chdb_front.version.startswith("2")
    assert result.details["replicated_tables"] == 0
    assert "replication_lag_seconds" not in result.gauges  # no replicated tables: no lag to report
    assert set(result.phases) == {"ping", "connect", "query"}
    assert f"ClickHouse {chdb_front.version}, SELECT 1 ok" == result.message
    # the probe really ran its queries through the engine
    assert any(q.startswith("SELECT 1\n") for q in chdb_front.queries)
    assert any("system.replicas" in q for q in chdb_front.queries)


async def test_database_from_url(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    assert (await probe(chdb_front.url(database="app"), ctx)).state is State.OK
    result = await probe(chdb_front.url(database="nosuchdb"), ctx)
    assert_unhealthy(result, Reason.ASSERTION, "Code 81", "nosuchdb")


async def test_https_with_ca_file(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    result = await probe(chdb_front.url(scheme="https"), ctx, ca_file=str(chdb_front.ca_file))
    assert result.state is State.OK, result.message
    result = await probe(chdb_front.url(scheme="https"), ctx, ca_file=str(chdb_front.other_ca_file))
    assert_unhealthy(result, Reason.TLS, "ping:", "certificate verification failed")


async def test_password_field_overrides_url(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    result = await probe(chdb_front.url(password="not-it"), ctx, password=PASSWORD)
    assert result.state is State.OK, result.message


async def test_wrong_password_modern_is_auth(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    result = await probe(chdb_front.url(password="wrong-password"), ctx)
    assert_unhealthy(result, Reason.AUTH, "connect: authentication failed", "Code 516")


async def test_healthy_replicas_report_lag(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    chdb_front.set_replicas([Replica("app", "events", absolute_delay=12), Replica("app", "users", absolute_delay=3)])
    result = await probe(chdb_front.url(), ctx)
    assert result.state is State.OK, result.message
    assert result.gauges == {"replication_lag_seconds": 12.0}
    assert result.details["replicated_tables"] == 2
    assert "2 replicated tables, max delay 12s" in result.message


@pytest.mark.parametrize(
    ("replica", "words", "key"),
    [
        (Replica("app", "events", is_readonly=1), "replica read-only: app.events", "readonly_replicas"),
        (
            Replica("app", "events", is_session_expired=1),
            "Keeper session expired: app.events",
            "session_expired_replicas",
        ),
        (
            Replica("app", "events", absolute_delay=400),
            "replication delay > 300s: app.events (400s)",
            "lagging_replicas",
        ),
    ],
)
async def test_unhealthy_replica_is_degraded(
    chdb_front: ChdbFront, ctx: ProbeContext, replica: Replica, words: str, key: str
) -> None:
    """Scripted stand-in: the front answers system.replicas from a table the test fills (chdb has no replication)."""
    chdb_front.set_replicas([replica, Replica("app", "users")])
    result = await probe(chdb_front.url(), ctx)
    assert result.state is State.DEGRADED, result.message
    assert words in result.message
    assert result.details[key] == [words.split(": ", 1)[1]]
    assert result.details["replicated_tables"] == 2
    assert result.gauges == {"replication_lag_seconds": float(replica.absolute_delay)}


async def test_lag_limit_is_configurable(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    chdb_front.set_replicas([Replica("app", "events", absolute_delay=400)])
    assert (await probe(chdb_front.url(), ctx, max_replication_lag="10m")).state is State.OK
    assert (await probe(chdb_front.url(), ctx, max_replication_lag="1m")).state is State.DEGRADED


async def test_many_bad_replicas_are_listed_bounded(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    chdb_front.set_replicas([Replica("app", f"t{i}", is_readonly=1) for i in range(12)])
    result = await probe(chdb_front.url(), ctx)
    assert result.state is State.DEGRADED
    assert result.details["readonly_replicas"][-1] == "7 more" and len(result.details["readonly_replicas"]) == 6


async def test_replicas_not_readable_is_noted(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    chdb_front.errors["system.replicas"] = (497, "ACCESS_DENIED", "prober: Not enough privileges")
    result = await probe(chdb_front.url(), ctx)
    assert result.state is State.OK, result.message
    assert "not readable" in result.details["replicas"] and "replicated_tables" not in result.details


async def test_query_error_is_assertion(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    chdb_front.errors["SELECT 1\n"] = (241, "MEMORY_LIMIT_EXCEEDED", "Memory limit (total) exceeded")
    result = await probe(chdb_front.url(), ctx)
    assert_unhealthy(result, Reason.ASSERTION, "query: query failed (Code 241: Memory limit (total) exceeded")


async def test_slow_answer_is_degraded(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    result = await probe(chdb_front.url(), ctx, degraded_latency="1ms")
    assert result.state is State.DEGRADED and "slow answer" in result.message


# -- the real Debian clickhouse-server 18.16 --------------------------------------------------------------------


async def test_old_server_is_protocol_naming_its_version(old_clickhouse: OldClickHouse, ctx: ProbeContext) -> None:
    result = await probe(old_clickhouse.url(), ctx)
    assert_unhealthy(result, Reason.PROTOCOL, "ClickHouse 18.16.1 is too old for clickhouse-connect", "readonly")
    assert result.details == {"version": "18.16.1"}


@pytest.mark.parametrize(("user", "password", "code"), [("prober", "wrong-password", 193), ("nobody", PASSWORD, 192)])
async def test_old_server_wrong_credentials_are_auth(
    old_clickhouse: OldClickHouse, ctx: ProbeContext, user: str, password: str, code: int
) -> None:
    result = await probe(old_clickhouse.url(password=password, user=user), ctx)
    assert_unhealthy(result, Reason.AUTH, "connect: authentication failed", f"Code {code}")


async def test_old_server_stopped_is_refused(old_clickhouse: OldClickHouse, ctx: ProbeContext) -> None:
    old_clickhouse.stop()
    result = await probe(old_clickhouse.url(), ctx)
    assert_unhealthy(result, Reason.REFUSED, "ping: connection refused")


async def test_old_server_frozen_is_timeout_then_recovers(old_clickhouse: OldClickHouse, ctx: ProbeContext) -> None:
    old_clickhouse.freeze()
    try:
        result = await probe(old_clickhouse.url(), ctx, timeout="1s")
    finally:
        old_clickhouse.thaw()
    assert_unhealthy(result, Reason.TIMEOUT, "ping: no answer in time")
    assert result.latency is not None and 0.5 < result.latency < 1.5, result.latency
    result = await probe(old_clickhouse.url(), ctx, timeout="5s")  # answering again: back to its real verdict
    assert_unhealthy(result, Reason.PROTOCOL, "18.16.1")


# -- garbage on the port: protocol or timeout, never an exception -----------------------------------------------


@pytest.mark.parametrize(
    ("peer", "reason", "words"),
    [
        ("garbage", Reason.PROTOCOL, "ping: invalid HTTP response"),  # random bytes
        ("close", Reason.PROTOCOL, "ping:"),  # closes the connection at once
        ("hang", Reason.TIMEOUT, "ping: no answer in time"),  # accepts, never answers
        ("trickle", Reason.TIMEOUT, "ping: no answer in time"),  # a status line, then a byte a second
        ("http", Reason.PROTOCOL, "/ping answered HTTP 404"),  # a web application, not ClickHouse
    ],
)
async def test_garbage_peer(peers: Peers, ctx: ProbeContext, peer: str, reason: Reason, words: str) -> None:
    result = await probe(f"http://{USER_PART}@{peers.address(peer)}/", ctx, timeout="1s")
    assert_unhealthy(result, reason, words)


@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        ("garbage", Reason.PROTOCOL, "connect: unexpected answer"),
        ("hang", Reason.TIMEOUT, "connect: no answer in time"),
    ],
)
async def test_front_answering_ping_but_not_queries(
    chdb_front: ChdbFront, ctx: ProbeContext, fault: peers_ch.Fault, reason: Reason, words: str
) -> None:
    chdb_front.fault = fault
    result = await probe(chdb_front.url(), ctx, timeout="1s")
    assert_unhealthy(result, reason, words)


# -- secrets ----------------------------------------------------------------------------------------------------


async def test_password_never_in_message_or_details(
    chdb_front: ChdbFront, old_clickhouse: OldClickHouse, peers: Peers, ctx: ProbeContext
) -> None:
    urls = {
        "modern wrong user": chdb_front.url(user="intruder"),
        "modern ok": chdb_front.url(),
        "old server": old_clickhouse.url(),
        "old wrong user": old_clickhouse.url(user="nobody"),
        "garbage": f"http://{USER_PART}@{peers.address('garbage')}/",
    }
    for case, url in urls.items():
        text = await raw_message(url, ctx)  # the probe's own words, before any redaction
        assert PASSWORD not in text, case
        result = await probe(url, ctx)
        assert PASSWORD not in f"{result.message} {result.details} {result.info}", case
    old_clickhouse.stop()
    assert PASSWORD not in await raw_message(old_clickhouse.url(), ctx)


def test_url_is_validated() -> None:
    for url in ("tcp://host:9000", "http:///db", "http://host:8123/a/b", "http://host:8123/?database=x"):
        with pytest.raises(ValueError):
            target(url)
    assert target("https://u:p@ch.example/db").timeout == 2.0


async def test_clickhouse_client_url_parameters_are_accepted(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    url = (
        chdb_front.url()
        + "?application=vizora&request_timeout=30000&max_open_connections=10&compression_response=1"
        + "&clickhouse_setting_async_insert=1&ch_wait_for_async_insert=0&keep_alive_enabled=true"
    )
    result = await run_probe(target(url), ctx)
    assert result.state is State.OK, result.message


# -- the CLI ----------------------------------------------------------------------------------------------------


def test_cli_once_json(chdb_front: ChdbFront, tmp_path: Path) -> None:
    chdb_front.set_replicas([Replica("app", "events", absolute_delay=7)])
    password_file = tmp_path / "ch-password"
    password_file.write_text(PASSWORD + "\n")
    config = tmp_path / "prober.yaml"
    config.write_text(
        "targets:\n"
        "  - name: analytics\n"
        "    kind: clickhouse\n"
        f"    url: http://prober@127.0.0.1:{chdb_front.ports['http']}/app\n"
        f"    password_file: {password_file}\n"
        "    timeout: 3s\n"
    )
    done = run_cli("once", "-c", str(config), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    check = json.loads(done.stdout)["checks"]["analytics"]
    assert (check["status"], check["kind"], check["reason"]) == ("ok", "clickhouse", None)
    assert check["details"]["version"] == chdb_front.version
    assert check["details"]["max_absolute_delay_seconds"] == 7
