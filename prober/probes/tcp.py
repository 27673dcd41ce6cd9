"""``tcp``: a TCP connection is accepted within the timeout."""

from __future__ import annotations

from typing import Literal

from prober.errors import ProbeFailure, Words, driver_errors
from prober.judge import Observable, Observation, Rule
from prober.models import Address, TargetBase, split_address
from prober.probes import _net
from prober.probes._context import ProbeContext

# bytes one run may receive from its peers (_budget.py): nothing is read
BYTE_BUDGET = 64 * 2**10


class TcpTarget(TargetBase):
    kind: Literal["tcp"]
    address: Address

    def where(self) -> str:
        return self.address


MODEL = TcpTarget

OBSERVES: dict[str, Observable] = {}
RULES: tuple[Rule, ...] = ()


WORDS: tuple[Words, ...] = ()  # no driver words to read: exception types say it all


def classify(_exc: BaseException) -> ProbeFailure | None:
    return None  # plain sockets: the shared socket mapping covers everything


async def probe(target: TcpTarget, ctx: ProbeContext) -> Observation:
    host, port = split_address(target.address)
    run = ctx.begin(target)
    with driver_errors(classify):
        sock = await _net.connect_socket(host, port, run.phases)
    sock.close()
    return Observation({}, summary="connected", phases=run.phases, latency=sum(run.phases.values()))
