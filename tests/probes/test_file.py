"""The ``file`` kind against real files whose modification times the tests set, real directories it cannot
read (as a user that is not root, and for every user), and a FIFO that would hang a reader of contents."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from prober.errors import ProbeFailure
from prober.probes import ProbeContext
from prober.probes import file as file_probe
from prober.probes.file import FileTarget
from prober.runner import run_probe
from prober.status import Reason, Result, State
from tests.helpers import run_cli

HOUR = 3600.0


def target(path: Path | str, **fields: Any) -> FileTarget:
    return FileTarget.model_validate({"name": "backups", "kind": "file", "path": str(path), "timeout": "2s", **fields})


async def probe(ctx: ProbeContext, path: Path | str, **fields: Any) -> Result:
    return await run_probe(target(path, **fields), ctx)


def backup(path: Path, size: int, age: float) -> Path:
    """A file of ``size`` bytes last modified ``age`` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"d" * size)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


async def test_the_newest_match_by_modification_time(ctx: ProbeContext, tmp_path: Path) -> None:
    backup(tmp_path / "db-2026-01-03.dump", 9000, age=30 * HOUR)
    newest = backup(tmp_path / "db-2026-01-01.dump", 5000, age=2 * HOUR)  # older by name, newer by time
    backup(tmp_path / "notes.txt", 10, age=0)  # does not match
    result = await probe(ctx, tmp_path / "db-*.dump")
    assert result.state is State.OK, result.message
    seen = result.details["newest_file"]
    assert (seen["path"], seen["size"]) == (str(newest), 5000)
    assert abs(seen["age_seconds"] - 2 * HOUR) < 5
    assert result.details["files"] == 2 and result.details["listing_truncated"] is False
    assert result.gauges["newest_object_size_bytes"] == 5000.0
    assert abs(result.gauges["newest_object_timestamp_seconds"] - newest.stat().st_mtime) < 0.001
    assert result.message == f"newest of 2 files: {newest}, 2h old, 4.9 KiB"
    assert set(result.phases) == {"list"}


async def test_stale_is_degraded_then_unhealthy(ctx: ProbeContext, tmp_path: Path) -> None:
    path = backup(tmp_path / "nightly.tar.gz", 4096, age=30 * HOUR)
    stale = await probe(ctx, path, max_age="26h", unhealthy_age="72h")
    assert stale.state is State.DEGRADED, stale.message
    assert stale.message == f"the newest file matching {path} is 1d6h old (> max_age 26h): {path}"
    backup(path, 4096, age=80 * HOUR)
    dead = await probe(ctx, path, max_age="26h", unhealthy_age="72h")
    assert (dead.state, dead.reason) == (State.UNHEALTHY, Reason.ASSERTION), dead.message
    assert dead.message == f"the newest file matching {path} is 3d8h old (> unhealthy_age 72h): {path}"


async def test_too_small_and_empty(ctx: ProbeContext, tmp_path: Path) -> None:
    backup(tmp_path / "a.dump", 0, age=60)
    empty = await probe(ctx, tmp_path / "*.dump")
    assert empty.state is State.DEGRADED, empty.message
    assert "is 0 B (< min_size 1 B)" in empty.message
    backup(tmp_path / "b.dump", 2000, age=10)
    small = await probe(ctx, tmp_path / "*.dump", min_size="1MiB")
    assert small.state is State.DEGRADED, small.message
    assert "is 2.0 KiB (< min_size 1.0 MiB)" in small.message


async def test_no_match_is_unhealthy(ctx: ProbeContext, tmp_path: Path) -> None:
    backup(tmp_path / "db.sql", 100, age=10)
    result = await probe(ctx, tmp_path / "*.dump")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == f"no file matching {tmp_path}/*.dump"
    assert result.details == {"files": 0, "listing_truncated": False, "entries_read": 1}


async def test_a_missing_directory_is_unhealthy_with_the_reason(ctx: ProbeContext, tmp_path: Path) -> None:
    result = await probe(ctx, tmp_path / "not-mounted" / "*.dump")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == f"cannot read {tmp_path}/not-mounted: No such file or directory"


