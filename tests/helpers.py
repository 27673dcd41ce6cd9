"""Small helpers shared by the tests: free ports, waiting for a port, running the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m prober ARGS`` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "prober", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
        check=False,
    )


def require(binary: str) -> str:
    """The path of a server binary a test needs. Missing: a failure in CI (``CI`` set), a skip elsewhere."""
    import shutil

    import pytest

    for candidate in (binary, *(str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{binary}"))):
        found = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail(f"{binary} is required in CI (scripts/test.sh installs it)")
    pytest.skip(f"{binary} is not installed (scripts/test.sh installs it)")


def client_sockets(port: int) -> int:
    """Open client connections to a loopback port (ESTABLISHED or SYN_SENT), from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] in ("01", "02"):
                    count += 1
    return count
