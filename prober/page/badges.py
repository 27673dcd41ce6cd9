"""Badges in the look of shields.io's flat style: a grey label and a coloured value, for READMEs and wikis.

Text widths come from DejaVu Sans at 11 px (the font shields.io badges fall back to where Verdana is
missing; ``scripts/badge_widths.py`` prints the table), and every text carries ``textLength``, so the
badge looks the same whatever font the viewer has."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from prober.status import State

# fmt: off
WIDTHS = dict.fromkeys("0123456789", 7.0) | {
    "a": 6.74, "b": 6.98, "c": 6.05, "d": 6.98, "e": 6.77, "f": 3.87, "g": 6.98, "h": 6.97, "i": 3.06,
    "j": 3.06, "k": 6.37, "l": 3.06, "m": 10.72, "n": 6.97, "o": 6.73, "p": 6.98, "q": 6.98, "r": 4.52,
    "s": 5.73, "t": 4.31, "u": 6.97, "v": 6.51, "w": 9.0, "x": 6.51, "y": 6.51, "z": 5.77,
    " ": 3.5, ".": 3.5, "-": 3.97, "_": 5.5, "%": 10.45, ":": 3.71, "/": 3.71, "(": 4.29, ")": 4.29,
}
# fmt: on
WIDE = 10.72  # any other character is measured as the widest lower-case letter
COLOURS = {State.OK: "#4c1", State.DEGRADED: "#dfb317", State.UNHEALTHY: "#e05d44", State.UNKNOWN: "#9f9f9f"}
METRICS = ("status", "uptime_1h", "uptime_24h")


def text_width(text: str) -> float:
    return sum(WIDTHS.get(ch, WIDE) for ch in text)


def uptime_colour(ratio: float | None) -> str:
    if ratio is None:
        return COLOURS[State.UNKNOWN]
    if ratio >= 0.999:
        return "#4c1"  # brightgreen
    if ratio >= 0.99:
        return "#97ca00"  # green
    if ratio >= 0.95:
        return "#dfb317"  # yellow
    return "#e05d44"  # red


@dataclass(frozen=True, slots=True)
class Badge:
    label: str
    value: str
    colour: str

    @property
    def label_width(self) -> int:
        return round(text_width(self.label)) + 10

    @property
    def value_width(self) -> int:
        return round(text_width(self.value)) + 10

    def fields(self) -> dict[str, object]:
        lw, vw = self.label_width, self.value_width
        return {
            "label": self.label,
            "value": self.value,
            "colour": self.colour,
            "width": lw + vw,
            "label_width": lw,
            "value_width": vw,
            "label_x": lw * 5,  # centres, in the tenth-scale coordinates of the text
            "value_x": lw * 10 + vw * 5,
            "label_length": (lw - 10) * 10,
            "value_length": (vw - 10) * 10,
        }


def etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
