"""Scheduling: one APScheduler job per target.

First runs are spread over a window (at most one interval) so a thousand targets do not fire at
once; ``max_instances=1`` forbids overlapping runs of one target, and each run is hard-bounded by its
timeout (shorter than its interval), so a hung peer costs one timeout and delays nobody else. A
global semaphore bounds concurrent runs (and so open sockets); time spent waiting for it shows in
``prober_scheduler_lag_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from prober.history import History
from prober.models import TargetBase
from prober.probes import ProbeContext
from prober.runner import run_probe
from prober.status import Board, Reason, Result, TargetStatus

log = logging.getLogger("prober.scheduler")
SPREAD_PER_TARGET = 0.01  # seconds of first-run window per target, capped at one interval
SLOT = 0.05  # first runs start on a 50 ms grid: runs due together share one event-loop wakeup
GRID_RATE = 50.0  # runs per second from which the grid is used (below, wakeups cost little in total)


def _spread(name: str, interval: float, count: int) -> float:
    """A stable offset in [0, window) for the first run: the same name always gets the same slot.

    From ``GRID_RATE`` runs per second on, offsets are multiples of ``SLOT``: waking the event loop
    costs more than a small probe (a tcp connect) on a virtual machine, and targets of one slot are
    started in one wakeup (see bench/PROFILE.md). Lag is measured from the slot. The price: a run's
    latency may include a little of its slot-mates' work, so below that rate runs are kept apart."""
    window = min(interval, max(SLOT, count * SPREAD_PER_TARGET))
    offset = (zlib.crc32(name.encode()) / 2**32) * window
    if count / interval < GRID_RATE:
        return offset  # few runs per second: keep them apart, so no run waits for another's work
    return offset - offset % SLOT


def log_change(status: TargetStatus, before: str, result: Result) -> None:
    reason = f" reason={result.reason}" if result.reason else ""
    log.info(
        "target=%s kind=%s %s -> %s%s latency_ms=%.1f message=%s",
        status.name,
        status.kind,
        before,
        status.state,
        reason,
        (result.latency or 0) * 1000,
        result.message,
    )


class Scheduler:
    def __init__(self, board: Board, ctx: ProbeContext, max_concurrency: int, history: History | None = None) -> None:
        self.board = board
        self.history = history  # each run's outcome is recorded there too (the page's history, uptimes)
        self.ctx = ctx
        self._gate = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._targets: dict[str, TargetBase] = {}
        self._anchors: dict[str, float] = {}
        self._aps = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._aps.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)

    @property
    def running(self) -> bool:
        return bool(self._aps.running)

    def start(self) -> None:
        self._aps.start()

    def shutdown(self) -> None:
        """Stop scheduling and cancel runs in flight."""
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def set_max_concurrency(self, value: int) -> None:
        if value != self._max_concurrency:
            self._gate = asyncio.Semaphore(value)
            self._max_concurrency = value

    def apply(self, targets: tuple[TargetBase, ...]) -> None:
        """Adopt a target set: add, remove and reschedule jobs; unchanged targets are left alone."""
        wanted = {t.name: t for t in targets}
        self.board.apply(targets, start_periods=True)
        self.ctx.retain(targets)  # a removed or changed target forgets its previous runs
        if self.history is not None:
            self.history.apply(targets)
        for name in self._targets.keys() - wanted.keys():
            self._aps.remove_job(name)
            self._anchors.pop(name, None)
        now = time.time()
        for name, target in wanted.items():
            known = self._targets.get(name)
            if known is None:
                self._add(target, now + _spread(name, target.interval, len(wanted)))
            elif known.interval != target.interval:
                self._aps.remove_job(name)
                self._add(target, now + _spread(name, target.interval, len(wanted)))
        self._targets = wanted
        self.board.jobs = len(self._aps.get_jobs())

    def _add(self, target: TargetBase, first_run: float) -> None:
        self._anchors[target.name] = first_run
        start = datetime.fromtimestamp(first_run, UTC)
        trigger = IntervalTrigger(seconds=target.interval, start_date=start, timezone=UTC)
        # next_run_time: the first run happens at its slot even if that has passed by the time the scheduler
        # starts (adding thousands of jobs takes a while); from the trigger alone, APScheduler would move a
        # start_date in the past to the next interval, a whole interval late.
        self._aps.add_job(
            self.run_target, trigger, args=[target.name], id=target.name, name=target.name, next_run_time=start
        )

    def _skipped(self, event: JobEvent) -> None:
        """A run came due while the previous one still waited for a slot (max_concurrency reached):
        counted per target and logged on the first skip, never dropped silently."""
        status = self.board.targets.get(event.job_id)
        if status is None:
            return
        status.skipped_runs_total += 1
        if status.skipped_runs_total == 1:
            log.warning(
                "target=%s kind=%s a run was skipped: the previous one had not started or ended by the next "
                "interval (max_concurrency reached?); see prober_skipped_runs_total",
                status.name,
                status.kind,
            )

    def _scheduled_time(self, target: TargetBase, now: float) -> float:
        anchor = self._anchors.get(target.name, now)
        if now <= anchor:
            return anchor
        return anchor + ((now - anchor) // target.interval) * target.interval

    async def run_target(self, name: str) -> None:
        """One scheduled run of a target: wait for a slot, probe, record."""
        target = self._targets.get(name)
        if target is None:
            return
        scheduled = self._scheduled_time(target, time.time())
        async with self._gate:
            self.board.scheduler_lag.observe(max(0.0, time.time() - scheduled))
            result = await run_probe(target, self.ctx)
        current = self._targets.get(name)  # a reload may have changed or removed it meanwhile
        if current is not None:
            self.record(current, result)

    def record(self, target: TargetBase, result: Result) -> None:
        status = self.board.targets.get(target.name)
        if status is None:
            return
        before_state = status.state
        before_reason = status.last.reason if status.last else None
        status.record(result, target.failure_threshold, target.success_threshold)
        if self.history is not None:
            self.history.record(target.name, result, status.state, before_state, status.last_run)
        if result.reason is Reason.INTERNAL and before_reason is not Reason.INTERNAL:
            log.error(
                "target=%s kind=%s internal error in the probe (a bug of the prober)",
                target.name,
                target.kind,
                exc_info=result.error,
            )
        if status.state is not before_state:
            log_change(status, str(before_state), result)
