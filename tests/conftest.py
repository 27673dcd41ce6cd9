from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from prober.probes import ProbeContext
from tests.peers.web import Peers


@pytest.fixture(scope="session")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """HTTP applications, TLS endpoints and hostile servers on loopback (see tests/peers/web.py)."""
    started = Peers(tmp_path_factory.mktemp("peers")).start()
    yield started
    started.stop()


@pytest.fixture
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext()
    yield context
    await context.close()
