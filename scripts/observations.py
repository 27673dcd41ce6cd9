"""Print the observations table of a kind (or every kind) as docs/kinds/<kind>.md shows it, or write it there:

    .venv/bin/python scripts/observations.py postgres
    .venv/bin/python scripts/observations.py --write          # every kind's page, section "## Observations"

The table is written from the kind's OBSERVES, the one place its names and types are declared;
tests/test_docs.py checks that each kind's page lists every name."""

from __future__ import annotations

import sys
from pathlib import Path

from prober.probes import KINDS


def table(kind: str) -> str:
    rows = ["| name | type | what it holds |", "|---|---|---|"]
    for name, observable in KINDS[kind].observes.items():
        shown = "" if observable.shown else " (not shown in `details`)"
        rows.append(f"| `{name}` | {observable.type} | {observable.doc}{shown} |")
    rows.append("| `latency_ms` | double | the run's latency, in milliseconds (every kind) |")
    return "\n".join(rows)


def write(kind: str) -> None:
    """Replace the table of the page's "## Observations" section (the prose around it stays)."""
    page = Path(__file__).resolve().parent.parent / "docs" / "kinds" / f"{kind}.md"
    text = page.read_text()
    start = text.index("## Observations")
    end = text.find("\n## ", start + 1)
    end = len(text) if end < 0 else end
    lines = text[start:end].split("\n")
    rows = [i for i, line in enumerate(lines) if line.startswith("|")]
    lines[rows[0] : rows[-1] + 1] = table(kind).split("\n")
    page.write_text(text[:start] + "\n".join(lines) + text[end:])


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--write"]
    for kind in arguments or list(KINDS):
        if "--write" in sys.argv:
            write(kind)
        else:
            print(f"{kind}:\n{table(kind)}\n")
