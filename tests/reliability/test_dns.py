"""Name lookups cannot stall anything else (issue table row: 20 names that never resolve made /metrics
take 9 s and 14 of 20 healthy targets time out, the lookups filling the default thread pool that
rendering shared). The system resolver is stood in for by a lookup that hangs for names ending in
``.hang`` (a DNS server that never answers cannot be set up for one process here) and asks the real
resolver for the rest; the probes, the pool and the loop are the real ones."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

from prober.probes import ProbeContext
from prober.probes._net import Resolver
from prober.probes.tcp import TcpTarget
from prober.runner import run_probe
from prober.status import Reason, State
from tests.peers.web import Peers

RELEASE = threading.Event()


def system_with_hanging_names(host: Any, port: Any, *args: Any) -> Any:
    if isinstance(host, str) and host.endswith(".hang"):
        RELEASE.wait(30)  # a resolver that never answers (until the test ends)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    return socket.getaddrinfo(host, port, *args)


def tcp(name: str, address: str) -> TcpTarget:
    return TcpTarget.model_validate(
        {"name": name, "kind": "tcp", "address": address, "interval": "1s", "timeout": "500ms"}
    )


async def test_names_that_never_resolve_cost_their_own_targets_only(peers: Peers) -> None:
    ctx = ProbeContext()
    ctx.resolver = resolver = Resolver(workers=64, lookup=system_with_hanging_names)
    hanging = [tcp(f"hang{i}", f"dep{i}.hang:5432") for i in range(20)]
    healthy = [tcp(f"ok{i}", f"localhost:{peers.ports['http']}") for i in range(20)]
    try:
        for _ in range(3):  # three rounds: the hung lookups of the first are still blocked
            started = time.monotonic()
            results = await asyncio.gather(*(run_probe(t, ctx) for t in hanging + healthy))
            assert time.monotonic() - started < 2
            bad, good = results[:20], results[20:]
            assert all((r.state, r.reason) == (State.UNHEALTHY, Reason.TIMEOUT) for r in bad), bad[0].message
            assert all(r.state is State.OK for r in good), [r.message for r in good if r.state is not State.OK]
        # one lookup per hanging name, shared by its later runs: the pool is not filled round after round
        assert resolver.lookups <= 20 + 3
        # the loop's default executor (used by asyncio.to_thread and by drivers before) is free
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 1) == 42
        # and drivers resolving through the loop use the same resolver
        infos = await asyncio.get_running_loop().getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        assert infos and infos[0][4][1] == 80
    finally:
        RELEASE.set()
        await ctx.close()
        RELEASE.clear()
