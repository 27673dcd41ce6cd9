"""Backup freshness, shared by ``minio``'s ``newest_object`` and the ``file`` kind: the limits (``max_age``,
``unhealthy_age``, ``min_size``), the newest item's observations, its gauges and the rules that judge them.

Each kind lists what it watches (S3 keys under a prefix, files matching a glob), bounded per run, and hands
the newest item, the count and whether the listing stopped at its bound to :func:`observe`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, model_validator

from prober.judge import Check, Rule, degraded_if, unhealthy_if
from prober.models import Duration, Strict
from prober.probes._kit import config_duration, human_duration
from prober.status import Reason

DEFAULT_MAX_AGE = 26 * 3600.0  # a daily backup, with two hours of slack
MAX_LISTED = 1_000_000  # the largest bound a config may set on one run's listing

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}


def parse_size(value: Any) -> int:
    """``1KiB``, ``20MB``, ``512B`` or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 1KiB, 20MB or 512B, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    found = _SIZE.match(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"expected a size such as 1KiB, 20MB or 512B, got {value!r}")
    return int(float(found[1]) * _UNITS[found[2]])


def format_size(size: float) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size:.0f} B"


Size = Annotated[int, BeforeValidator(parse_size)]


class Limits(Strict):
    """How old and how small the newest item may be."""

    max_age: Duration = DEFAULT_MAX_AGE
    unhealthy_age: Duration | None = None
    min_size: Size = 1  # an empty file is a failed backup

    @model_validator(mode="after")
    def _ages_in_order(self) -> Self:
        if self.unhealthy_age is not None and self.unhealthy_age <= self.max_age:
            raise ValueError(
                f"unhealthy_age ({config_duration(self.unhealthy_age)}) must be longer than max_age "
                f"({config_duration(self.max_age)})"
            )
        return self


Bound = Annotated[int, Field(ge=1, le=MAX_LISTED)]


@dataclass(frozen=True, slots=True)
class Newest:
    """The newest item a run found: its name (a key, a path), modification time (epoch seconds) and size."""

    name: str
    modified: float
    size: int


@dataclass(frozen=True, slots=True)
class Watch:
    """How a kind names what it watches: the observation (``newest_object``), its name field (``key``), the
    count (``objects``), the thing (``object``), and, per target, its limits (None: not configured), where it
    looks (``under backups/ in bucket b``) and the bound of a listing (``max_keys (10000)``)."""

    name: str
    label: str
    counted: str
    thing: str
    limits: Callable[[Any], Limits | None]
    where: Callable[[Any], str]
    bound: Callable[[Any], str]


def observe(
    watch: Watch, newest: Newest | None, count: int, truncated: bool, now: float | None = None
) -> tuple[dict[str, Any], dict[str, float]]:
    """The observations (``<name>``: the key or path, age_seconds, size, modified; ``<counted>``: how many were
    listed; ``listing_truncated``) and the gauges of one run."""
    values: dict[str, Any] = {watch.counted: count, "listing_truncated": truncated}
    gauges: dict[str, float] = {}
    if newest is not None:
        now = time.time() if now is None else now
        values[watch.name] = {
            watch.label: newest.name,
            "age_seconds": round(max(0.0, now - newest.modified), 3),
            "size": newest.size,
            "modified": datetime.fromtimestamp(newest.modified, UTC).isoformat(timespec="seconds"),
        }
        gauges = {"newest_object_timestamp_seconds": newest.modified, "newest_object_size_bytes": float(newest.size)}
    return values, gauges


def rules(watch: Watch) -> tuple[Rule, ...]:
    """The default verdicts over :func:`observe`'s values: unhealthy when nothing is found or the newest is
    older than ``unhealthy_age``; degraded when it is older than ``max_age``, smaller than ``min_size``, or
    the listing stopped at its bound (then never unhealthy for its age: the newest may lie past the bound)."""

    def newest(target: Any, values: Mapping[str, Any]) -> tuple[Limits, dict[str, Any]] | None:
        found = watch.limits(target)
        return None if found is None or watch.name not in values else (found, values[watch.name])

    def nothing(target: Any, values: Mapping[str, Any]) -> str | None:
        if watch.limits(target) is None or watch.name in values or "listing_truncated" not in values:
            return None
        return f"no {watch.thing} {watch.where(target)}"

    def too_old(unhealthy: bool) -> Check:
        def check(target: Any, values: Mapping[str, Any]) -> str | None:
            seen = newest(target, values)
            if seen is None:
                return None
            found, item = seen
            limit = found.unhealthy_age if unhealthy else found.max_age
            if limit is None or item["age_seconds"] <= limit:
                return None
            if unhealthy and values.get("listing_truncated"):
                return None
            field = "unhealthy_age" if unhealthy else "max_age"
            age, most = human_duration(item["age_seconds"]), config_duration(limit)
            return (
                f"the newest {watch.thing} {watch.where(target)} is {age} old (> {field} {most}): {item[watch.label]}"
            )

        return check

    def too_small(target: Any, values: Mapping[str, Any]) -> str | None:
        seen = newest(target, values)
        if seen is None or seen[1]["size"] >= seen[0].min_size:
            return None
        found, item = seen
        size, least = format_size(item["size"]), format_size(found.min_size)
        return f"the newest {watch.thing} {watch.where(target)} is {size} (< min_size {least}): {item[watch.label]}"

    def truncated(target: Any, values: Mapping[str, Any]) -> str | None:
        if watch.limits(target) is None or not values.get("listing_truncated"):
            return None
        return (
            f"listing stopped at {watch.bound(target)} {watch.where(target)}: the newest may lie past it "
            "(narrow it, see the kind's docs)"
        )

    return (
        unhealthy_if(nothing, Reason.ASSERTION),
        unhealthy_if(too_old(True), Reason.ASSERTION),
        degraded_if(too_old(False)),
        degraded_if(too_small),
        degraded_if(truncated),
    )
