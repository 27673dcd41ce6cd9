"""Secrets are masked in text, URLs and log records."""

from __future__ import annotations

import logging

import pytest

from prober.redact import MASK, RedactingFilter, Redactor, redact_url


def test_known_secrets_are_masked() -> None:
    redactor = Redactor()
    redactor.replace(["hunter2-secret", "abc"])
    assert redactor("login with hunter2-secret failed") == f"login with {MASK} failed"
    assert redactor("abc is short") == f"{MASK} is short"


def test_url_userinfo_is_masked_even_when_unknown() -> None:
    redactor = Redactor()
    text = "could not connect to postgresql://app:Pa55word@db:5432/app: refused"
    assert redactor(text) == f"could not connect to postgresql://app:{MASK}@db:5432/app: refused"
    assert redact_url("redis://:pw@cache:6379/0") == f"redis://:{MASK}@cache:6379/0"


def test_key_value_secrets_are_masked() -> None:
    redactor = Redactor()
    assert redactor("dsn: host=db password=topsecret user=app") == f"dsn: host=db password={MASK} user=app"
    assert "xyz" not in redactor("Authorization: Bearer xyz")
    assert "eyJhbGci.payload.sig" not in redactor("sent bearer eyJhbGci.payload.sig")


def test_log_records_and_tracebacks_are_redacted() -> None:
    redactor = Redactor()
    redactor.replace(["canary-7f3a9"])
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed with %s", ("canary-7f3a9",), None)
    try:
        raise ValueError("boom canary-7f3a9")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter(redactor).filter(record)
    assert "canary-7f3a9" not in record.getMessage()
    assert record.exc_text is not None and "canary-7f3a9" not in record.exc_text and "boom" in record.exc_text


def test_remembered_results_follow_the_secrets() -> None:
    redactor = Redactor()
    text = "login with canary-5e1d failed"
    assert redactor(text) == text  # not a known secret yet, and the result is remembered
    redactor.update(["canary-5e1d"])
    assert redactor(text) == f"login with {MASK} failed"
    for index in range(Redactor.MEMORY + 1):  # the memory is bounded and starts afresh when full
        redactor(f"message {index}")
    assert redactor(text) == f"login with {MASK} failed"
    redactor.replace([])
    assert redactor(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("GET https://api.example.org/3/configuration?api_key=k3y&language=en", "?api_key=***&language=en"),
        ("https://s3/b/o?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F2024&X-Amz-Date=1", "X-Amz-Date=1"),
        ("/cb?access-token=t0k&apiKey=a&Api-Key=b&sig=s&auth=x&secret=y&password=z&token=w", "?access-token=***"),
        ("?monkey=2&keys=3&keyboard=4&key=5", "?monkey=2&keys=3&keyboard=4&key=***"),  # only the names listed
    ],
)
def test_credential_query_parameters_are_masked(text: str, masked: str) -> None:
    redactor = Redactor()
    assert masked in redactor(text) and masked in redact_url(text)
    for secret in ("k3y", "abc", "AKIA%2F2024", "t0k", "=a&", "=b&", "=s&", "=x&", "=y&", "=z&", "=w"):
        assert f"={secret.strip('=&')}" not in redactor(text).replace("=***", "")
