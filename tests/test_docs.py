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


def test_the_readme_lists_every_metric() -> None:
    from prober.metrics import DAEMON_FAMILIES, TARGET_FAMILIES

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics") : readme.index("## Deploy as a sidecar")]
    names = [f.sample_name if f.type != "histogram" else f.name for f in TARGET_FAMILIES]
    names += [f"{f.name}_total" if f.type == "counter" else f.name for f in DAEMON_FAMILIES]
    missing = [name for name in names if f"`{name}" not in section]
    assert not missing, f"README's Metrics table does not name {missing}"
