"""``prober demo`` opens onto the status page: it prints the page's address, and the page there shows the
demo's targets, its two health groups and the components its health bodies report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request

from tests.helpers import ROOT, free_port


def test_demo_prints_the_page_and_the_page_shows_groups_and_components() -> None:
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "prober", "demo", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert demo.stdout is not None
        line = demo.stdout.readline()
        assert line.strip() == f"prober demo: open http://127.0.0.1:{port}/ in a browser"
        deadline = time.monotonic() + 20
        html = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    html = answer.read().decode()
                if 'data-state="unknown"' not in html:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        states = dict(re.findall(r'data-name="([a-z0-9_.-]+)" data-state="(\w+)"', html))
        assert states == {
            "app-live": "ok",
            "app-ready": "ok",
            "spring-health": "ok",
            "reports": "degraded",
            "site-cert": "degraded",
            "cache": "unhealthy",
        }
        assert 'data-group="live"' in html and 'data-group="ready"' in html
        assert '<span class="cname">database</span>' in html and "d left" in html
    finally:
        demo.terminate()
        demo.wait(10)
        if demo.stdout is not None:
            demo.stdout.close()
