"""What the page shows, built from the board and the history: one row per target, the overall and group
states, the order and the filters. Shared by the HTML (the first render) and the page's JSON (the updates
after it), so both always agree. Reads only; never triggers a probe."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prober.history import History
from prober.status import Board, State, TargetStatus

# unhealthy first, then degraded, unknown, ok
RANK = {State.UNHEALTHY: 0, State.DEGRADED: 1, State.UNKNOWN: 2, State.OK: 3}
ICONS = {State.OK: "✓", State.DEGRADED: "!", State.UNHEALTHY: "✕", State.UNKNOWN: "?"}
SORTS = ("state", "name", "kind", "latency", "uptime")
CERT_GAUGE = "tls_cert_not_after_timestamp_seconds"
MIN_POLL = 1.0  # seconds: the page never polls faster, whatever the shortest interval


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    state: State
    reported: str


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    kind: str
    critical: bool
    state: State
    reason: str | None
    message: str
    latency_ms: float | None
    last_success: float | None
    last_run: float | None
    uptime_1h: float | None
    uptime_24h: float | None
    cert_days: float | None
    groups: tuple[str, ...]
    components: tuple[Component, ...]
    timeline: str  # one letter per minute of the last hour (prober.history.LETTERS)

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "kind": self.kind,
            "critical": self.critical,
            "reason": self.reason,
            "message": self.message,
            "latency_ms": self.latency_ms,
            "last_success": self.last_success,
            "last_run": self.last_run,
            "uptime_1h": self.uptime_1h,
            "uptime_24h": self.uptime_24h,
            "cert_days": self.cert_days,
            "groups": list(self.groups),
            "components": [[c.name, c.state.value, c.reported] for c in self.components],
            "timeline": self.timeline,
        }


def memberships(board: Board) -> dict[str, tuple[str, ...]]:
    """Target name -> the health groups it belongs to."""
    found: dict[str, list[str]] = {}
    for group, names in board.groups.items():
        for name in names:
            found.setdefault(name, []).append(group)
    return {name: tuple(groups) for name, groups in found.items()}


def row(status: TargetStatus, history: History, groups: tuple[str, ...], now: float) -> Row:
    last = status.last
    not_after = last.gauges.get(CERT_GAUGE) if last is not None else None
    return Row(
        name=status.name,
        kind=status.kind,
        critical=status.critical,
        state=status.state,
        reason=last.reason.value if last is not None and last.reason is not None else None,
        message=last.message if last is not None else "no result yet",
        latency_ms=round(last.latency * 1000, 1) if last is not None and last.latency is not None else None,
        last_success=status.last_success,
        last_run=status.last_run,
        uptime_1h=history.uptime(status.name, "1h", now),
        uptime_24h=history.uptime(status.name, "24h", now),
        cert_days=round((not_after - now) / 86400, 1) if not_after is not None else None,
        groups=groups,
        components=tuple(
            Component(name, c.state, c.reported) for name, c in (last.components.items() if last is not None else ())
        ),
        timeline=history.letters(status.name, "1h", now),
    )


def rows(board: Board, history: History, now: float | None = None) -> list[Row]:
    now = time.time() if now is None else now
    groups = memberships(board)
    return [row(status, history, groups.get(name, ()), now) for name, status in board.targets.items()]


def sort_key(sort: str) -> Any:
    if sort == "name":
        return lambda r: r.name
    if sort == "kind":
        return lambda r: (r.kind, r.name)
    if sort == "latency":  # slowest first
        return lambda r: (-(r.latency_ms if r.latency_ms is not None else -1.0), r.name)
    if sort == "uptime":  # lowest first
        return lambda r: (r.uptime_24h if r.uptime_24h is not None else 2.0, r.name)
    return lambda r: (RANK[r.state], not r.critical, r.name)


@dataclass(frozen=True, slots=True)
class Filters:
    state: str = ""
    kind: str = ""
    group: str = ""
    sort: str = "state"

    @classmethod
    def parse(cls, query: Any) -> Filters:
        """From the query string; unknown values fall back to no filter (the form offers only known ones)."""
        state = query.get("state", "")
        sort = query.get("sort", "state")
        return cls(
            state if state in {s.value for s in State} else "",
            str(query.get("kind", ""))[:64],
            str(query.get("group", ""))[:64],
            sort if sort in SORTS else "state",
        )

    def keeps(self, r: Row) -> bool:
        return (
            (not self.state or r.state.value == self.state)
            and (not self.kind or r.kind == self.kind)
            and (not self.group or self.group in r.groups)
        )


def poll_seconds(board: Board) -> float:
    """The page updates itself at the shortest interval of the targets (at least ``MIN_POLL``)."""
    intervals = [t.interval for t in board.targets.values() if t.interval > 0]
    return max(MIN_POLL, min(intervals, default=15.0))


def page_json(board: Board, history: History, now: float | None = None) -> dict[str, Any]:
    """The page's JSON: everything its rows show, by target name."""
    now = time.time() if now is None else now
    return {
        "now": now,
        "poll_seconds": poll_seconds(board),
        "overall": board.overall().value,
        "groups": {name: board.group_state(name).value for name in board.groups},
        "rows": {r.name: r.as_json() for r in rows(board, history, now)},
    }


# --- words for people ----------------------------------------------------------------------------------


def ago(timestamp: float | None, now: float) -> str:
    """``12 s ago``, ``3 min ago``, ``2 h ago``, ``4 d ago``; ``never`` without a time."""
    if timestamp is None:
        return "never"
    seconds = max(0.0, now - timestamp)
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def percent(ratio: float | None) -> str:
    """Uptime as people read it: ``100 %``, ``99.95 %``, ``—`` without runs. Never rounds up to 100."""
    if ratio is None:
        return "—"
    if ratio >= 1:
        return "100 %"
    value = math.floor(ratio * 10000) / 100
    return f"{value:.2f} %"


def clock(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def latency(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def cert(days: float | None) -> str:
    if days is None:
        return "—"
    return f"expired {-days:.1f} d ago" if days < 0 else f"{days:.1f} d left"
