"""``file``: backups written on this host (PM2 or systemd deployments): the newest file matching a glob is
recent and large enough.

Only metadata is read (directory entries and ``stat``), never a file's content. The glob is matched one
directory level at a time with ``os.scandir`` and :func:`fnmatch.fnmatchcase` (``*``, ``?``, ``[...]`` within a
name, ``**`` for any depth; hidden names only where the pattern's part starts with a dot, as :mod:`glob`
does). :mod:`glob` itself is not used because it skips a directory it cannot read without a word: here a
directory the pattern needs and cannot read makes the run unhealthy, naming it and the reason.

A listing reads at most ``max_files`` directory entries per run (``listing_truncated`` says when it
stopped). The walk runs in the context's worker pool (a hung network filesystem blocks a thread, not the
event loop) and stops at the run's deadline.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

from prober.errors import ProbeFailure, Words
from prober.judge import Observable, Observation, Rule
from prober.models import TargetBase
from prober.probes import _freshness
from prober.probes._context import ProbeContext
from prober.probes._kit import human_duration
from prober.status import Reason

MAGIC = frozenset("*?[")


def _has_magic(part: str) -> bool:
    return any(char in MAGIC for char in part)


def _check_path(path: str) -> str:
    if not os.path.isabs(path):
        raise ValueError(f"expected an absolute path or glob (/var/backups/db-*.dump), got {path!r}")
    if "\x00" in path:
        raise ValueError("the path holds a NUL character")
    return path


class FileTarget(TargetBase, _freshness.Limits):
    kind: Literal["file"]
    path: Annotated[str, AfterValidator(_check_path)]
    max_files: _freshness.Bound = 10_000  # directory entries read per run, at most

    def where(self) -> str:
        return self.path


MODEL = FileTarget
# bytes one run may receive (_budget.py): nothing: the kind reads file metadata on the host, no peer sends anything
BYTE_BUDGET = 64 * 2**10

WORDS: tuple[Words, ...] = ()


def classify(exc: BaseException) -> ProbeFailure | None:
    """An ``OSError`` from reading a directory or a file's metadata -> the fixed reasons."""
    if isinstance(exc, PermissionError):
        return ProbeFailure(Reason.AUTH, f"cannot read {exc.filename}: permission denied")
    if isinstance(exc, OSError) and exc.filename is not None:
        said = os.strerror(exc.errno) if exc.errno else str(exc)
        reason = Reason.TIMEOUT if exc.errno == errno.ETIMEDOUT else Reason.ASSERTION
        return ProbeFailure(reason, f"cannot read {exc.filename}: {said}")
    return None


# --- matching --------------------------------------------------------------------------------------


class _Stop(Exception):
    """The listing reached its bound, or the run its deadline."""


@dataclass(slots=True)
class _Walk:
    limit: int
    deadline: float  # time.monotonic()
    read: int = 0
    truncated: bool = False

    def entries(self, directory: str) -> Iterator[os.DirEntry[str]]:
        """A directory's entries, counted against the bound; errors are raised (naming the directory)."""
        with os.scandir(directory) as found:
            for entry in found:
                if self.read >= self.limit:
                    self.truncated = True
                    raise _Stop
                if time.monotonic() > self.deadline:
                    raise _Stop
                self.read += 1
                yield entry


def _visible(name: str, part: str) -> bool:
    return not name.startswith(".") or part.startswith(".")


def _walk(walk: _Walk, directory: str, parts: tuple[str, ...]) -> Iterator[os.DirEntry[str] | str]:
    """Files under ``directory`` matching ``parts`` (DirEntry where the walk listed them, a path where a
    part without magic named them)."""
    part, rest = parts[0], parts[1:]
    if part == "**" and not rest:
        parts, rest = ("**", "*"), ("*",)  # a trailing ** matches every file below
    if part == "**":
        if rest:
            yield from _walk(walk, directory, rest)
        for entry in walk.entries(directory):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                yield from _walk(walk, entry.path, parts)
        return
    if not _has_magic(part):
        path = os.path.join(directory, part)
        if not rest:
            yield path
        elif os.path.isdir(path):
            yield from _walk(walk, path, rest)
        return
    for entry in walk.entries(directory):
        if not fnmatch.fnmatchcase(entry.name, part) or not _visible(entry.name, part):
            continue
        if not rest:
            yield entry
        elif entry.is_dir():
            yield from _walk(walk, entry.path, rest)


