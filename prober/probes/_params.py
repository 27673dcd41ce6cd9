"""Connection-string parameters, as the applications' own clients write them.

Each kind that takes a URL or DSN keeps one table of the parameters its clients know, saying for each
one what the probe does with it:

* ``honoured``: the probe does what the parameter asks (TLS, database, user, a schema it checks, ...);
* ``ignored``: accepted and ignored, because it tunes a client-side pool, retry or timeout that means
  nothing to a probe that opens one connection per run under its own timeout;
* ``rejected``: a config error, with the reason (the probe cannot do what it asks, and doing something
  else would make a verdict the application's own client would not reach).

A parameter in no table is a config error naming the nearest known one (``difflib``), so a typo is found
by ``check-config`` and never at run time. ``docs/kinds/<kind>.md`` lists every table; a test checks that
the documentation names every parameter.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Treatment = Literal["honoured", "ignored", "rejected"]


@dataclass(frozen=True, slots=True)
class Param:
    """What the probe does with one parameter, and why (the reason is the error message when rejected)."""

    treatment: Treatment
    why: str = ""


def honoured(why: str = "") -> Param:
    return Param("honoured", why)


def ignored(why: str = "") -> Param:
    return Param("ignored", why)


def rejected(why: str) -> Param:
    return Param("rejected", why)


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (case-insensitively), if any is close."""
    by_lower = {k.lower(): k for k in known}
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def check_names(
    names: Iterable[str],
    table: Mapping[str, Param],
    *,
    what: str = "parameter",
    elsewhere: Mapping[str, str] | None = None,
    case_insensitive: bool = False,
) -> None:
    """Raise ValueError for the first parameter that is rejected or unknown. Messages name the parameter,
    never its value (a value may be a password). ``elsewhere``: names known to another form of the string
    (``schema`` is Prisma's, not libpq's), with what to say about them. ``case_insensitive``: names are
    matched whatever their case (MongoDB's connection-string options)."""
    folded = {k.lower(): v for k, v in table.items()} if case_insensitive else table
    for name in names:
        param = folded.get(name.lower() if case_insensitive else name)
        if param is None:
            if elsewhere and name in elsewhere:
                raise ValueError(f"{what} {name!r}: {elsewhere[name]}")
            close = nearest(name, [*table, *(elsewhere or {})])
            hint = f" (did you mean {close!r}?)" if close else ""
            raise ValueError(f"unknown {what} {name!r}{hint}")
        if param.treatment == "rejected":
            raise ValueError(f"{what} {name!r} is not supported: {param.why}")


def names_by_treatment(table: Mapping[str, Param]) -> dict[Treatment, list[str]]:
    """The table's names grouped by what the probe does with them (for docs and tests)."""
    grouped: dict[Treatment, list[str]] = {"honoured": [], "ignored": [], "rejected": []}
    for name, param in table.items():
        grouped[param.treatment].append(name)
    return grouped


def truthy(value: str) -> bool | None:
    """``true``/``1``/``yes``/``on`` -> True, ``false``/``0``/``no``/``off`` -> False, else None."""
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    return None
