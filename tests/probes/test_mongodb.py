"""The ``mongodb`` probe against nx-27017 (a real wire-protocol server process), mockupdb members scripted
into replica-set states and faults, and hostile peers. See tests/peers/mongodb.py for why these stand in
for mongod."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prober.probes import ProbeContext
from prober.probes.mongodb import MongodbTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import free_port, run_cli
from tests.peers.mongodb import (
    SET_NAME,
    VERSION,
    Garbage,
    Member,
    NxServer,
    garbage_peer,
    mock_member,
    nx_server,
    primary_hello,
    secondary_hello,
    status_member,
    tls_front,
)

PASSWORD = "Tr0ub4dor-and-3"  # never to be seen in a message or in details


@pytest.fixture(scope="session")
def nx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NxServer]:
    with nx_server(tmp_path_factory.mktemp("nx-27017")) as server:
        yield server


def target(uri: str, **fields: Any) -> MongodbTarget:
    return MongodbTarget.model_validate({"name": "mongo", "kind": "mongodb", "uri": uri, "timeout": "5s", **fields})


def assert_no_secret(result: Result) -> None:
    assert PASSWORD not in result.message
    assert PASSWORD not in json.dumps(result.details, default=str)
    assert PASSWORD not in json.dumps(result.info)


# --- a real server process -----------------------------------------------------------------------


async def test_ok_against_nx(nx: NxServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(nx.uri), ctx)
    assert (result.state, result.reason) == (State.OK, None), result
    assert result.message == "standalone"
    assert result.details["version"] == "7.0.0"  # what nx-27017 0.8 reports in buildInfo
    assert result.info == {"version": "7.0.0", "role": "standalone"}
    assert set(result.phases) == {"connect", "query"}
    assert all(v >= 0 for v in result.phases.values())
    assert result.gauges == {}  # a standalone has no replication lag


async def test_role_primary_accepts_a_standalone(nx: NxServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(nx.uri, role="primary"), ctx)
    assert result.state is State.OK, result


async def test_role_secondary_on_a_standalone_is_unhealthy(nx: NxServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(nx.uri, role="secondary"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result
    assert "expected a secondary" in result.message and "standalone" in result.message


async def test_stopped_server_is_refused_at_once(tmp_path: Path, ctx: ProbeContext) -> None:
    with nx_server(tmp_path) as server:
        assert (await run_probe(target(server.uri), ctx)).state is State.OK
        server.stop()
        result = await run_probe(target(server.uri, timeout="10s"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED), result
    assert "connection refused" in result.message
    # pymongo alone would retry until server selection gives up (the whole 9 s budget here)
    assert result.latency is not None and result.latency < 5


async def test_unknown_host_is_dns(ctx: ProbeContext) -> None:
    result = await run_probe(target("mongodb://no-such-host.invalid:27017/"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.DNS), result


# --- scripted replica-set states -----------------------------------------------------------------


def three_members(member: Member) -> list[str]:
    return [member.address, "127.0.0.1:1", "127.0.0.1:2"]  # the other two are only names in the scripts


async def test_healthy_primary_reports_members_and_lag(ctx: ProbeContext) -> None:
    with mock_member(answer=("ping", "buildInfo")) as m:
        hosts = three_members(m)
        m.answer_hello(**primary_hello(m.address, hosts))
        m.answer_status(
            [
                status_member(hosts[0], "PRIMARY", this=True),
                status_member(hosts[1], "SECONDARY", seconds_behind=2),
                status_member(hosts[2], "SECONDARY"),
            ]
        )
        result = await run_probe(target(m.uri, role="primary"), ctx)
    assert (result.state, result.reason) == (State.OK, None), result
    assert result.message == f"primary of {SET_NAME}, 3 members healthy"
    assert result.info == {"version": VERSION, "role": "primary"}
    assert result.details["set_name"] == SET_NAME
    assert [(x["name"], x["state"]) for x in result.details["members"]] == [
        (hosts[0], "PRIMARY"),
        (hosts[1], "SECONDARY"),
        (hosts[2], "SECONDARY"),
    ]
    assert 1.5 <= result.gauges["replication_lag_seconds"] <= 10


async def test_no_writable_primary_is_unhealthy(ctx: ProbeContext) -> None:
    with mock_member(answer=("ping", "buildInfo")) as m:
        hosts = three_members(m)
        m.answer_hello(**secondary_hello(m.address, hosts, primary=None))
        m.answer_status(
            [
                status_member(hosts[0], "SECONDARY", this=True),
                status_member(hosts[1], "SECONDARY"),
                status_member(hosts[2], "DOWN", health=0),
            ]
        )
        result = await run_probe(target(m.uri), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result
    assert result.message == f"replica set {SET_NAME} has no writable primary"
    assert result.details["role"] == "secondary"


async def test_no_primary_through_a_replica_set_uri(ctx: ProbeContext) -> None:
    """Two members, both secondaries, reached through pymongo's discovery (not a direct connection)."""
    with mock_member() as a, mock_member() as b:
        hosts = [a.address, b.address]
        a.answer_hello(**secondary_hello(a.address, hosts, primary=None))
        b.answer_hello(**secondary_hello(b.address, hosts, primary=None))
        for m in (a, b):
            m.answer_status([status_member(h, "SECONDARY", this=h == m.address) for h in hosts])
        result = await run_probe(target(f"mongodb://{a.address},{b.address}/?replicaSet={SET_NAME}"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result
    assert "no writable primary" in result.message


@pytest.mark.parametrize("state", ["DOWN", "RECOVERING", "ROLLBACK", "UNKNOWN"])
async def test_member_in_a_bad_state_is_degraded(state: str, ctx: ProbeContext) -> None:
    with mock_member() as m:
        hosts = three_members(m)
        m.answer_hello(**primary_hello(m.address, hosts))
        m.answer_status(
            [
                status_member(hosts[0], "PRIMARY", this=True),
                status_member(hosts[1], "SECONDARY"),
                status_member(hosts[2], state, health=0 if state == "DOWN" else 1),
            ]
        )
        result = await run_probe(target(m.uri), ctx)
    assert (result.state, result.reason) == (State.DEGRADED, None), result
    assert f"member {hosts[2]} is {state}" in result.message


async def test_unhealthy_member_is_degraded(ctx: ProbeContext) -> None:
    """health 0 in a state not on the list (a member the primary cannot reach yet)."""
    with mock_member() as m:
        hosts = three_members(m)
        m.answer_hello(**primary_hello(m.address, hosts))
        m.answer_status(
            [
                status_member(hosts[0], "PRIMARY", this=True),
                status_member(hosts[1], "SECONDARY", health=0),
                status_member(hosts[2], "SECONDARY"),
            ]
        )
        result = await run_probe(target(m.uri), ctx)
    assert result.state is State.DEGRADED, result
    assert f"member {hosts[1]} is unhealthy (SECONDARY, health 0)" in result.message


@pytest.mark.parametrize(("limit", "expected"), [("30s", State.DEGRADED), ("5m", State.OK)])
async def test_lagging_secondary(limit: str, expected: State, ctx: ProbeContext) -> None:
    """Probing the secondary itself: its lag behind the primary, from the set's status."""
    with mock_member() as m:
        hosts = three_members(m)
        m.answer_hello(**secondary_hello(m.address, hosts, primary=hosts[1]))
        m.answer_status(
            [
                status_member(hosts[0], "SECONDARY", seconds_behind=120, this=True),
                status_member(hosts[1], "PRIMARY"),
                status_member(hosts[2], "SECONDARY", seconds_behind=1),
            ]
        )
        result = await run_probe(target(m.uri, role="secondary", max_replication_lag=limit), ctx)
    assert (result.state, result.reason) == (expected, None), result
    assert 115 <= result.gauges["replication_lag_seconds"] <= 130
    assert result.details["primary"] == hosts[1]
    assert result.info["role"] == "secondary"
    if expected is State.DEGRADED:
        assert f"secondary {hosts[0]} lags" in result.message and "limit 30s" in result.message


async def test_status_not_permitted_is_said_in_details(ctx: ProbeContext) -> None:
    with mock_member() as m:
        hosts = three_members(m)
        m.answer_hello(**primary_hello(m.address, hosts))
        m.refuse("replSetGetStatus", 13, "Unauthorized", "not authorized on admin to execute command")
        result = await run_probe(target(m.uri), ctx)
    assert (result.state, result.reason) == (State.OK, None), result
    assert "not permitted" in result.details["replication_status"]
    assert [x["name"] for x in result.details["members"]] == hosts  # from hello, without states
    assert "replication_lag_seconds" not in result.gauges


async def test_role_primary_on_a_secondary_is_unhealthy(ctx: ProbeContext) -> None:
    with mock_member() as m:
        hosts = three_members(m)
        m.answer_hello(**secondary_hello(m.address, hosts, primary=hosts[1]))
        m.answer_status([status_member(hosts[0], "SECONDARY", this=True), status_member(hosts[1], "PRIMARY")])
        result = await run_probe(target(m.uri, role="primary"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result
    assert result.message == f"expected a primary, the server is secondary of {SET_NAME}"


# --- faults ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("silent", ["ping", "replSetGetStatus"])
async def test_command_that_never_answers_times_out(silent: str, ctx: ProbeContext) -> None:
    answer = ("buildInfo",) if silent == "ping" else ("ping", "buildInfo")
    with mock_member(answer=answer) as m:
        m.answer_hello(**primary_hello(m.address, [m.address]))
        started = time.monotonic()
        result = await run_probe(target(m.uri, timeout="2s"), ctx)
        elapsed = time.monotonic() - started
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result
    assert elapsed < 2 + 3  # the target's timeout, and a generous allowance for closing


@pytest.mark.parametrize("where", ["uri", "password_field"])
async def test_wrong_password_is_auth(where: str, ctx: ProbeContext) -> None:
    with mock_member() as m:
        m.answer_hello(**primary_hello(m.address, [m.address]))
        # what mongod answers to a SCRAM conversation with a wrong password
        m.refuse("saslStart", 18, "AuthenticationFailed", "Authentication failed.")
        if where == "uri":
            config = target(f"mongodb://app:{PASSWORD}@{m.address}/?authSource=admin")
        else:
            config = target(f"mongodb://app@{m.address}/?authSource=admin", password=PASSWORD)
        result = await run_probe(config, ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.AUTH), result
    assert "Authentication failed" in result.message
    assert_no_secret(result)


async def test_refused_with_password_keeps_it_secret(ctx: ProbeContext) -> None:
    result = await run_probe(target(f"mongodb://app:{PASSWORD}@127.0.0.1:{free_port()}/"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED), result
    assert_no_secret(result)


@pytest.mark.parametrize("mode", ["http", "random", "close"])
async def test_garbage_on_the_port(mode: Garbage, ctx: ProbeContext) -> None:
    async with garbage_peer(mode) as port:
        result = await run_probe(target(f"mongodb://127.0.0.1:{port}/", timeout="3s"), ctx)
    assert result.state is State.UNHEALTHY, result
    assert result.reason in (Reason.PROTOCOL, Reason.TIMEOUT), result


async def test_server_that_never_answers_the_handshake_times_out(ctx: ProbeContext) -> None:
    async with garbage_peer("silent") as port:
        started = time.monotonic()
        result = await run_probe(target(f"mongodb://127.0.0.1:{port}/", timeout="2s"), ctx)
        elapsed = time.monotonic() - started
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result
    assert elapsed < 2 + 3


# --- TLS ---------------------------------------------------------------------------------------------


async def test_tls_with_ca_file(nx: NxServer, tmp_path: Path, ctx: ProbeContext) -> None:
    async with tls_front(nx.port, tmp_path) as front:
        uri = f"mongodb://localhost:{front.port}/?tls=true"
        trusted = await run_probe(target(uri, ca_file=str(front.ca_file)), ctx)
        untrusted = await run_probe(target(uri), ctx)
        plain = await run_probe(target(f"mongodb://localhost:{front.port}/", timeout="2s"), ctx)
    assert (trusted.state, trusted.reason) == (State.OK, None), trusted
    assert trusted.info["version"] == "7.0.0"
    assert (untrusted.state, untrusted.reason) == (State.UNHEALTHY, Reason.TLS), untrusted
    assert "certificate verify failed" in untrusted.message
    # plaintext against a TLS port: the TLS server answers with an alert, never a MongoDB reply
    assert plain.state is State.UNHEALTHY and plain.reason in (Reason.PROTOCOL, Reason.TIMEOUT), plain


# --- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"uri": "postgresql://db:5432/"}, "mongodb://"),
        ({"uri": "mongodb+srv://cluster.example.com:27017/"}, "without a port"),
        ({"uri": "mongodb://db:99999/"}, "invalid MongoDB URI"),
        ({"uri": "mongodb://db/?notAnOption=1&w=banana"}, "unknown option .notAnOption."),
        ({"uri": "mongodb://db/?authMechanism=NOPE"}, "invalid MongoDB URI"),
        ({"uri": "mongodb://db/", "password": "x"}, "names no user"),
        ({"uri": "mongodb://db/", "role": "arbiter"}, "role"),
    ],
)
def test_invalid_config(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        MongodbTarget.model_validate({"name": "m", "kind": "mongodb", **fields})


def test_uri_password_is_a_secret() -> None:
    config = target(f"mongodb://app:{PASSWORD}@db1:27017,db2:27017/?replicaSet=rs0")
    assert PASSWORD in config.secrets()
    assert PASSWORD in target("mongodb://app@db/", password=PASSWORD).secrets()


# --- the command line ----------------------------------------------------------------------------------


def test_cli_once_json(nx: NxServer, tmp_path: Path) -> None:
    with mock_member() as m:
        m.answer_hello(**primary_hello(m.address, [m.address]))
        m.refuse("saslStart", 18, "AuthenticationFailed", "Authentication failed.")
        (tmp_path / "mongo-password").write_text(PASSWORD + "\n")
        (tmp_path / "prober.yaml").write_text(
            f"""
targets:
  - name: documents
    kind: mongodb
    uri: {nx.uri}
    role: primary
    timeout: 5s
  - name: documents-wrong-password
    kind: mongodb
    critical: false
    uri: mongodb://app@{m.address}/
    password_file: mongo-password
    timeout: 5s
"""
        )
        done = run_cli("once", "-c", str(tmp_path / "prober.yaml"), "--json")
    assert PASSWORD not in done.stdout + done.stderr
    status = json.loads(done.stdout)
    good, bad = status["checks"]["documents"], status["checks"]["documents-wrong-password"]
    assert good["status"] == "ok", good
    assert good["kind"] == "mongodb"
    assert good["details"]["version"] == "7.0.0"
    assert (bad["status"], bad["reason"]) == ("unhealthy", "auth"), bad
    assert status["status"] == "degraded"  # an optional target is unhealthy
    assert done.returncode == 1, done.stderr