async def test_a_directory_no_user_can_read_is_unhealthy(ctx: ProbeContext, tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # readable by nobody, root included
    result = await probe(ctx, tmp_path / "*" / "*.dump")
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == f"cannot read {tmp_path}/loop: Too many levels of symbolic links"
    assert result.error is None


def test_a_directory_this_user_may_not_read_is_unhealthy(tmp_path: Path) -> None:
    """The walk, as a user that is not root (the tests run as root, who may read anything): a forked child
    drops to nobody and reports what the kind's own code says."""
    locked = tmp_path / "locked"
    backup(locked / "db.dump", 100, age=10)
    locked.chmod(0o700)
    tmp_path.chmod(0o755)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        said = "no failure"
        try:
            os.setgid(65534)
            os.setuid(65534)
            file_probe._find(str(locked / "*.dump"), 100, time.monotonic() + 5)
        except OSError as exc:
            failure = file_probe.classify(exc)
            said = json.dumps([failure.reason, failure.message] if failure else ["none", str(exc)])
        finally:
            os.write(write, said.encode())
            os._exit(0)
    os.close(write)
    answer = os.read(read, 4096).decode()
    os.close(read)
    os.waitpid(child, 0)
    assert json.loads(answer) == [Reason.AUTH, f"cannot read {locked}: permission denied"]


async def test_only_metadata_is_read(ctx: ProbeContext, tmp_path: Path) -> None:
    """A FIFO matching the glob would block whoever opened it: it is not a regular file, not counted, and the
    run ends at once."""
    os.mkfifo(tmp_path / "pipe.dump")
    backup(tmp_path / "real.dump", 100, age=10)
    (tmp_path / "dir.dump").mkdir()
    started = time.monotonic()
    result = await probe(ctx, tmp_path / "*.dump")
    assert time.monotonic() - started < 1
    assert result.state is State.OK, result.message
    assert result.details["files"] == 1
    assert result.details["newest_file"]["path"] == str(tmp_path / "real.dump")


async def test_recursive_and_hidden(ctx: ProbeContext, tmp_path: Path) -> None:
    backup(tmp_path / "2026" / "01" / "a.dump", 100, age=3 * HOUR)
    deepest = backup(tmp_path / "2026" / "02" / "b.dump", 100, age=1 * HOUR)
    backup(tmp_path / "2026" / ".partial" / "c.dump", 100, age=0)  # a hidden directory: skipped, as glob does
    backup(tmp_path / "2026" / "02" / ".d.dump", 100, age=0)  # a hidden file: skipped
    result = await probe(ctx, tmp_path / "**" / "*.dump")
    assert result.details["newest_file"]["path"] == str(deepest)
    assert result.details["files"] == 2
    trailing = await probe(ctx, tmp_path / "2026" / "**")
    assert trailing.details["newest_file"]["path"] == str(deepest)
    named = await probe(ctx, tmp_path / "2026" / "*" / "b.dump")
    assert named.details["files"] == 1


async def test_a_listing_past_max_files_is_degraded_never_unhealthy(ctx: ProbeContext, tmp_path: Path) -> None:
    for index in range(30):
        backup(tmp_path / f"{index:02d}.dump", 100, age=100 * HOUR)
    result = await probe(ctx, tmp_path / "*.dump", max_files=10, unhealthy_age="72h")
    assert result.state is State.DEGRADED, result.message
    assert result.details["entries_read"] == 10 and result.details["listing_truncated"] is True
    assert "; listing stopped at max_files (10 directory entries) matching" in result.message
    whole = await probe(ctx, tmp_path / "*.dump", max_files=30, unhealthy_age="72h")
    assert whole.state is State.UNHEALTHY, whole.message


async def test_a_walk_stops_at_the_deadline(tmp_path: Path) -> None:
    for index in range(50):
        (tmp_path / f"{index}.dump").write_bytes(b"x")
    with pytest.raises(TimeoutError):
        file_probe._find(str(tmp_path / "*.dump"), 1000, time.monotonic() - 1)  # the deadline has passed


async def test_failure_classification_is_by_type() -> None:
    assert file_probe.classify(ValueError("x")) is None
    failure = file_probe.classify(TimeoutError(110, "Connection timed out", "/mnt/nfs"))
    assert isinstance(failure, ProbeFailure) and failure.reason is Reason.TIMEOUT


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"path": "backups/*.dump"}, "expected an absolute path"),
        ({"max_age": "2h", "unhealthy_age": "2h"}, "must be longer than max_age"),
        ({"min_size": "-1"}, "expected a size"),
        ({"max_files": 0}, "greater than or equal to 1"),
        ({"prefix": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_refused(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        target(fields.pop("path", "/var/backups/*.dump"), **fields)


def test_prober_once(tmp_path: Path) -> None:
    backup(tmp_path / "db.dump", 2048, age=30 * HOUR)
    config = tmp_path / "prober.yaml"
    entry = {"name": "pg-backup", "kind": "file", "path": str(tmp_path / "*.dump"), "critical": False}
    config.write_text(yaml.safe_dump({"targets": [entry]}))
    done = run_cli("once", "-c", str(config), "--json")
    assert done.returncode == 1, done.stderr  # degraded: older than the default max_age (26h)
    check = json.loads(done.stdout)["checks"]["pg-backup"]
    assert (check["status"], check["kind"]) == ("degraded", "file")
    assert check["details"]["newest_file"]["size"] == 2048
