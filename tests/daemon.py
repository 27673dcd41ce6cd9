"""Running the real daemon as a subprocess for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import ROOT, free_port


class Daemon:
    def __init__(self, config: Path, *extra: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.config = config
        self.log_path = config.parent / f"prober-{self.port}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prober", "run", "-c", str(config), "--listen", f"127.0.0.1:{self.port}", *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd or ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
        self.wait_until(lambda: self.get("/healthz")[0] == 200, what="/healthz")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()
        except OSError:
            return 0, {}, b""

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        status, _, body = self.request(path, headers=headers)
        return status, body

    def status(self) -> tuple[int, dict[str, Any]]:
        code, body = self.get("/status")
        return code, json.loads(body) if body else {}

    def metrics(self) -> str:
        return self.get("/metrics")[1].decode()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def wait_until(self, condition: Any, timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.process.returncode}:\n{self.log()}")
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        return self.process.returncode
