"""Building blocks of the configuration models: durations, addresses, secrets and the fields every
target shares. Each probe module defines its own target model on top of :class:`TargetBase`."""

from __future__ import annotations

import functools
import re
from abc import abstractmethod
from collections.abc import Collection
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PositiveInt,
    SecretStr,
    StringConstraints,
    model_validator,
)

from prober.conditions import Conditions, Projection, projection
from prober.redact import credential_values

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """``500ms``, ``15s``, ``2m``, ``1h`` or a sum such as ``1m30s`` -> seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration such as 500ms, 15s, 2m or 1h, got {value!r}")
    text = value.strip()
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"expected a duration such as 500ms, 15s, 2m or 1h, got {value!r}")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"a duration must be longer than zero, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


def parse_period(value: Any) -> float:
    """A duration that may be zero (``0s``): a period that can be switched off."""
    if isinstance(value, str) and value.strip() in ("0s", "0ms", "0m", "0h"):
        return 0.0
    return parse_duration(value)


Period = Annotated[float, BeforeValidator(parse_period), PlainSerializer(format_duration, return_type=str)]

# The default upper bounds (seconds) of every target's run latency histogram: ``metrics.duration_buckets``.
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^\s:/\[\]]+)):(?P<port>\d{1,5})$")


@functools.lru_cache(maxsize=16384)  # a target's address is split on every run
def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    match = _HOST_PORT.match(address)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"expected host:port (or [ipv6]:port), got {address!r}")
    return match["v6"] or match["host"], int(match["port"])


def _check_readable_file(value: Any) -> Any:
    if isinstance(value, str):
        try:
            with open(value, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read {value!r}: {exc.strerror or exc}") from None
    return value


ReadableFile = Annotated[str, BeforeValidator(_check_readable_file)]


def _check_address(value: Any) -> Any:
    if isinstance(value, str):
        split_address(value)
    return value


Address = Annotated[str, BeforeValidator(_check_address)]
TargetName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.-]+$", min_length=1, max_length=128)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timing(Strict):
    """The timing fields: every target has them, and ``defaults:`` may set them for all targets."""

    interval: Duration = 15.0
    timeout: Duration = 5.0
    failure_threshold: PositiveInt = 1
    success_threshold: PositiveInt = 1
    degraded_latency: Duration | None = None
    # Docker's HEALTHCHECK --start-period: from when the target is first scheduled until its first success
    # or the end of the period, failed runs leave it unknown and do not count towards failure_threshold.
    start_period: Period = 0.0


TIMING_FIELDS: tuple[str, ...] = tuple(Timing.model_fields)


class Defaults(Timing):
    """``defaults:``: timing fields applied to every target that does not set them."""


class TargetBase(Timing):
    """Fields every target has. Subclasses add ``kind: Literal[...]`` and their own fields.

    ``SECRET_FIELDS`` names the fields that hold secrets: each of them also accepts a ``<field>_file``
    twin (read when the config is loaded, and again on reload) and its value is redacted everywhere.
    """

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()

    name: TargetName
    kind: str
    critical: bool = True
    unhealthy_if: Conditions = Field(default_factory=list)
    degraded_if: Conditions = Field(default_factory=list)

    # Worked out once per target, on first use, and kept in the instance's __dict__ (a target never changes;
    # a reload makes new ones). Not pydantic private attributes: reading one goes through BaseModel.__getattr__,
    # 1.4 us a time, which a run paid several times (bench/PROFILE.md, section 12).
    @functools.cached_property
    def condition_reach(self) -> Projection:
        """What of each observation the conditions can reach (see :func:`prober.conditions.projection`)."""
        return projection((*self.unhealthy_if, *self.degraded_if))

    @functools.cached_property
    def condition_names(self) -> Collection[str]:
        """The observations the target's conditions read (a kind reads a body only when asked)."""
        return self.condition_reach.keys()

    @functools.cached_property
    def redacted(self) -> tuple[str, ...]:
        """The secrets a run masks in what it reports: three characters or more, longest first."""
        return tuple(sorted((s for s in self.secrets() if len(s) >= 3), key=len, reverse=True))

    def secrets(self) -> list[str]:
        """Every secret value this target holds (secret fields, URL passwords and the values of URL query
        parameters whose names mark credentials), for redaction."""
        found: list[str] = []
        for value in self.__dict__.values():
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, dict):
                found.extend(v.get_secret_value() for v in value.values() if isinstance(v, SecretStr))
            elif isinstance(value, str) and "://" in value:
                found.extend(url_passwords(value))
                found.extend(credential_values(value))
        return [s for s in found if s]

    @abstractmethod
    def where(self) -> str:
        """What the target points at (a URL, an address, a path), for the start-up log and
        ``check-config``; the caller masks credentials."""


def url_passwords(url: str) -> list[str]:
    """The password of a URL with userinfo, both percent-decoded and as written."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    if not password:
        return []
    raw = parts.netloc.rpartition("@")[0].partition(":")[2]
    return list({password, raw})


class ServerConfig(Strict):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("bearer_token",)

    listen: Address = "0.0.0.0:9478"
    bearer_token: SecretStr | None = None
    enable_reload_endpoint: bool = False
    # the daemon's own HTTP surface, bounded (README "HTTP endpoints"): connections open at once (the
    # oldest idle one is closed for a newcomer; with none idle the newcomer gets a 503), how long a
    # connection may stay idle or take to send a request head, how long a response may take to be read
    max_connections: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 256
    idle_timeout: Duration = 30.0
    write_timeout: Duration = 10.0
    # /metrics and /status bodies: rendered at most this many at once, shared by concurrent requests and
    # reused for render_reuse; a request that waited render_timeout for a body gets a 503
    max_renders: Annotated[int, Field(ge=1, le=64, strict=True)] = 2
    render_reuse: Duration = 1.0
    render_timeout: Duration = 10.0
    # the status page, its JSON and the badges: public, token (the default with a bearer token) or off
    ui: Literal["public", "token", "off"] | None = None

    @model_validator(mode="after")
    def _ui_token_needs_a_token(self) -> ServerConfig:
        if self.ui == "token" and self.bearer_token is None:
            raise ValueError("ui: token needs server.bearer_token_file (the token people enter to see the page)")
        return self


def _check_bucket_list(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of seconds such as [0.01, 0.1, 1] (or [] for none), got {value!r}")
    return value


def _check_increasing(bounds: tuple[float, ...]) -> tuple[float, ...]:
    for before, after in zip(bounds, bounds[1:], strict=False):
        if after <= before:
            raise ValueError(f"bucket bounds must be strictly increasing, got {after!r} after {before!r}")
    return bounds


Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
Buckets = Annotated[tuple[Seconds, ...], BeforeValidator(_check_bucket_list), AfterValidator(_check_increasing)]


class MetricsConfig(Strict):
    """``metrics:``: the shape of the exported series.

    ``duration_buckets`` are the upper bounds, in seconds, of the ``prober_probe_duration_seconds``
    buckets of every target (+Inf, _sum and _count are always there). With many targets the histogram
    is most of /metrics (14 of about 30 samples per target with the default); fewer buckets, or ``[]``,
    make every scrape smaller and faster."""

    duration_buckets: Buckets = DEFAULT_DURATION_BUCKETS
