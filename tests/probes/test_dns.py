"""The dns probe against a real dnsmasq on loopback (zone data the tests write and change) and UDP peers
that answer SERVFAIL, garbage or nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from prober.errors import ProbeFailure
from prober.probes import ProbeContext
from prober.probes import dns as dns_probe
from prober.probes.dns import DnsTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import free_port, run_cli
from tests.peers import dns as peers
from tests.peers.dns import HOSTS, LONG_TXT, ZONE, Dnsmasq, UdpPeer

dnsmasq = peers.dnsmasq
dnsmasq_forwarder = peers.dnsmasq_forwarder
udp_peers = peers.udp_peers


def target(server: str, query_name: str = f"app.{ZONE}", **fields: Any) -> DnsTarget:
    values = {"name": "dns", "kind": "dns", "query_name": query_name, "server": server, "timeout": "1s", **fields}
    return DnsTarget.model_validate(values)


async def probe(ctx: ProbeContext, server: str, query_name: str = f"app.{ZONE}", **fields: Any) -> Result:
    return await run_probe(target(server, query_name, **fields), ctx)


async def test_a_record(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    result = await probe(ctx, dnsmasq.server, expect_answers=["127.0.0.10"])
    assert result.state is State.OK, result.message
    assert result.details["rcode"] == "NOERROR"
    assert result.details["answers"] == ["127.0.0.10"]
    assert result.details["authoritative"] is True
    assert result.details["ttl_min"] == 300
    assert result.details["server"] == dnsmasq.server
    assert result.details["truncated_retry"] is False
    assert set(result.phases) == {"query"}
    assert result.message == f"NOERROR, 1 A answer from {dnsmasq.server}"


@pytest.mark.parametrize(
    ("rdtype", "name", "answer"),
    [
        ("AAAA", f"app.{ZONE}", "::10"),
        ("MX", ZONE, f"10 mail.{ZONE}"),
        ("TXT", ZONE, "v=spf1 -all"),
        ("SRV", f"_http._tcp.{ZONE}", f"0 5 8080 app.{ZONE}"),
        ("CNAME", f"www.{ZONE}", f"app.{ZONE}"),
        ("NS", ZONE, f"ns1.{ZONE}"),
    ],
)
async def test_record_types(ctx: ProbeContext, dnsmasq: Dnsmasq, rdtype: str, name: str, answer: str) -> None:
    result = await probe(ctx, dnsmasq.server, name, type=rdtype, expect_answers=[answer])
    assert result.state is State.OK, result.message
    assert result.details["answers"] == [answer]


async def test_soa_with_a_regular_expression(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    result = await probe(ctx, dnsmasq.server, ZONE, type="SOA", expect_answers=[rf"ns1\.{ZONE} hostmaster\..* 300"])
    assert result.state is State.OK, result.message


async def test_tcp_transport(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    result = await probe(ctx, dnsmasq.server, transport="tcp", expect_answers=[r"127\.0\.0\.\d+"])
    assert result.state is State.OK, result.message
    assert "truncated_retry" not in result.details


async def test_truncated_udp_answer_is_asked_again_over_tcp(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    result = await probe(ctx, dnsmasq.server, LONG_TXT, type="TXT")
    assert result.state is State.OK, result.message
    assert result.details["truncated_retry"] is True
    (answer,) = result.details["answers"]  # one record of 12 strings, joined
    assert len(answer) == 12 * 61 + 2 and answer.endswith("t11")


async def test_cached_answer_is_not_authoritative(ctx: ProbeContext, dnsmasq_forwarder: Dnsmasq) -> None:
    await probe(ctx, dnsmasq_forwarder.server)  # the forwarder asks the authoritative server and caches
    await asyncio.sleep(1.1)
    result = await probe(ctx, dnsmasq_forwarder.server, expect_answers=["127.0.0.10"])
    assert result.state is State.OK, result.message
    assert result.details["authoritative"] is False
    assert 0 < result.details["ttl_min"] < 300  # counting down in the cache


async def test_nxdomain_is_unhealthy_dns(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    result = await probe(ctx, dnsmasq.server, f"missing.{ZONE}")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.DNS)
    assert result.message == f"NXDOMAIN for missing.{ZONE} A (expected NOERROR)"
    assert result.details["rcode"] == "NXDOMAIN"


async def test_expected_nxdomain_is_ok(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    result = await probe(ctx, dnsmasq.server, f"missing.{ZONE}", expect_rcode="NXDOMAIN")
    assert result.state is State.OK, result.message
    found = await probe(ctx, dnsmasq.server, expect_rcode="NXDOMAIN")
    assert (found.state, found.reason) == (State.UNHEALTHY, Reason.ASSERTION)
    assert found.message == f"NOERROR for app.{ZONE} A (expected NXDOMAIN)"


async def test_refused_outside_the_local_zones(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    result = await probe(ctx, dnsmasq.server, "elsewhere.example")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.DNS)
    assert result.details["rcode"] == "REFUSED"


async def test_no_record_of_the_type_is_unhealthy(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    result = await probe(ctx, dnsmasq.server, type="MX")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION)
    assert result.message == f"no MX record for app.{ZONE} (NOERROR, empty answer)"


async def test_changed_zone_data_is_seen(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    expecting = target(dnsmasq.server, expect_answers=["127.0.0.10"])
    assert (await run_probe(expecting, ctx)).state is State.OK
    try:
        dnsmasq.set_hosts(f"127.0.0.99 app.{ZONE}\n")
        moved = await run_probe(expecting, ctx)
        assert (moved.state, moved.reason) == (State.UNHEALTHY, Reason.ASSERTION)
        assert moved.message == "no answer matches '127.0.0.10' (answers: 127.0.0.99)"
        dnsmasq.set_hosts("127.0.0.20 other.other.test\n")
        gone = await run_probe(expecting, ctx)
        assert (gone.state, gone.reason) == (State.UNHEALTHY, Reason.DNS), gone.message
    finally:
        dnsmasq.set_hosts(HOSTS)
    assert (await run_probe(expecting, ctx)).state is State.OK


async def test_frozen_server_is_a_timeout(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    dnsmasq.freeze()
    try:
        for transport in ("udp", "tcp"):
            result = await probe(ctx, dnsmasq.server, transport=transport)
            assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), transport
            assert result.message.startswith("no answer from the DNS server"), result.message
            assert result.latency is not None and result.latency < 1
    finally:
        dnsmasq.thaw()
    assert (await probe(ctx, dnsmasq.server)).state is State.OK


async def test_servfail_is_unhealthy_dns(ctx: ProbeContext, udp_peers: dict[str, UdpPeer]) -> None:
    result = await probe(ctx, udp_peers["servfail"].server)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.DNS)
    assert result.message == f"SERVFAIL for app.{ZONE} A (expected NOERROR)"


async def test_garbage_answer_is_protocol(ctx: ProbeContext, udp_peers: dict[str, UdpPeer]) -> None:
    result = await probe(ctx, udp_peers["garbage"].server)
    assert result.state is State.UNHEALTHY
    # dnspython drops a datagram it cannot parse as the answer and waits for the real one
    assert result.reason in (Reason.PROTOCOL, Reason.TIMEOUT), result.message


async def test_silent_server_is_a_timeout(ctx: ProbeContext, udp_peers: dict[str, UdpPeer]) -> None:
    result = await probe(ctx, udp_peers["silent"].server)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT)


async def test_tcp_to_a_closed_port_is_refused(ctx: ProbeContext) -> None:
    result = await probe(ctx, f"127.0.0.1:{free_port()}", transport="tcp")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED)


async def test_server_given_by_name(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    result = await probe(ctx, f"localhost:{dnsmasq.port}")
    assert result.state is State.OK, result.message
    assert set(result.phases) == {"dns", "query"}


async def test_concurrent_runs(ctx: ProbeContext, dnsmasq: Dnsmasq) -> None:
    results = await asyncio.gather(*(probe(ctx, dnsmasq.server) for _ in range(50)))
    assert {r.state for r in results} == {State.OK}


def test_system_resolver_is_the_first_nameserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("search example.internal\nnameserver 127.0.0.53\nnameserver 127.0.0.54\n")
    monkeypatch.setattr(dns_probe, "RESOLV_CONF", str(conf))
    assert dns_probe.system_server() == ("127.0.0.53", 53)
    conf.write_text("search example.internal\n")
    with pytest.raises(ProbeFailure, match="names no nameserver"):
        dns_probe.system_server()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"query_name": "bad name"}, "expected a DNS name"),
        ({"query_name": "-x.example"}, "expected a DNS name"),
        ({"type": "PTR"}, "Input should be 'A'"),
        ({"server": "127.0.0.1:99999"}, "expected host:port"),
        ({"transport": "quic"}, "Input should be 'udp' or 'tcp'"),
        ({"expect_rcode": "YXDOMAIN"}, "Input should be"),
        ({"expect_answers": []}, "at least 1 item"),
    ],
)
def test_bad_config(fields: dict[str, Any], message: str) -> None:
    values = {"name": "d", "kind": "dns", "query_name": "example.com", **fields}
    with pytest.raises(ValidationError, match=message):
        DnsTarget.model_validate(values)


@pytest.mark.parametrize("server", ["10.0.0.53", "[fd00::53]", "fd00::53", "ns.example:5353", "[fd00::53]:53", "ns"])
def test_server_forms(server: str) -> None:
    assert dns_probe.split_server(server)[1] in (53, 5353)


def test_prober_once(dnsmasq: Dnsmasq, tmp_path: Path) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text(
        "targets:\n"
        f"  - {{name: app-dns, kind: dns, query_name: app.{ZONE}, server: '{dnsmasq.server}', type: AAAA}}\n"
        f"  - {{name: gone-dns, kind: dns, query_name: gone.{ZONE}, server: '{dnsmasq.server}', critical: false}}\n"
    )
    done = run_cli("once", "-c", str(path), "--json")
    assert done.returncode == 1, done.stderr  # an optional target unhealthy: degraded
    checks = json.loads(done.stdout)["checks"]
    assert checks["app-dns"]["status"] == "ok" and checks["app-dns"]["details"]["answers"] == ["::10"]
    assert (checks["gone-dns"]["status"], checks["gone-dns"]["reason"]) == ("unhealthy", "dns")
