"""The short soak CI runs: scripts/soak.py for one minute; the long one's result is soak/RESULTS.md."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT, require


def test_short_soak() -> None:
    require("pg_ctl")
    require("redis-server")
    done = subprocess.run(
        [sys.executable, "scripts/soak.py", "--minutes", "1", "--targets", "200", "--sample", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "NOT MET" not in done.stdout
    assert done.stdout.count("met    ") == 5
