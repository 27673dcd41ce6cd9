"""``tcp``: a TCP connection is accepted within the timeout."""

from __future__ import annotations

from typing import Literal

from prober.errors import driver_errors
from prober.models import Address, TargetBase, split_address
from prober.probes import _net
from prober.probes._context import ProbeContext
from prober.status import Result, ok


class TcpTarget(TargetBase):
    kind: Literal["tcp"]
    address: Address


def _classify(_exc: BaseException) -> None:
    return None  # plain sockets: the shared socket mapping covers everything


async def probe(target: TcpTarget, ctx: ProbeContext) -> Result:
    host, port = split_address(target.address)
    phases: dict[str, float] = {}
    with driver_errors(_classify):
        sock = await _net.connect_socket(host, port, phases)
    sock.close()
    return ok("connected", phases=phases, latency=sum(phases.values()))
