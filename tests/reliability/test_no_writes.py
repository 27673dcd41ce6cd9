"""The daemon writes nothing to disk: no file appears in its working, temporary or home directories,
and it holds no regular file open for writing, while it probes and reloads."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.daemon import Daemon
from tests.peers.web import Peers


def written_files(pid: int) -> list[str]:
    """Regular files the process holds open with write access (from /proc/PID/fd and fdinfo)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
            flags = int(
                next(
                    line
                    for line in (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text().splitlines()
                    if line.startswith("flags:")
                ).split()[1],
                8,
            )
        except (OSError, StopIteration):
            continue
        if target.startswith("/") and os.path.isfile(target) and flags & (os.O_WRONLY | os.O_RDWR):
            found.append(target)
    return found


def test_daemon_writes_nothing(peers: Peers, tmp_path: Path) -> None:
    config_dir, work, temp, home = (tmp_path / name for name in ("config", "work", "tmp", "home"))
    for directory in (config_dir, work, temp, home):
        directory.mkdir()
    config = config_dir / "prober.yaml"
    config.write_text(
        "defaults: {interval: 500ms, timeout: 400ms}\ntargets:\n"
        f"  - {{name: web, kind: http, url: '{peers.url('/nest/ok')}', body_status_field: status}}\n"
        f"  - {{name: cert, kind: tls, address: '{peers.address('tls-valid')}', server_name: localhost, "
        f"ca_file: '{peers.certs.ca_file}'}}\n"
        f"  - {{name: down, kind: tcp, critical: false, address: '{peers.address('closed')}'}}\n"
    )
    before = sorted(p.name for p in config_dir.iterdir())
    env = {"TMPDIR": str(temp), "HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    daemon = Daemon(config, env=env, cwd=work)
    try:
        daemon.wait_until(lambda: daemon.get("/readyz")[0] == 200, what="first results")
        daemon.signal(signal.SIGHUP)
        daemon.get("/metrics")
        daemon.get("/status")
        for page in ("/", "/target/web", "/api/page?spark=1", "/api/history/web", "/badge/web.svg"):
            assert daemon.get(page)[0] == 200, page  # the status page renders from memory and the package
        # the daemon's only open file for writing would be its log, which the test gave it as stdout
        assert [f for f in written_files(daemon.process.pid) if f != str(daemon.log_path)] == []
    finally:
        assert daemon.stop() == 0
    assert [p for d in (work, temp, home) for p in d.rglob("*")] == []
    # the test harness keeps the daemon's stderr in a file beside the config; nothing else appeared
    assert sorted(p.name for p in config_dir.iterdir() if p != daemon.log_path) == before
