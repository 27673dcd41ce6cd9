"""deploy/systemd/prober.service: checked by systemd's own ``systemd-analyze verify`` (which exits 0 even on
unknown keys, so its output is what is asserted), sandboxed as the README says, and starting the prober with
arguments its command line takes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prober.cli import _parser
from tests.helpers import ROOT

UNIT = ROOT / "deploy" / "systemd" / "prober.service"
EXEC = "/usr/local/bin/prober"


def verify(unit_text: str, tmp_path: Path) -> str:
    """``systemd-analyze verify`` of a unit (its prober binary pointed at this checkout's): what it printed."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is required (scripts/test.sh installs the systemd package)")
    binary = str(Path(sys.executable).parent / "prober")
    path = tmp_path / "prober.service"
    path.write_text(unit_text.replace(EXEC, binary))
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return (done.stdout + done.stderr).replace(str(tmp_path), "<dir>")


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    said = verify(UNIT.read_text(), tmp_path)
    assert said.strip() == "", said


def test_the_check_sees_a_bad_key(tmp_path: Path) -> None:
    said = verify(UNIT.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"), tmp_path)
    assert "Unknown key 'NoNewPrivilege'" in said, said


def _service() -> dict[str, list[str]]:
    """The [Service] keys and their values (a key may repeat, as systemd allows)."""
    seen: dict[str, list[str]] = {}
    for line in UNIT.read_text().split("[Service]", 1)[1].split("[Install]", 1)[0].splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            seen.setdefault(key, []).append(value)
    return seen


def test_the_sandbox_and_the_lifecycle() -> None:
    service = _service()
    expected = {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "LoadCredential": "app.env:/srv/app/.env",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], (key, service.get(key))


def test_exec_start_is_a_command_line_the_prober_takes() -> None:
    (exec_start,) = _service()["ExecStart"]
    binary, *args = exec_start.split()
    assert binary == EXEC
    parsed = _parser().parse_args(args)
    assert (parsed.command, parsed.env_file) == ("run", "${CREDENTIALS_DIRECTORY}/app.env")
