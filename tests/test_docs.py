"""The documents tell the truth about what the code does: each kind's page lists every name it observes."""

from __future__ import annotations

import pytest

from prober.probes import KINDS
from tests.helpers import ROOT


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_page_lists_its_observations(kind: str) -> None:
    page = ROOT / "docs" / "kinds" / f"{kind}.md"
    assert page.is_file(), f"docs/kinds/{kind}.md is missing"
    text = page.read_text()
    missing = [name for name in (*KINDS[kind].observes, "latency_ms") if f"| `{name}` |" not in text]
    assert not missing, (
        f"docs/kinds/{kind}.md does not list {missing} (scripts/observations.py {kind} prints the table)"
    )
