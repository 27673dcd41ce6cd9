"""Rendezvous sharding: every target has exactly one owner, and adding a replica moves few targets."""

from __future__ import annotations

import pytest

from prober import shard
from prober.shard import Shard

NAMES = [f"service-{i}.example.internal" for i in range(5000)]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_partition_every_target_exactly_once(count: int) -> None:
    owned = [Shard(index, count).select(NAMES) for index in range(count)]
    flat = [name for part in owned for name in part]
    assert sorted(flat) == sorted(NAMES)  # none twice, none never
    expected = len(NAMES) / count
    assert all(abs(len(part) - expected) < expected * 0.15 for part in owned), [len(p) for p in owned]


@pytest.mark.parametrize("count", [1, 2, 4, 7])
def test_adding_a_replica_moves_about_one_in_n_plus_one(count: int) -> None:
    before = {name: shard.owner(name, count) for name in NAMES}
    after = {name: shard.owner(name, count + 1) for name in NAMES}
    moved = [name for name in NAMES if before[name] != after[name]]
    assert all(after[name] == count for name in moved)  # only to the new replica
    share = len(moved) / len(NAMES)
    assert abs(share - 1 / (count + 1)) < 0.03, share


def test_parse_and_environment() -> None:
    assert shard.parse("2/5") == Shard(2, 5)
    assert shard.from_environment({"PROBER_SHARD": "1/3"}) == Shard(1, 3)
    assert shard.from_environment({"PROBER_SHARD_INDEX": "prober-4", "PROBER_SHARD_COUNT": "6"}) == Shard(4, 6)
    assert shard.from_environment({}) is None
    for bad in ("3/3", "x/2", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            shard.parse(bad)
    with pytest.raises(ValueError):
        shard.from_environment({"PROBER_SHARD_INDEX": "prober", "PROBER_SHARD_COUNT": "2"})
