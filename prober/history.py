"""Recent history of every target, in memory and bounded: what the page shows and the uptimes of /status.

Per target, two rings of buckets and one ring of transitions, all in flat arrays shared by every target
(a target owns a *slot*: a fixed range of each array), so a target costs the same few kilobytes whatever
happens to it and no Python object per run or per bucket is kept:

* **minutes**: 60 one-minute buckets (the last hour): the row's state timeline and latency sparkline,
  ``uptime_1h``;
* **quarters**: 96 fifteen-minute buckets (the last 24 hours): the detail view's day, ``uptime_24h``.

A bucket holds its runs (counts saturate at 65,535 per bucket: a run every 14 ms), the runs that reached
the target (ok or degraded) and those that did not (unhealthy), the worst debounced state and the worst
raw result seen in it, and the latency min, max and sum (float32). Uptime is ``up / (up + down)``: runs
that ended in the prober's own failure (``unknown``) say nothing about the dependency and count on
neither side, as in the PromQL documented in README.

**transitions**: the last 50 changes of the debounced state (time, from, to, the run's reason and
message). Messages are cut to ``MESSAGE_CHARS``; a message already in the target's ring is shared (a
flapping target repeats itself), and a target's distinct kept messages are bounded to ``MESSAGE_BUDGET``
bytes: past it the oldest transitions lose their message (they keep time, states and reason).

The layout costs ``bytes_per_target()`` bytes of arrays per target (about 3.7 KB) plus its messages:
bench/history_memory.py measures RSS for 10,000 targets. Nothing is written to disk: history starts
afresh when the daemon does (long history belongs in Prometheus). Written by the scheduler on the event
loop, read by the HTTP surface on the same loop; a read never triggers a probe.
"""

from __future__ import annotations

import sys
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from prober.status import Result, State

MESSAGE_CHARS = 160  # of a transition's message
MESSAGE_BUDGET = 1536  # bytes of distinct message strings kept per target (sys.getsizeof of each)
TRANSITIONS = 50

# State codes, ordered so that the worse state is the larger code: a bucket keeps the max.
NONE, OK, UNKNOWN, DEGRADED, UNHEALTHY = 0, 1, 2, 3, 4
CODE = {State.OK: OK, State.UNKNOWN: UNKNOWN, State.DEGRADED: DEGRADED, State.UNHEALTHY: UNHEALTHY}
STATE_OF: dict[int, State | None] = {NONE: None, **{code: state for state, code in CODE.items()}}
LETTERS = b"-oxdu"  # per code: none, ok, unknown (x), degraded, unhealthy: a timeline as text
_HIGH_LETTER = bytes(LETTERS[code >> 4] if code >> 4 < len(LETTERS) else LETTERS[0] for code in range(256))
_REASONS: list[str | None] = [None]  # reason code -> reason; filled on first use (0 is none)


def _reason_code(reason: str | None) -> int:
    if reason is None:
        return 0
    try:
        return _REASONS.index(reason)
    except ValueError:
        _REASONS.append(reason)
        return len(_REASONS) - 1


