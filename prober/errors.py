"""The probe exception tree.

Inside a probe the driver is allowed to raise. Each probe module maps its driver's exceptions to a
:class:`ProbeFailure` carrying one of the fixed reasons, in one place (a ``classify`` function used
with :func:`driver_errors`). The runner turns a ``ProbeFailure`` into an unhealthy result, and any
other exception into an ``unknown``/``internal`` result: nothing raises into the scheduler.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prober.redact import MASK, REDACTOR
from prober.status import Reason

MESSAGE_LIMIT = 300  # characters of a run's message (and of a driver's words inside it)
# the secrets of the target being run (longest first), set by the runner for the run: a driver's words are
# cut inside the kind, and must be masked before, even where the global redactor was not told of them
RUN_SECRETS: ContextVar[tuple[str, ...]] = ContextVar("prober_run_secrets", default=())


class ProberError(Exception):
    """Base of the prober's own exceptions."""


class ConfigError(ProberError):
    """A configuration that cannot be used; ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ProbeFailure(ProberError):
    """A run found the target failing, for one of the fixed reasons."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        details: dict[str, Any] | None = None,
        gauges: dict[str, float] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.gauges = gauges or {}


Classifier = Callable[[BaseException], ProbeFailure | None]


@dataclass(frozen=True, slots=True)
class Words:
    """Where a driver gives no exception type to tell two cases apart, only its message does: one row of
    a kind's ``WORDS`` table. ``sample`` is the text as the driver wrote it, ``seen_with`` the driver and
    version it was seen with (tests/probes/test_words.py checks every row against its sample)."""

    case: str
    pattern: re.Pattern[str]
    seen_with: str
    sample: str


def said(table: Sequence[Words], text: str, cases: Collection[str] | None = None) -> str | None:
    """The case of the first row (of the given ``cases``, or any) whose pattern is found in ``text``."""
    for row in table:
        if (cases is None or row.case in cases) and row.pattern.search(text):
            return row.case
    return None


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line of at most ``limit`` characters (a peer's words can be long, binary or multi-line).

    Secrets are masked *before* the cut: cut first, a secret at the edge would leave its beginning
    behind, where no later redaction could recognise it."""
    text = REDACTOR(text)
    for secret in RUN_SECRETS.get():
        if secret in text:
            text = text.replace(secret, MASK)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(exc: BaseException) -> str:
    """A short one-line description of a driver exception: its own words, else its type."""
    return shorten(str(exc)) or type(exc).__name__


def classify_os_error(exc: BaseException) -> ProbeFailure | None:
    """The mapping shared by every driver for plain socket and TLS errors."""
    if isinstance(exc, ProbeFailure):
        return exc
    if isinstance(exc, TimeoutError):
        return ProbeFailure(Reason.TIMEOUT, "timed out")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ProbeFailure(Reason.TLS, f"certificate verification failed: {exc.verify_message}")
    if isinstance(exc, ssl.SSLEOFError):  # the peer hung up mid-handshake, as OpenSSL reports it
        return ProbeFailure(Reason.PROTOCOL, "connection closed by peer (SSLEOFError)")
    if isinstance(exc, ssl.SSLError):
        return ProbeFailure(Reason.TLS, f"TLS error: {exc.reason or describe(exc)}")
    if isinstance(exc, ConnectionRefusedError):
        return ProbeFailure(Reason.REFUSED, "connection refused")
    if isinstance(exc, ConnectionResetError | BrokenPipeError | EOFError | ConnectionAbortedError) or (
        isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)
    ):
        return ProbeFailure(Reason.PROTOCOL, f"connection closed by peer ({type(exc).__name__})")
    if isinstance(exc, socket.gaierror):
        return ProbeFailure(Reason.DNS, f"name resolution failed: {exc.strerror or describe(exc)}")
    if isinstance(exc, OSError):
        return ProbeFailure(Reason.REFUSED, f"connection failed: {exc.strerror or describe(exc)}")
    return None


@contextmanager
def driver_errors(classify: Classifier) -> Iterator[None]:
    """Translate whatever the driver raises while talking to the peer into a ProbeFailure.

    ``classify`` maps the driver's own exceptions; socket and TLS errors fall back to
    :func:`classify_os_error`, and anything else the driver raises on a peer's answer is a
    ``protocol`` failure (a hostile or broken peer must not look like a bug of ours).
    """
    try:
        yield
    except ProbeFailure:
        raise
    except Exception as exc:
        failure = classify(exc) or classify_os_error(exc)
        if failure is None:
            failure = ProbeFailure(Reason.PROTOCOL, f"unexpected answer: {type(exc).__name__}: {describe(exc)}")
        raise failure from exc
