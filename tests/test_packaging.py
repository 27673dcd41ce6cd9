"""The runtime dependencies: each library the code reaches into is bounded to the versions tested, and
requirements.lock (what the image installs, by hash) pins versions inside those bounds."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers import ROOT

REACHED_INTO = {"aiohttp", "asyncpg", "clickhouse-connect", "minio", "prometheus-client", "pymongo", "redis"}


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(line).name.lower(): Requirement(line) for line in project["dependencies"]}


def pins() -> dict[str, Version]:
    found = re.findall(r"^([a-z0-9_.-]+)==(\S+) \\", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    return {name.lower(): Version(version) for name, version in found}


def test_every_library_reached_into_has_an_upper_bound() -> None:
    for name, requirement in requirements().items():
        bounds = {spec.operator for spec in requirement.specifier}
        assert "<" in bounds, f"{name} has no upper bound"
    assert REACHED_INTO <= set(requirements())


def test_the_lock_pins_every_dependency_within_its_bounds() -> None:
    locked = pins()
    for name, requirement in requirements().items():
        assert name in locked, f"{name} is not in requirements.lock (run scripts/lock.sh)"
        assert requirement.specifier.contains(locked[name]), f"{name}=={locked[name]} is outside {requirement}"
    assert "trustme" not in locked  # a test tool, not a runtime dependency
    assert all("--hash=sha256:" in block for block in (ROOT / "requirements.lock").read_text().split("==")[1:])
