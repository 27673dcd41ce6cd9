"""The probe context's memory of a target's previous run: kept while the target's config is the same (also
across a reload, which makes new objects), dropped when it changes or is removed, by the scheduler's apply."""

from __future__ import annotations

from typing import Any

from prober.models import TargetBase
from prober.probes import ProbeContext
from prober.probes.tcp import TcpTarget
from prober.scheduler import Scheduler
from prober.status import Board


def tcp(name: str = "smtp", **fields: Any) -> TargetBase:
    return TcpTarget.model_validate({"name": name, "kind": "tcp", "address": "127.0.0.1:25", **fields})


def test_memory_lasts_while_the_config_is_the_same() -> None:
    ctx = ProbeContext()
    ctx.memory(tcp())["seen"] = 1
    assert ctx.memory(tcp())["seen"] == 1  # another object, the same config
    assert ctx.memory(tcp(degraded_if=["latency_ms > 5.0"])) == {}  # changed: afresh
    assert ctx.memory(tcp(name="other")) == {}


def test_conditions_compare_by_their_text() -> None:
    ctx = ProbeContext()
    ctx.memory(tcp(unhealthy_if=["latency_ms > 5.0"]))["seen"] = 1
    assert ctx.memory(tcp(unhealthy_if=["latency_ms > 5.0"])) == {"seen": 1}


async def test_the_scheduler_drops_the_memory_of_removed_and_changed_targets() -> None:
    ctx = ProbeContext()
    scheduler = Scheduler(Board(), ctx, max_concurrency=10)
    kept, changed, removed = tcp("kept"), tcp("changed"), tcp("removed")
    scheduler.apply((kept, changed, removed))
    for target in (kept, changed, removed):
        ctx.memory(target)["seen"] = target.name
    scheduler.apply((tcp("kept"), tcp("changed", address="127.0.0.1:26")))  # a reload
    assert ctx.memory(tcp("kept")) == {"seen": "kept"}
    assert ctx.memory(tcp("changed", address="127.0.0.1:26")) == {}
    assert ctx.memory(tcp("removed")) == {}
    scheduler.shutdown()
    await ctx.close()
