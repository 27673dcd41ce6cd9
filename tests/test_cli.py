"""`prober once` (Nagios exit codes, table and JSON) and the zero-config default, as real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.peers.web import Peers


def config(tmp_path: Path, *targets: str) -> str:
    path = tmp_path / "prober.yaml"
    path.write_text("defaults: {timeout: 2s}\ntargets:\n" + "".join(f"  - {t}\n" for t in targets))
    return str(path)


@pytest.mark.parametrize(
    ("paths", "code", "overall"),
    [
        (["/nest/ok"], 0, "ok"),
        (["/nest/ok", "/nest/degraded"], 1, "degraded"),
        (["/nest/ok", "/nest/unhealthy"], 2, "unhealthy"),
    ],
)
def test_once_exit_codes(peers: Peers, tmp_path: Path, paths: list[str], code: int, overall: str) -> None:
    targets = [
        f"{{name: t{i}, kind: http, url: '{peers.url(path)}', body_status_field: status}}"
        for i, path in enumerate(paths)
    ]
    done = run_cli("once", "-c", config(tmp_path, *targets))
    assert done.returncode == code, done.stdout + done.stderr
    assert f"overall: {overall}" in done.stdout
    assert done.stdout.splitlines()[0].split() == [
        "TARGET",
        "KIND",
        "CRITICAL",
        "STATUS",
        "LATENCY",
        "REASON",
        "MESSAGE",
    ]


def test_optional_target_down_is_degraded(peers: Peers, tmp_path: Path) -> None:
    done = run_cli(
        "once",
        "-c",
        config(
            tmp_path,
            f"{{name: api, kind: http, url: '{peers.url('/plain')}'}}",
            f"{{name: cache, kind: tcp, critical: false, address: '{peers.address('closed')}'}}",
        ),
    )
    assert done.returncode == 1, done.stdout


def test_once_json(peers: Peers, tmp_path: Path) -> None:
    done = run_cli(
        "once",
        "-c",
        config(
            tmp_path,
            f"{{name: cert, kind: tls, address: '{peers.address('tls-expired')}', server_name: localhost}}",
        ),
        "--json",
    )
    assert done.returncode == 2
    body = json.loads(done.stdout)
    check = body["checks"]["cert"]
    assert body["status"] == "unhealthy"
    assert (check["status"], check["reason"], check["kind"]) == ("unhealthy", "tls", "tls")
    assert check["details"]["days_left"] < 0  # the expiry of a certificate that failed verification


def test_once_config_error_is_unknown(tmp_path: Path) -> None:
    done = run_cli("once", "-c", config(tmp_path, "{name: x, kind: tcp}"))
    assert done.returncode == 3
    assert "address: required field is missing" in done.stderr
    assert "Traceback" not in done.stderr


def test_zero_config_from_application_variables(peers: Peers) -> None:
    done = run_cli(
        "once",
        "--json",
        env={
            "PROBER_CONFIG": "",
            "APP_LIVENESS_URL": peers.url("/plain"),
            "APP_READINESS_URL": peers.url("/nest/ok"),
        },
    )
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["checks"]) == {"app-live", "app-ready"}


def test_zero_config_start_up_log_redacts_credentials(peers: Peers, tmp_path: Path) -> None:
    done = run_cli(
        "check-config",
        env={"PROBER_CONFIG": "", "APP_READINESS_URL": f"http://probe:Sup3rSecret@{peers.address('http')}/nest/ok"},
    )
    assert done.returncode == 0, done.stderr
    assert "Sup3rSecret" not in done.stdout + done.stderr
    assert "probe:***@" in done.stdout


@pytest.mark.parametrize(("command", "code"), [("check-config", 2), ("run", 2), ("once", 3)])
def test_no_targets_is_an_error_naming_where_the_prober_looked(command: str, code: int) -> None:
    from prober.zeroconfig import variables_looked_for

    done = run_cli(command, env={"PROBER_CONFIG": "", **{v: "" for v in variables_looked_for()}})
    assert done.returncode == code, done.stderr
    assert "OK, 0 targets" not in done.stdout + done.stderr
    tried = "(tried: -c FILE, $PROBER_CONFIG, /etc/prober/prober.yaml)"
    assert f"no targets to probe: no config file {tried}" in done.stderr
    assert f"(looked for: {', '.join(variables_looked_for())})" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("command", "code"), [("check-config", 2), ("run", 2), ("once", 3)])
def test_a_config_file_without_targets_is_an_error(tmp_path: Path, command: str, code: int) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text("# every target was commented out\n")
    done = run_cli(command, "-c", str(path))
    assert done.returncode == code, done.stderr
    assert f"{path}: no targets to probe: the config file names none" in done.stderr
