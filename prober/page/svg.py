"""The shapes of the page's inline SVG: a state timeline (one rectangle per run of equal states, so an
hour of minutes is usually one or two rectangles, not sixty) and a latency sparkline. page.js draws the
same shapes from the page's JSON when it updates a row."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape

from prober.history import LETTERS

WORD = {chr(LETTERS[code]): word for code, word in enumerate(("none", "ok", "unknown", "degraded", "unhealthy"))}
SPARK_HEIGHT = 20.0


@dataclass(frozen=True, slots=True)
class Span:
    x: int
    width: int
    state: str  # none, ok, unknown, degraded, unhealthy


def spans(letters: str) -> list[Span]:
    """Runs of equal letters as (x, width, state word); ``-`` (no data) is a span too."""
    out: list[Span] = []
    start = 0
    for i in range(1, len(letters) + 1):
        if i == len(letters) or letters[i] != letters[start]:
            out.append(Span(start, i - start, WORD.get(letters[start], "none")))
            start = i
    return out


def points(values: list[float | None], height: float = SPARK_HEIGHT) -> str:
    """A polyline's points for the values (None skipped), x = index, scaled so the highest touches the top."""
    top = max((v for v in values if v is not None), default=0.0)
    if top <= 0:
        top = 1.0
    scale = (height - 2) / top
    return " ".join(f"{i},{height - 1 - v * scale:.0f}" for i, v in enumerate(values) if v is not None)


def summary(letters: str, step: str, found: list[Span] | None = None) -> str:
    """Words for a timeline (its accessible name): ``ok for 52 min, then unhealthy for 8 min``."""
    parts = [
        f"{s.state} for {s.width} {step}" for s in (spans(letters) if found is None else found) if s.state != "none"
    ]
    return ", then ".join(parts) if parts else "no runs yet"


def timeline_svg(letters: str, step: str, label: str) -> Markup:
    """The timeline as inline SVG (what templates/macros.html used to spell out, in one string join)."""
    found = spans(letters)
    rects = "".join(f'<rect class="t-{s.state}" x="{s.x}" width="{s.width}" height="10"></rect>' for s in found)
    return Markup(
        f'<svg class="timeline" viewBox="0 0 {len(letters)} 10" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}: {escape(summary(letters, step, found))}" '
        f'data-step="{escape(step)}">{rects}</svg>'
    )


def spark_svg(values: list[float | None], label: str) -> Markup:
    """A latency sparkline; with no values, an empty one for page.js to draw (the rows of ``/`` leave theirs
    to the page's first update: it halves the page's rendering and a sixth of its bytes)."""
    return Markup(
        f'<svg class="spark" viewBox="0 0 {max(1, len(values) - 1)} 20" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}"><polyline points="{points(values)}"></polyline></svg>'
    )
