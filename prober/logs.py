"""Logging set-up: text or JSON lines on stderr, every record passed through the redactor."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

from prober.redact import RedactingFilter


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def setup(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # APScheduler logs every job run at INFO; aiohttp logs every request: keep them for warnings.
    for noisy in ("apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # skipped runs are counted and logged by the prober itself (prober_skipped_runs_total)
    logging.getLogger("apscheduler.scheduler").setLevel(max(logging.ERROR, root.level))


class Throttled:
    """At most one log line per ``every`` seconds for one kind of event, saying how many there were.

    For events an outsider can cause at will (malformed requests, connections refused, accept errors
    when descriptors run out): the first is logged at once, the rest are counted and summed up in one
    line when the next one comes after ``every`` seconds."""

    def __init__(self, logger: logging.Logger, level: int, every: float = 10.0) -> None:
        self._logger, self._level, self._every = logger, level, every
        self._last = float("-inf")
        self.count = 0  # every event, logged or not
        self._unlogged = 0

    def __call__(self, text: str, *args: object, exc_info: BaseException | None = None) -> bool:
        """Count an event; log it (with the number held back since the last line) if it is time.
        Returns whether a line was written."""
        self.count += 1
        now = time.monotonic()
        if now - self._last < self._every:
            self._unlogged += 1
            return False
        if self._unlogged:
            text += f" (and {self._unlogged} more like it in the last {now - self._last:.0f}s)"
        self._last, self._unlogged = now, 0
        self._logger.log(self._level, text, *args, exc_info=exc_info)
        return True
