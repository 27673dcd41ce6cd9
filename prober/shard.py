"""Sharding targets across replicas by rendezvous (highest-random-weight) hashing on the target name.

Every replica computes, for each target, a weight per shard and keeps the targets whose highest
weight is its own index. So each target has exactly one owner, and going from N to N+1 replicas moves
only the targets the new shard wins: about 1/(N+1) of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
_SPEC = re.compile(r"^\s*(?P<index>\d+)\s*/\s*(?P<count>\d+)\s*$")
_ORDINAL = re.compile(r"(\d+)$")


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1} and count at least 1, got {self}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, name: str) -> bool:
        return owner(name, self.count) == self.index

    def select(self, items: Iterable[T]) -> list[T]:
        """The items (targets, or names) this shard owns."""
        return [item for item in items if self.owns(str(getattr(item, "name", item)))]


def _weight(shard: int, name: str) -> int:
    digest = hashlib.blake2b(f"{shard}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(name: str, count: int) -> int:
    """The shard (0..count-1) that probes ``name``."""
    return max(range(count), key=lambda shard: _weight(shard, name))


def parse(spec: str) -> Shard:
    """``INDEX/COUNT``, e.g. ``2/5``."""
    match = _SPEC.match(spec)
    if match is None:
        raise ValueError(f"expected INDEX/COUNT such as 0/3, got {spec!r}")
    return Shard(int(match["index"]), int(match["count"]))


def from_environment(environ: Mapping[str, str]) -> Shard | None:
    """``PROBER_SHARD=INDEX/COUNT``, or ``PROBER_SHARD_INDEX`` + ``PROBER_SHARD_COUNT``; the index may be a
    StatefulSet pod name (``prober-2``), whose trailing ordinal is used."""
    if environ.get("PROBER_SHARD"):
        return parse(environ["PROBER_SHARD"])
    index, count = environ.get("PROBER_SHARD_INDEX", ""), environ.get("PROBER_SHARD_COUNT", "")
    if not index and not count:
        return None
    ordinal = _ORDINAL.search(index)
    if ordinal is None or not count.strip().isdigit():
        raise ValueError(
            f"PROBER_SHARD_INDEX must end in a number (e.g. prober-2) and PROBER_SHARD_COUNT be a number, "
            f"got {index!r} and {count!r}"
        )
    return Shard(int(ordinal.group(1)), int(count))
