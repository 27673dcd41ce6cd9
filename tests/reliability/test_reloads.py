"""A hundred reloads while probing, by SIGHUP and POST /-/reload, mixing valid and invalid configs."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.daemon import Daemon
from tests.peers.web import Peers
from tests.test_daemon import samples, value

RELOADS = 100


def config(peers: Peers, names: list[str]) -> str:
    lines = [f"  - {{name: {name}, kind: tcp, address: '{peers.address('http')}'}}" for name in names]
    return (
        "server: {enable_reload_endpoint: true}\ndefaults: {interval: 300ms, timeout: 200ms}\ntargets:\n"
        + "\n".join(lines)
        + "\n"
    )


def probed(text: str) -> set[str]:
    return {dict(labels)["target"] for name, labels in samples(text) if name == "prober_probes_total"}


def test_hundred_reloads(peers: Peers, tmp_path: Path) -> None:
    path = tmp_path / "prober.yaml"
    a, b = ["keep", "alpha", "beta"], ["keep", "alpha", "gamma"]
    path.write_text(config(peers, a))
    daemon = Daemon(path)
    try:
        daemon.wait_until(lambda: (value(daemon.metrics(), "prober_probes_total", target="keep", kind="tcp") or 0) >= 1)
        current, last_count = a, 0.0
        for index in range(RELOADS):
            valid = index % 2 == 0
            wanted = (b if current == a else a) if valid else current
            path.write_text(config(peers, wanted) if valid else "targets: [{name: broken, kind: tcp}]\n")
            if index % 4 < 2:
                daemon.signal(signal.SIGHUP)
            else:
                code = daemon.request("/-/reload", method="POST")[0]
                assert code == (200 if valid else 400)

            def reloaded(valid: bool = valid, wanted: list[str] = wanted) -> bool:
                text = daemon.metrics()
                flag = value(text, "prober_config_last_reload_successful")
                return flag == (1 if valid else 0) and probed(text) == set(wanted)

            daemon.wait_until(reloaded, what=f"reload {index}")
            text = daemon.metrics()
            assert value(text, "prober_scheduler_jobs") == value(text, "prober_targets") == len(wanted)
            count = value(text, "prober_probes_total", target="keep", kind="tcp") or 0
            assert count >= last_count  # unchanged targets keep their counters
            last_count = count
            current = wanted
        assert set(daemon.status()[1]["checks"]) == set(current)
        assert daemon.log().count("reload rejected") == RELOADS // 2
    finally:
        assert daemon.stop() == 0
