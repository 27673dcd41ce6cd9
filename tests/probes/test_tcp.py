"""The tcp probe against real sockets."""

from __future__ import annotations

import pytest

from prober.probes import ProbeContext
from prober.probes.tcp import TcpTarget
from prober.runner import run_probe
from prober.status import Reason, State
from tests.peers.web import Peers


async def test_open_port(peers: Peers, ctx: ProbeContext) -> None:
    result = await run_probe(TcpTarget(name="t", kind="tcp", address=peers.address("http")), ctx)
    assert result.state is State.OK
    assert "connect" in result.phases and result.latency is not None


async def test_closed_port(peers: Peers, ctx: ProbeContext) -> None:
    result = await run_probe(TcpTarget(name="t", kind="tcp", address=peers.address("closed")), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.REFUSED)


async def test_hostname_is_resolved_and_timed(peers: Peers, ctx: ProbeContext) -> None:
    result = await run_probe(TcpTarget(name="t", kind="tcp", address=f"localhost:{peers.ports['http']}"), ctx)
    assert result.state is State.OK
    assert "dns" in result.phases


async def test_unknown_host(ctx: ProbeContext) -> None:
    result = await run_probe(TcpTarget(name="t", kind="tcp", address="no-such-host.invalid:25"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.DNS), result.message


@pytest.mark.parametrize("address", ["10.255.255.1:9", "192.0.2.1:9"])
def test_unroutable_addresses_are_never_probed_here(address: str) -> None:
    # Non-loopback targets are out of bounds on these machines: only validate the config.
    assert TcpTarget(name="t", kind="tcp", address=address).address == address
