"""Keeping secrets out of logs, metrics, /status and error messages.

Two layers: every secret value the configuration holds is replaced wherever it appears, and the
password part of anything shaped like a URL with userinfo, and the value of every URL query parameter
whose name marks a credential (``api_key``, ``token``, ``X-Amz-Signature``, ...: ``CREDENTIAL_PARAMS``),
are masked, so that a driver's error message that echoes a connection string (with a secret the config
does not know, such as one from the environment) is still safe.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@")
_KEY_VALUE = re.compile(
    r"(?i)\b(?P<key>password|passwd|pwd|secret(?:_key)?|token|authorization)(?P<sep>\s*[=:]\s*)(?P<value>'[^']*'|\"[^\"]*\"|[^\s,;&)]+)"
)


_SCHEME_TOKEN = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# A URL query parameter (or a form field): ?name=value, &name=value, ;name=value.
_QUERY_PARAM = re.compile(r"(?P<pre>[?&;])(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&#\s\"'<>]*)")
# Query parameters whose names mark credentials, compared without case and without '-'/'_'
# (api_key, api-key, apiKey, X-Amz-Signature, x_amz_credential, ...).
CREDENTIAL_PARAMS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "accesstoken",
        "auth",
        "password",
        "secret",
        "signature",
        "sig",
        "xamzsignature",
        "xamzcredential",
    }
)


def _credential_param(name: str) -> bool:
    return name.replace("-", "").replace("_", "").lower() in CREDENTIAL_PARAMS


def credential_values(url: str) -> list[str]:
    """The values of a URL's credential query parameters (``?api_key=...``): secrets of the config."""
    if "=" not in url:
        return []
    return [m["value"] for m in _QUERY_PARAM.finditer(url) if m["value"] and _credential_param(m["name"])]


def _mask_query(match: re.Match[str]) -> str:
    if not match["value"] or not _credential_param(match["name"]):
        return match[0]
    return f"{match['pre']}{match['name']}={MASK}"


class Redactor:
    """Holds the current set of known secrets; thread-safe to update on reload.

    Results are remembered per text (probe messages repeat: "HTTP 200", "connected", the same refusal
    every run), so a run usually costs one dict lookup instead of three regular expressions. The
    memory belongs to one set of secrets: it is dropped whenever the secrets change."""

    MEMORY = 4096  # texts remembered; beyond that the memory starts afresh (log lines rarely repeat)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        # the secrets with the memory of results computed with them, read as one by __call__
        self._state: tuple[tuple[str, ...], dict[str, str]] = (self._secrets, {})

    def update(self, secrets: Iterable[str]) -> None:
        known = {s for s in secrets if s and len(s) >= 3}
        with self._lock:
            # longest first, so that a secret containing another is masked whole
            self._secrets = tuple(sorted(known | set(self._secrets), key=len, reverse=True))
            self._state = (self._secrets, {})

    def replace(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets = ()
        self.update(secrets)

    def __call__(self, text: str) -> str:
        secrets, memory = self._state
        done = memory.get(text)
        if done is None:
            done = self._redact(text, secrets)
            if len(memory) >= self.MEMORY:
                memory.clear()
            memory[text] = done
        return done

    @staticmethod
    def _redact(text: str, secrets: tuple[str, ...]) -> str:
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
        text = _SCHEME_TOKEN.sub(lambda m: f"{m['scheme']} {MASK}", text)
        if "=" in text:
            text = _QUERY_PARAM.sub(_mask_query, text)
        return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)

    def deep(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()} if value else value
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value


REDACTOR = Redactor()


def redact_url(url: str) -> str:
    """Mask the password of a URL with userinfo and the values of its credential query parameters (for
    logging a configured URL)."""
    url = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)
    return _QUERY_PARAM.sub(_mask_query, url) if "=" in url else url


class RedactingFilter(logging.Filter):
    """Applied to every handler: the formatted message and traceback never carry a secret."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            formatter = logging.Formatter()
            record.exc_text = self._redactor(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
