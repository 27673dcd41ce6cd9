"""The per-dependency statuses a health body reports, in the three conventions applications use.

* @nestjs/terminus: ``{"status": "ok|error|shutting_down", "info": {...}, "error": {...}, "details":
  {"database": {"status": "up"}, "redis": {"status": "down", "message": "..."}}}`` (``details`` holds all).
* Spring Boot Actuator: ``{"status": "UP", "components": {"db": {"status": "UP", "components": {...}}}}``,
  nested; a nested component is named with dots (``db.primary``).
* The IETF health+json draft: ``{"status": "pass", "checks": {"postgres:responseTime": [{"status": "warn"}]}}``,
  arrays of observations per check (their worst status counts). A plain map of ``{"status": ...}`` objects
  under ``checks`` (as many NestJS applications write it without terminus) is read the same way.

``auto`` tells them apart by shape. Names are sanitised for metric labels and at most ``LIMIT`` are kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from prober.status import Component, State, worst

Style = Literal["auto", "terminus", "spring", "ietf", "none"]
LIMIT = 50  # components per target: the rest are counted, not exported
_WORDS = {
    State.OK: frozenset({"up", "ok", "pass", "passing", "healthy"}),
    State.DEGRADED: frozenset({"warn", "warning", "degraded"}),
    State.UNHEALTHY: frozenset(
        {"down", "error", "fail", "failed", "failing", "unhealthy", "out_of_service", "critical"}
    ),
}
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def state_of(word: Any) -> State:
    """An application's word for a component's health -> a state (``unknown`` for words it has no meaning for)."""
    if isinstance(word, bool):
        return State.OK if word else State.UNHEALTHY
    said = str(word).strip().lower()
    return next((state for state, words in _WORDS.items() if said in words), State.UNKNOWN)


def _name(raw: str) -> str:
    return _UNSAFE.sub("_", raw)[:64] or "_"


def _terminus(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    sections = [body.get("details")] if isinstance(body.get("details"), dict) else [body.get("info"), body.get("error")]
    for section in sections:
        if isinstance(section, dict):
            for name, value in section.items():
                if isinstance(value, dict):
                    yield name, value.get("status")


def _spring(body: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    children = body.get("components")
    if not isinstance(children, dict):
        return
    for name, value in children.items():
        if not isinstance(value, dict):
            continue
        if isinstance(value.get("components"), dict) and value["components"]:
            yield from _spring(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value.get("status")


def _ietf(body: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    checks = body.get("checks")
    if not isinstance(checks, dict):
        return
    for name, value in checks.items():
        if isinstance(value, list):
            states = [state_of(item.get("status")) for item in value if isinstance(item, dict)]
            known = [s for s in states if s is not State.UNKNOWN]
            word = worst(*known).value if known else "unknown"
            yield name, word
        elif isinstance(value, dict):
            yield name, value.get("status")


def detect(body: dict[str, Any]) -> Style:
    """The convention a body follows, by its shape; ``none`` when it follows none of them."""
    if isinstance(body.get("components"), dict):
        return "spring"
    if (
        isinstance(body.get("details"), dict)
        or isinstance(body.get("info"), dict)
        or isinstance(body.get("error"), dict)
    ):
        return "terminus"
    if isinstance(body.get("checks"), dict):
        return "ietf"
    return "none"


READERS = {"terminus": _terminus, "spring": _spring, "ietf": _ietf}


def components(body: Any, style: Style) -> tuple[dict[str, Component], int]:
    """The components of a JSON body (at most ``LIMIT``), and how many more there were."""
    if not isinstance(body, dict) or style == "none":
        return {}, 0
    chosen = detect(body) if style == "auto" else style
    if chosen == "none":
        return {}, 0
    found: dict[str, Component] = {}
    omitted = 0
    for raw, word in READERS[chosen](body):
        name = _name(str(raw))
        if name in found:
            continue
        if len(found) >= LIMIT:
            omitted += 1
            continue
        reported = str(word)[:40] if word is not None else "missing"
        found[name] = Component(state_of(word), reported)
    return found, omitted
