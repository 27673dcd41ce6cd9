"""Where only a driver's message tells two cases apart, the patterns live in one ``WORDS`` table per kind.
Each row carries the text as the driver wrote it and the driver version it was seen with: this test holds
every row to its sample, so a driver upgrade that changes its words shows up here (and in
scripts/check-latest.sh) before users see a wrong reason."""

from __future__ import annotations

import re

import pytest

from prober.errors import Words
from prober.probes import MODULES

ROWS = [(module.__name__.rsplit(".", 1)[1], row) for module in MODULES for row in module.WORDS]
DRIVER_VERSION = re.compile(r"^(asyncpg|redis-py|pymongo|minio|clickhouse-connect|aiohttp) \d+\.\d+(\.\d+)?$")


@pytest.mark.parametrize(("kind", "row"), ROWS, ids=[f"{kind}-{row.case}" for kind, row in ROWS])
def test_each_row_matches_the_words_it_was_seen_with(kind: str, row: Words) -> None:
    assert DRIVER_VERSION.match(row.seen_with), f"{kind}: name the driver and its version, got {row.seen_with!r}"
    assert row.pattern.search(row.sample), f"{kind}: {row.pattern.pattern!r} does not match its sample"