class Named(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of a ring, as read: ``start`` is its first second (epoch)."""

    start: float
    runs: int
    up: int
    down: int
    state: State | None  # the worst debounced state while in it
    raw: State | None  # the worst single result in it
    latency_min: float | None  # seconds
    latency_mean: float | None
    latency_max: float | None

    def as_json(self) -> dict[str, object]:
        seconds = (self.latency_min, self.latency_mean, self.latency_max)
        ms = [None if v is None else round(v * 1000, 2) for v in seconds]
        return {
            "start": self.start,
            "runs": self.runs,
            "up": self.up,
            "down": self.down,
            "status": self.state.value if self.state else None,
            "worst_run": self.raw.value if self.raw else None,
            "latency_ms": {"min": ms[0], "mean": ms[1], "max": ms[2]},
        }


@dataclass(frozen=True, slots=True)
class Transition:
    time: float
    before: State
    after: State
    reason: str | None
    message: str | None  # None once the target's message budget dropped it

    def as_json(self) -> dict[str, object]:
        return {
            "time": self.time,
            "from": self.before.value,
            "to": self.after.value,
            "reason": self.reason,
            "message": self.message,
        }


class Ring:
    """``length`` buckets of ``step`` seconds per slot, in flat arrays; ``count`` is the counters' typecode."""

    def __init__(self, step: int, length: int, count: str = "H") -> None:
        self.step, self.length = step, length
        self.limit = (1 << (8 * array(count).itemsize)) - 1
        self.runs, self.up, self.down = array(count), array(count), array(count)
        self.state = array("B")  # high nibble: worst debounced state; low nibble: worst raw result
        self.low, self.high, self.total = array("f"), array("f"), array("f")  # latency seconds: min, max, sum
        self.last = array("q")  # per slot: the bucket number last written (-1: none)
        self.sum_up, self.sum_down = array("I"), array("I")  # per slot: up and down over the whole ring

    def columns(self) -> tuple[array[int] | array[float], ...]:
        return self.runs, self.up, self.down, self.state, self.low, self.high, self.total

    def grow(self, slots: int) -> None:
        for column in self.columns():
            column.extend(array(column.typecode, bytes(column.itemsize * self.length * slots)))
        self.last.extend([-1] * slots)
        self.sum_up.extend([0] * slots)
        self.sum_down.extend([0] * slots)

    def clear(self, slot: int) -> None:
        base, n = slot * self.length, self.length
        for column in self.columns():
            column[base : base + n] = array(column.typecode, bytes(column.itemsize * n))
        self.last[slot], self.sum_up[slot], self.sum_down[slot] = -1, 0, 0

    def _roll(self, slot: int, number: int) -> int:
        """Make bucket ``number`` the newest of the slot (clearing the buckets it passes); its index."""
        last, n, base = self.last[slot], self.length, slot * self.length
        if number > last:
            if last < 0 or number - last >= n:
                self.clear(slot)
            else:
                for passed in range(last + 1, number + 1):
                    i = base + passed % n
                    self.sum_up[slot] -= self.up[i]
                    self.sum_down[slot] -= self.down[i]
                    self.runs[i] = self.up[i] = self.down[i] = self.state[i] = 0
                    self.low[i] = self.high[i] = self.total[i] = 0.0
            self.last[slot] = number
        else:
            number = max(number, last - n + 1)  # the clock stepped back: count it in a bucket still kept
        return base + number % n

    def add(self, slot: int, now: float, reached: bool, judged: bool, code: int, latency: float | None) -> None:
        i = self._roll(slot, int(now // self.step))
        runs = self.runs[i]
        if runs < self.limit:
            self.runs[i] = runs + 1
            if judged and reached:
                self.up[i] += 1
                self.sum_up[slot] += 1
            elif judged:
                self.down[i] += 1
                self.sum_down[slot] += 1
        self.state[i] = max(self.state[i] & 0xF0, code & 0xF0) | max(self.state[i] & 0x0F, code & 0x0F)
        if latency is not None:
            if runs == 0 or latency < self.low[i]:
                self.low[i] = latency
            if latency > self.high[i]:
                self.high[i] = latency
            self.total[i] += latency

    def _window(self, slot: int, now: float) -> tuple[int, range]:
        """The ring's index base and the bucket numbers of the window ending at ``now`` that hold data."""
        number = int(now // self.step)
        last = self.last[slot]
        first = max(number - self.length + 1, last - self.length + 1)
        return slot * self.length, range(first, min(number, last) + 1)

    def sums(self, slot: int, now: float) -> tuple[int, int]:
        """(up, down) over the window ending at ``now``: the ring's totals less the buckets that have left the
        window since the slot was last written (none while it is current)."""
        number, last, n = int(now // self.step), self.last[slot], self.length
        up, down = self.sum_up[slot], self.sum_down[slot]
        if last < 0 or number - last >= n:
            return 0, 0
        base = slot * n
        for b in range(last - n + 1, number - n + 1):  # kept in the ring, but older than the window
            up -= self.up[base + b % n]
            down -= self.down[base + b % n]
        return up, down

    def buckets(self, slot: int, now: float) -> list[Bucket | None]:
        """The window ending at ``now``, oldest first; None where nothing ran."""
        number, n = int(now // self.step), self.length
        base, numbers = self._window(slot, now)
        out: list[Bucket | None] = []
        for b in range(number - n + 1, number + 1):
            i = base + b % n
            if b not in numbers or not self.runs[i]:
                out.append(None)
                continue
            runs, has_latency = self.runs[i], self.high[i] > 0 or self.total[i] > 0
            out.append(
                Bucket(
                    float(b * self.step),
                    runs,
                    self.up[i],
                    self.down[i],
                    STATE_OF[self.state[i] >> 4],
                    STATE_OF[self.state[i] & 0x0F],
                    float(self.low[i]) if has_latency else None,
                    float(self.total[i]) / runs if has_latency else None,
                    float(self.high[i]) if has_latency else None,
                )
            )
        return out

    def letters(self, slot: int, now: float) -> str:
        """The window's debounced states as one letter per bucket (``LETTERS``), oldest first."""
        number, last, n = int(now // self.step), self.last[slot], self.length
        if last < 0 or number - last >= n:
            return "-" * n
        base, start = slot * n, (number + 1) % n  # the window's oldest bucket sits at index ``start``
        ring = self.state[base : base + n].tobytes()
        text = (ring[start:] + ring[:start]).translate(_HIGH_LETTER).decode()
        stale = max(0, number - last)  # buckets after the last write hold an older cycle's data
        return text[: n - stale] + "-" * stale if stale else text

    def means(self, slot: int, now: float) -> list[float | None]:
        """The window's mean latency per bucket, seconds, oldest first."""
        number, last, n = int(now // self.step), self.last[slot], self.length
        if last < 0 or number - last >= n:
            return [None] * n
        base, start = slot * n, (number + 1) % n
        runs, total, high = (c[base : base + n] for c in (self.runs, self.total, self.high))
        order = [*range(start, n), *range(start)]
        out = [float(total[i]) / runs[i] if runs[i] and (total[i] or high[i]) else None for i in order]
        stale = max(0, number - last)
        return out[: n - stale] + [None] * stale if stale else out


class Transitions:
    """The last ``TRANSITIONS`` state changes of every slot, in flat arrays; messages in one list."""

    def __init__(self, length: int = TRANSITIONS) -> None:
        self.length = length
        self.time = array("I")  # epoch seconds
        self.codes = array("B")  # before << 4 | after
        self.reason = array("B")
        self.message: list[str | None] = []
        self.count = array("H")  # per slot: transitions stored (<= length)
        self.head = array("H")  # per slot: where the next one goes
        self.kept = array("I")  # per slot: bytes of the messages kept

    def grow(self, slots: int) -> None:
        n = self.length * slots
        self.time.extend(array("I", bytes(4 * n)))
        self.codes.extend(bytes(n))
        self.reason.extend(bytes(n))
        self.message.extend([None] * n)
        for column in (self.count, self.head, self.kept):
            column.extend([0] * slots)

    def clear(self, slot: int) -> None:
        base = slot * self.length
        for i in range(base, base + self.length):
            self.message[i] = None
        self.count[slot] = self.head[slot] = self.kept[slot] = 0

    def add(self, slot: int, when: float, before: State, after: State, reason: str | None, message: str) -> None:
        base, n = slot * self.length, self.length
        i = base + self.head[slot]
        self.head[slot] = (self.head[slot] + 1) % n
        self.count[slot] = min(self.count[slot] + 1, n)
        order = [base + (self.head[slot] - self.count[slot] + k) % n for k in range(self.count[slot])]  # oldest 1st
        text = message[:MESSAGE_CHARS]
        # a flapping target repeats its messages: a message already in its ring is shared, and counted once
        self.message[i] = next((m for j in order if (m := self.message[j]) == text and j != i), text)
        self.time[i] = int(when)
        self.codes[i] = CODE[before] << 4 | CODE[after]
        self.reason[i] = _reason_code(reason)
        # over the budget: the oldest transitions lose their message (never the new one)
        kept = self._kept(order)
        for j in order[:-1]:
            if kept <= MESSAGE_BUDGET:
                break
            if self.message[j] is not None:
                self.message[j] = None
                kept = self._kept(order)
        self.kept[slot] = kept

    def _kept(self, indexes: list[int]) -> int:
        distinct = {id(m): m for m in (self.message[j] for j in indexes) if m is not None}
        return sum(sys.getsizeof(m) for m in distinct.values())

    def read(self, slot: int, limit: int | None = None) -> list[Transition]:
        """Newest first."""
        base, n = slot * self.length, self.length
        out = []
        for k in range(min(self.count[slot], n if limit is None else limit)):
            i = base + (self.head[slot] - 1 - k) % n
            before, after = STATE_OF[self.codes[i] >> 4], STATE_OF[self.codes[i] & 0x0F]
            assert before is not None and after is not None
            out.append(Transition(self.time[i], before, after, _REASONS[self.reason[i]], self.message[i]))
        return out


class History:
    """Every target's recent history (see the module's doc)."""

    MINUTES = (60, 60)  # step seconds, buckets
    QUARTERS = (900, 96)

    def __init__(self) -> None:
        self.minutes = Ring(*self.MINUTES, count="H")
        self.quarters = Ring(*self.QUARTERS, count="H")
        self.transitions = Transitions()
        self._slots: dict[str, int] = {}
        self._kinds: dict[str, str] = {}
        self._free: list[int] = []
        self._capacity = 0

    @staticmethod
    def bytes_per_target() -> int:
        """Bytes of array storage one target costs (its kept messages come on top, up to MESSAGE_BUDGET)."""
        probe = History()
        probe._grow(1)
        rings = sum(
            column.itemsize * len(column)
            for ring in (probe.minutes, probe.quarters)
            for column in (*ring.columns(), ring.last, ring.sum_up, ring.sum_down)
        )
        t = probe.transitions
        moves = sum(c.itemsize * len(c) for c in (t.time, t.codes, t.reason, t.count, t.head, t.kept))
        return rings + moves + 8 * len(t.message)

    def _grow(self, slots: int) -> None:
        self.minutes.grow(slots)
        self.quarters.grow(slots)
        self.transitions.grow(slots)
        self._free.extend(range(self._capacity + slots - 1, self._capacity - 1, -1))
        self._capacity += slots

    def _release(self, name: str) -> None:
        slot = self._slots.pop(name)
        self._kinds.pop(name, None)
        self.minutes.clear(slot)
        self.quarters.clear(slot)
        self.transitions.clear(slot)
        self._free.append(slot)

    def apply(self, targets: Iterable[Named]) -> None:
        """Follow a new target set: kept targets keep their history, a target whose kind changed starts
        afresh (as its status does), removed targets are forgotten and their slots reused."""
        wanted = {t.name: t.kind for t in targets}
        for name in [n for n in self._slots if wanted.get(n) != self._kinds.get(n)]:
            self._release(name)
        new = [name for name in wanted if name not in self._slots]
        if len(new) > len(self._free):
            self._grow(max(len(new) - len(self._free), self._capacity // 4))
        for name in new:
            self._slots[name] = self._free.pop()
            self._kinds[name] = wanted[name]

    def __contains__(self, name: str) -> bool:
        return name in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def record(self, name: str, result: Result, state: State, before: State, now: float | None = None) -> None:
        """One run: ``result`` as the probe returned it, ``state`` the debounced state after it, ``before``
        the one before it."""
        slot = self._slots.get(name)
        if slot is None:
            return
        now = time.time() if now is None else now
        judged = result.state is not State.UNKNOWN
        code = CODE[state] << 4 | CODE[result.state]
        for ring in (self.minutes, self.quarters):
            ring.add(slot, now, result.reached, judged, code, result.latency)
        if state is not before:
            reason = result.reason.value if result.reason is not None else None
            self.transitions.add(slot, now, before, state, reason, result.message)

    def uptime(self, name: str, window: str, now: float | None = None) -> float | None:
        """Share of the runs over ``1h`` or ``24h`` that reached the target; None without a judged run."""
        slot = self._slots.get(name)
        if slot is None:
            return None
        ring = self.minutes if window == "1h" else self.quarters
        up, down = ring.sums(slot, time.time() if now is None else now)
        return up / (up + down) if up + down else None

    def buckets(self, name: str, window: str, now: float | None = None) -> list[Bucket | None]:
        slot = self._slots.get(name)
        ring = self.minutes if window == "1h" else self.quarters
        if slot is None:
            return [None] * ring.length
        return ring.buckets(slot, time.time() if now is None else now)

    def letters(self, name: str, window: str = "1h", now: float | None = None) -> str:
        """The debounced state per bucket as letters (``-`` none, ``o`` ok, ``x`` unknown, ``d`` degraded,
        ``u`` unhealthy), oldest first."""
        slot = self._slots.get(name)
        ring = self.minutes if window == "1h" else self.quarters
        if slot is None:
            return "-" * ring.length
        return ring.letters(slot, time.time() if now is None else now)

    def means(self, name: str, window: str = "1h", now: float | None = None) -> list[float | None]:
        slot = self._slots.get(name)
        ring = self.minutes if window == "1h" else self.quarters
        if slot is None:
            return [None] * ring.length
        return ring.means(slot, time.time() if now is None else now)

    def changes(self, name: str, limit: int | None = None) -> list[Transition]:
        """The last transitions of the debounced state, newest first."""
        slot = self._slots.get(name)
        return [] if slot is None else self.transitions.read(slot, limit)
