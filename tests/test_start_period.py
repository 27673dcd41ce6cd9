"""``start_period``: Docker's HEALTHCHECK --start-period. From when a target is first scheduled (start, or a
reload adding it) until its first success or the end of the period, failed runs leave it unknown (their
reason and message shown) and do not count towards failure_threshold; afterwards the ordinary rules apply.
The state machine on its own, the config, and the daemon with a real PostgreSQL started after the prober."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from prober import config
from prober.errors import ConfigError
from prober.probes.tcp import TcpTarget
from prober.status import Board, Reason, Result, State, TargetStatus, unhealthy
from tests.daemon import Daemon
from tests.helpers import free_port
from tests.peers.postgres import APP_USER, make_primary
from tests.peers.web import Peers

OK = Result(State.OK, latency=0.01)
DOWN = unhealthy(Reason.REFUSED, "connection refused")


def state(status: TargetStatus) -> State:
    """The debounced state (a call, so that mypy does not narrow it across record())."""
    return status.state


def tcp(name: str, start_period: str = "0s") -> TcpTarget:
    return TcpTarget.model_validate({"name": name, "kind": "tcp", "address": "h:1", "start_period": start_period})


def test_failures_in_the_start_period_leave_the_target_unknown() -> None:
    board = Board()
    board.apply([tcp("db", "60s")], now=1000.0, start_periods=True)
    status = board.targets["db"]
    for at in (1001.0, 1002.0, 1030.0):
        status.record(DOWN, failure_threshold=1, success_threshold=1, now=at)
        assert state(status) is State.UNKNOWN and status.starting(at)
        assert status.last is DOWN  # its reason and message are shown
    assert status.consecutive_failures == 0 and status.failures_total[Reason.REFUSED] == 3
    assert board.overall() is State.UNKNOWN  # unknown targets do not count


def test_the_first_success_ends_the_period() -> None:
    board = Board()
    board.apply([tcp("db", "60s")], now=1000.0, start_periods=True)
    status = board.targets["db"]
    status.record(DOWN, 1, 1, now=1001.0)
    status.record(OK, 1, 1, now=1002.0)
    assert state(status) is State.OK and not status.starting(1003.0)
    status.record(DOWN, 1, 1, now=1004.0)  # within the 60 s, but the period is over: ordinary rules
    assert state(status) is State.UNHEALTHY


def test_after_the_period_the_ordinary_rules_apply() -> None:
    board = Board()
    board.apply([tcp("db", "10s")], now=1000.0, start_periods=True)
    status = board.targets["db"]
    status.record(DOWN, 3, 1, now=1005.0)
    assert state(status) is State.UNKNOWN
    assert not status.starting(1010.0)
    status.record(DOWN, 3, 1, now=1011.0)  # the first result after the period is taken as it is
    assert state(status) is State.UNHEALTHY


def test_failures_in_the_period_do_not_count_towards_the_threshold() -> None:
    board = Board()
    board.apply([tcp("db", "10s")], now=1000.0, start_periods=True)
    status = board.targets["db"]
    for at in (1001.0, 1002.0):
        status.record(DOWN, 2, 1, now=at)
    status.record(OK, 2, 1, now=1003.0)
    status.record(DOWN, 2, 1, now=1004.0)
    assert state(status) is State.OK  # one failure of two
    status.record(DOWN, 2, 1, now=1005.0)
    assert state(status) is State.UNHEALTHY


def test_a_reload_that_adds_a_target_starts_its_period_and_keeps_the_others() -> None:
    board = Board()
    board.apply([tcp("a", "10s")], now=1000.0, start_periods=True)
    board.apply([tcp("a", "10s"), tcp("b", "10s")], now=1050.0, start_periods=True)
    assert not board.targets["a"].starting(1051.0) and board.targets["b"].starting(1051.0)
    assert not board.targets["b"].starting(1060.0)


def test_without_a_start_period_nothing_changes() -> None:
    board = Board()
    board.apply([tcp("db")], now=1000.0, start_periods=True)
    board.targets["db"].record(DOWN, 3, 1, now=1000.5)
    assert board.targets["db"].state is State.UNHEALTHY and not board.targets["db"].starting(1000.5)


def test_config_default_and_inheritance(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "defaults: {start_period: 1m30s}\n"
        "targets:\n"
        "  - {name: a, kind: tcp, address: 'h:1'}\n"
        "  - {name: b, kind: tcp, address: 'h:1', start_period: 0s}\n"
    )
    a, b = config.load_file(str(path), environ={}).targets
    assert (a.start_period, b.start_period) == (90.0, 0.0)
    assert tcp("c").start_period == 0.0


@pytest.mark.parametrize("value", ["60", "-5s", "soon"])
def test_bad_start_periods_are_config_errors(tmp_path: Path, value: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"targets:\n  - name: a\n    kind: tcp\n    address: 'h:1'\n    start_period: {value}\n")
    with pytest.raises(ConfigError) as caught:
        config.load_file(str(path), environ={})
    assert caught.value.problems[0].startswith(f"{path}:5: targets[0] 'a' (tcp): start_period: expected a duration")


def _check(daemon: Daemon, name: str) -> dict[str, object]:
    checks: dict[str, dict[str, object]] = daemon.status()[1].get("checks", {})
    return checks.get(name, {})


def test_real_postgres_started_after_the_prober(peers: Peers, tmp_path: Path) -> None:
    server = make_primary()  # made (initdb, roles), then stopped: it starts after the prober
    try:
        server.stop()
        path = tmp_path / "prober.yaml"
        dsn = server.dsn(APP_USER, schema="public", connection_limit="10")
        path.write_text(
            "defaults: {interval: 500ms, timeout: 400ms}\n"
            "targets:\n"
            f"  - {{name: db, kind: postgres, dsn: '{dsn}', start_period: 60s}}\n"
            f"  - {{name: app, kind: http, url: '{peers.url('/nest/ok')}'}}\n"
        )
        daemon = Daemon(path)
        try:
            daemon.wait_until(lambda: _check(daemon, "db").get("reason") == "refused", what="a refused run")
            time.sleep(1.2)  # several failed runs: still unknown, and the whole is not unhealthy
            code, body = daemon.status()
            db = body["checks"]["db"]
            assert (db["status"], db["starting"], db["reason"]) == ("unknown", True, "refused"), db
            assert db["message"] and (code, body["status"]) == (200, "ok")
            assert 'prober_target_starting{kind="postgres",target="db"} 1.0' in daemon.metrics()
            assert "unhealthy" not in daemon.log()

            server.start()
            daemon.wait_until(lambda: _check(daemon, "db").get("status") == "ok", what="ok once PostgreSQL is up")
            assert 'prober_target_starting{kind="postgres",target="db"} 0.0' in daemon.metrics()
            assert _check(daemon, "db")["starting"] is False

            server.stop()  # the period is over: the ordinary rules apply at once
            daemon.wait_until(lambda: _check(daemon, "db").get("status") == "unhealthy", what="unhealthy")
            assert daemon.status()[0] == 503
        finally:
            daemon.stop()
    finally:
        server.destroy()


def test_a_period_that_ends_without_a_success(tmp_path: Path) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text(
        "defaults: {interval: 300ms, timeout: 200ms}\n"
        f"targets:\n  - {{name: db, kind: tcp, address: '127.0.0.1:{free_port()}', start_period: 1500ms}}\n"
    )
    daemon = Daemon(path)
    try:
        daemon.wait_until(lambda: _check(daemon, "db").get("reason") == "refused", what="a refused run")
        assert _check(daemon, "db")["status"] == "unknown"
        daemon.wait_until(lambda: _check(daemon, "db").get("status") == "unhealthy", what="unhealthy after 1.5s")
        assert _check(daemon, "db")["starting"] is False
    finally:
        daemon.stop()
