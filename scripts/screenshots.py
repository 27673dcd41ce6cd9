"""Regenerate the status page's screenshots in docs/ (shown in README) from `prober demo`, in Debian's
Chromium (headless, as the browser tests drive it):

    .venv/bin/python scripts/screenshots.py [--wait SECONDS]

docs/page-desktop.png (1280x800), docs/page-phone.png (390x844, a phone) and docs/page-detail.png (a
target's detail view, 1280x800)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import free_port  # noqa: E402
from tests.page.browser import chromium  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=12.0, help="seconds of runs before the shots (default 12)")
    args = parser.parse_args()
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "prober", "demo", "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or demo.poll() is not None:
                raise SystemExit("prober demo did not become ready")
            time.sleep(0.2)
        time.sleep(args.wait)
        shots = (("page-desktop.png", "/", 1280, 800), ("page-phone.png", "/", 390, 844))
        for name, path, width, height in (*shots, ("page-detail.png", "/target/app-ready", 1280, 800)):
            with chromium(width, height) as driver:
                metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500}
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the viewport, exactly
                driver.get(url + path)
                time.sleep(0.5)
                driver.save_screenshot(str(ROOT / "docs" / name))
                print(f"docs/{name}: {width}x{height} of {path}")
    finally:
        demo.terminate()
        demo.wait(10)


if __name__ == "__main__":
    main()