def _split(pattern: str) -> tuple[str, tuple[str, ...]]:
    """The pattern's directory without magic (which must be readable), and the parts after it."""
    parts = [p for p in pattern.split(os.sep) if p]
    fixed = 0
    while fixed < len(parts) - 1 and not _has_magic(parts[fixed]):
        fixed += 1
    return os.sep + os.sep.join(parts[:fixed]), tuple(parts[fixed:])


@dataclass(frozen=True, slots=True)
class _Found:
    newest: _freshness.Newest | None
    files: int
    truncated: bool
    read: int


def _find(pattern: str, limit: int, deadline: float) -> _Found:
    """The blocking part (in a worker thread): the newest regular file matching the pattern."""
    base, parts = _split(pattern)
    if not os.path.isdir(base):
        os.stat(base)  # raises: the pattern's directory is missing or unreachable
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), base)
    walk = _Walk(limit, deadline)
    newest: _freshness.Newest | None = None
    files = 0
    try:
        for found in _walk(walk, base, parts):
            try:
                info = found.stat() if isinstance(found, os.DirEntry) else os.stat(found)
            except FileNotFoundError:
                continue  # removed meanwhile, or named by a part without magic and absent
            if not stat.S_ISREG(info.st_mode):
                continue
            files += 1
            path = found.path if isinstance(found, os.DirEntry) else found
            if newest is None or info.st_mtime > newest.modified:
                newest = _freshness.Newest(path, info.st_mtime, info.st_size)
    except _Stop:
        if not walk.truncated:
            raise TimeoutError("the listing did not finish in time") from None
    return _Found(newest, files, walk.truncated, walk.read)


# --- the verdict ------------------------------------------------------------------------------------

NEWEST = _freshness.Watch(
    name="newest_file",
    label="path",
    counted="files",
    thing="file",
    limits=lambda target: target,
    where=lambda target: f"matching {target.path}",
    bound=lambda target: f"max_files ({target.max_files} directory entries)",
)

RULES: tuple[Rule, ...] = _freshness.rules(NEWEST)

OBSERVES: dict[str, Observable] = {
    "newest_file": Observable("map", "the newest matching file: path, age_seconds, size (bytes), modified"),
    "files": Observable("int", "regular files matching the path"),
    "listing_truncated": Observable("bool", "the walk stopped at max_files directory entries"),
    "entries_read": Observable("int", "directory entries read by this run"),
}


async def probe(target: FileTarget, ctx: ProbeContext) -> Observation:
    run = ctx.begin(target)
    deadline = time.monotonic() + run.left()
    async with run.bounded(f"listing {target.path} did not finish in time"):
        with run.phase("list"):
            try:
                found: _Found = await ctx.run_blocking(_find, target.path, target.max_files, deadline)
            except TimeoutError:
                raise ProbeFailure(Reason.TIMEOUT, f"listing {target.path} did not finish in time") from None
            except OSError as exc:
                raise classify(exc) or ProbeFailure(Reason.ASSERTION, f"cannot read {target.path}: {exc}") from exc
    values, gauges = _freshness.observe(NEWEST, found.newest, found.files, found.truncated)
    values["entries_read"] = found.read
    newest: dict[str, Any] | None = values.get("newest_file")
    summary = (
        f"newest of {found.files} files: {newest['path']}, {human_duration(newest['age_seconds'])} old, "
        f"{_freshness.format_size(newest['size'])}"
        if newest is not None
        else "no matching file"
    )
    return Observation(values, summary, phases=run.phases, gauges=gauges, latency=run.elapsed())
