"""Print the observations table of a kind (or every kind) as docs/kinds/<kind>.md shows it:

    .venv/bin/python scripts/observations.py postgres

The table is written from the kind's OBSERVES, the one place its names and types are declared;
tests/test_docs.py checks that each kind's page lists every name."""

from __future__ import annotations

import sys

from prober.probes import KINDS


def table(kind: str) -> str:
    rows = ["| name | type | what it holds |", "|---|---|---|"]
    for name, observable in KINDS[kind].observes.items():
        shown = "" if observable.shown else " (not shown in `details`)"
        rows.append(f"| `{name}` | {observable.type} | {observable.doc}{shown} |")
    rows.append("| `latency_ms` | double | the run's latency, in milliseconds (every kind) |")
    return "\n".join(rows)


if __name__ == "__main__":
    for kind in sys.argv[1:] or list(KINDS):
        print(f"{kind}:\n{table(kind)}\n")
