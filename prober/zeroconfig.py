"""Zero-config: the targets of the application next to the sidecar, derived from the variables it already
has (``DATABASE_URL``, ``PGHOST``, ``REDIS_HOST``, ``MONGODB_URI``, ``MINIO_ENDPOINT``, ...) and, with
``--env-file``, from its dotenv file. One table lists every variable read (:data:`ZERO_CONFIG_VARIABLES`,
README "Zero-config"); when several name one dependency, the first set wins and the others are noted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from prober.errors import ConfigError

SECRET_VARIABLE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PWD|CREDENTIAL|AUTH", re.IGNORECASE)
_NOT_SECRET_VALUE = re.compile(r"(?i)^(?:\d+|true|false|yes|no|on|off)$")  # masking these would garble messages


def is_secret_variable(name: str, value: str) -> bool:
    """Whether a variable's value is to be treated as a secret (plain numbers and booleans never are)."""
    return bool(SECRET_VARIABLE.search(name)) and not _NOT_SECRET_VALUE.match(value.strip())


@dataclass(frozen=True, slots=True)
class EnvVariable:
    """One variable zero-config reads: the target it feeds, and what it gives."""

    name: str
    target: str  # the target's name (and, for several sources of one dependency, their precedence)
    gives: str


# Every variable zero-config reads, in precedence order within each target: when several name the same
# dependency, the first set wins and the others are reported as ignored. (README, "Zero-config".)
ZERO_CONFIG_VARIABLES: tuple[EnvVariable, ...] = (
    EnvVariable("DATABASE_URL", "postgres", "a postgres:// or postgresql:// URL (libpq, Prisma or node-postgres form)"),
    EnvVariable("POSTGRES_URL", "postgres", "the same, if DATABASE_URL is not set"),
    EnvVariable("POSTGRESQL_URL", "postgres", "the same, if neither is set"),
    EnvVariable("PGHOST", "postgres", "libpq's variables, if no URL is set: the host"),
    EnvVariable("PGPORT", "postgres", "with PGHOST: the port"),
    EnvVariable("PGUSER", "postgres", "with PGHOST: the user"),
    EnvVariable("PGPASSWORD", "postgres", "with PGHOST: the password"),
    EnvVariable("PGDATABASE", "postgres", "with PGHOST: the database"),
    EnvVariable("PGSSLMODE", "postgres", "with PGHOST: sslmode"),
    EnvVariable("REDIS_URL", "redis", "a redis:// or rediss:// URL"),
    EnvVariable("REDIS_HOST", "redis", "if REDIS_URL is not set: the host (ioredis/BullMQ settings)"),
    EnvVariable("REDIS_PORT", "redis", "with REDIS_HOST: the port"),
    EnvVariable("REDIS_USERNAME", "redis", "with REDIS_HOST: the ACL user"),
    EnvVariable("REDIS_PASSWORD", "redis", "with REDIS_HOST: the password"),
    EnvVariable("REDIS_DB", "redis", "with REDIS_HOST: the database number"),
    EnvVariable("REDIS_TLS", "redis", "with REDIS_HOST: true for TLS"),
    EnvVariable("MONGODB_URI", "mongodb", "a mongodb:// or mongodb+srv:// URI"),
    EnvVariable("MONGODB_URL", "mongodb", "the same, if MONGODB_URI is not set"),
    EnvVariable("MONGO_URI", "mongodb", "the same, if neither is set"),
    EnvVariable("MONGO_URL", "mongodb", "the same, if none of the above is set"),
    EnvVariable("CLICKHOUSE_URL", "clickhouse", "an http(s):// URL (@clickhouse/client's url)"),
    EnvVariable("CLICKHOUSE_HOST", "clickhouse", "if CLICKHOUSE_URL is not set: a host, or an http(s):// URL"),
    EnvVariable("CLICKHOUSE_PORT", "clickhouse", "with CLICKHOUSE_HOST: the port"),
    EnvVariable("CLICKHOUSE_USER", "clickhouse", "with CLICKHOUSE_HOST: the user"),
    EnvVariable("CLICKHOUSE_PASSWORD", "clickhouse", "with CLICKHOUSE_HOST: the password"),
    EnvVariable("CLICKHOUSE_DATABASE", "clickhouse", "with CLICKHOUSE_HOST: the database"),
    EnvVariable("MINIO_ENDPOINT", "minio", "minio-js's endPoint: a bare host (or a URL)"),
    EnvVariable("MINIO_PORT", "minio", "with MINIO_ENDPOINT: the port"),
    EnvVariable("MINIO_USE_SSL", "minio", "with MINIO_ENDPOINT: true for https (default false)"),
    EnvVariable("MINIO_ACCESS_KEY", "minio", "with MINIO_ENDPOINT: the access key"),
    EnvVariable("MINIO_SECRET_KEY", "minio", "with MINIO_ENDPOINT: the secret key"),
    EnvVariable("MINIO_ROOT_USER", "minio", "with MINIO_ENDPOINT, if MINIO_ACCESS_KEY is not set: the access key"),
    EnvVariable("MINIO_ROOT_PASSWORD", "minio", "with MINIO_ROOT_USER: the secret key"),
    EnvVariable("MINIO_BUCKET", "minio", "with MINIO_ENDPOINT: the bucket to list"),
    EnvVariable("S3_ENDPOINT", "s3", "if MINIO_ENDPOINT is not set: any S3 store's URL (no MinIO health endpoints)"),
    EnvVariable("AWS_ACCESS_KEY_ID", "s3", "with S3_ENDPOINT: the access key"),
    EnvVariable("AWS_SECRET_ACCESS_KEY", "s3", "with S3_ENDPOINT: the secret key"),
    EnvVariable("S3_BUCKET", "s3", "with S3_ENDPOINT: the bucket to list"),
    EnvVariable("AWS_REGION", "s3", "with S3_ENDPOINT: the region"),
    EnvVariable("APP_LIVENESS_URL", "app-live", "the application's liveness URL (http, critical)"),
    EnvVariable("APP_READINESS_URL", "app-ready", "the application's readiness URL (http, critical)"),
    EnvVariable("TLS_CHECK_ADDRESSES", "tls-<host>", "comma-separated host[:port] whose certificates are checked"),
)
ENV_FILE_VARIABLE = "PROBER_ENV_FILE"


@dataclass(slots=True)
class _Derived:
    """Targets derived from the environment, where each came from, what was left unused, which values are secret."""

    environ: Mapping[str, str]
    targets: list[dict[str, Any]] = field(default_factory=list)
    origins: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)

    def get(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        if not value:
            return None
        if is_secret_variable(name, value):
            self.secrets.add(value)
        return value

    def add(self, target: dict[str, Any], used: list[str]) -> None:
        self.targets.append(target)
        self.origins[target["name"]] = used

    def ignore(self, names: list[str], why: str) -> None:
        set_names = [n for n in names if self.environ.get(n, "").strip()]
        if set_names:
            self.notes.append(f"{', '.join(set_names)} {'is' if len(set_names) == 1 else 'are'} set but ignored: {why}")


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def _first(derived: _Derived, names: list[str], accept: Any = None) -> str | None:
    """The first of ``names`` that is set (and that ``accept(value)`` takes); the later ones are noted."""
    chosen = None
    for name in names:
        value = derived.get(name)
        if value is None or (accept is not None and not accept(value)):
            continue
        if chosen is None:
            chosen = name
        else:
            derived.ignore([name], f"{chosen} takes precedence (order: {', '.join(names)})")
    return chosen


def _postgres(derived: _Derived) -> None:
    database_url = derived.get("DATABASE_URL")
    postgres_url = database_url is not None and _scheme(database_url) in ("postgres", "postgresql")
    if database_url is not None and not postgres_url and _scheme(database_url) not in ("mongodb", "mongodb+srv"):
        scheme = _scheme(database_url) or "no scheme"
        derived.notes.append(f"DATABASE_URL is set but ignored: {scheme} is not a kind the prober knows")
    names = ["DATABASE_URL", "POSTGRES_URL", "POSTGRESQL_URL"]
    chosen = _first(derived, names, lambda v: _scheme(v) in ("postgres", "postgresql"))
    libpq = ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE"]
    if chosen is not None:
        derived.add({"name": "postgres", "kind": "postgres", "critical": True, "dsn": derived.get(chosen)}, [chosen])
        derived.ignore(libpq, f"the postgres target comes from {chosen}")
        return
    host = derived.get("PGHOST")
    if host is None:
        derived.ignore(libpq[1:], "PGHOST is not set")
        return
    pairs = [("host", host)]
    for variable, key in (("PGPORT", "port"), ("PGUSER", "user"), ("PGDATABASE", "dbname"), ("PGSSLMODE", "sslmode")):
        value = derived.get(variable)
        if value is not None:
            pairs.append((key, value))
    dsn = " ".join(f"{key}='{_quoted(value)}'" for key, value in pairs)
    target: dict[str, Any] = {"name": "postgres", "kind": "postgres", "critical": True, "dsn": dsn}
    password = derived.get("PGPASSWORD")
    if password is not None:
        target["password"] = password
    derived.add(target, [name for name in libpq if derived.environ.get(name, "").strip()])


def _url_else_host(derived: _Derived, name: str, url_var: str, host_var: str, parts: list[str]) -> str | None:
    """A dependency given as one URL (``REDIS_URL``) or as a host and its parts (``REDIS_HOST``, ...): the
    target from the URL when it is set (the others noted as ignored); else the host, if set."""
    url = derived.get(url_var)
    if url is not None:
        derived.add({"name": name, "kind": name, "critical": False, "url": url}, [url_var])
        derived.ignore([host_var, *parts], f"the {name} target comes from {url_var}")
        return None
    host = derived.get(host_var)
    if host is None:
        derived.ignore(parts, f"{host_var} is not set")
    return host


def _add_from_parts(derived: _Derived, target: dict[str, Any], prefix: str, parts: list[str]) -> None:
    """Add a target built from ``<prefix>_HOST`` and its parts; ``<prefix>_PASSWORD`` goes into its password field."""
    password = derived.get(f"{prefix}_PASSWORD")
    if password is not None:
        target["password"] = password
    used = [f"{prefix}_HOST", *(name for name in parts if derived.environ.get(name, "").strip())]
    derived.add(target, used)


def _quoted(value: str) -> str:
    """A value for libpq's key='value' form: backslashes and quotes escaped."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _redis(derived: _Derived) -> None:
    parts = ["REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB", "REDIS_TLS"]
    host = _url_else_host(derived, "redis", "REDIS_URL", "REDIS_HOST", parts)
    if host is None:
        return
    tls = (derived.get("REDIS_TLS") or "").lower() in ("true", "1", "yes", "on")
    user = derived.get("REDIS_USERNAME")
    userinfo = f"{quote(user, safe='')}@" if user else ""
    host_part = f"[{host}]" if ":" in host else host
    built = f"{'rediss' if tls else 'redis'}://{userinfo}{host_part}:{derived.get('REDIS_PORT') or 6379}"
    built += f"/{derived.get('REDIS_DB')}" if derived.get("REDIS_DB") else ""
    _add_from_parts(derived, {"name": "redis", "kind": "redis", "critical": False, "url": built}, "REDIS", parts)


def _mongodb(derived: _Derived) -> None:
    names = ["MONGODB_URI", "MONGODB_URL", "MONGO_URI", "MONGO_URL"]
    chosen = _first(derived, names)
    database_url = derived.get("DATABASE_URL")
    if chosen is None and database_url is not None and _scheme(database_url) in ("mongodb", "mongodb+srv"):
        chosen = "DATABASE_URL"  # Prisma's MongoDB connector reads DATABASE_URL too
    elif chosen is not None and database_url is not None and _scheme(database_url) in ("mongodb", "mongodb+srv"):
        derived.ignore(["DATABASE_URL"], f"{chosen} takes precedence for the mongodb target")
    if chosen is not None:
        derived.add({"name": "mongodb", "kind": "mongodb", "critical": False, "uri": derived.get(chosen)}, [chosen])


def _clickhouse(derived: _Derived) -> None:
    parts = ["CLICKHOUSE_PORT", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DATABASE"]
    host = _url_else_host(derived, "clickhouse", "CLICKHOUSE_URL", "CLICKHOUSE_HOST", parts)
    if host is None:
        return
    base = host if "://" in host else f"http://{host}"
    split = urlsplit(base)
    port = derived.get("CLICKHOUSE_PORT")
    netloc = split.netloc if port is None or split.port is not None else f"{split.netloc}:{port}"
    user = derived.get("CLICKHOUSE_USER")
    if user:
        netloc = f"{quote(user, safe='')}@{netloc}"
    database = derived.get("CLICKHOUSE_DATABASE") or split.path.strip("/")
    url = f"{split.scheme}://{netloc}/{quote(database or '', safe='')}"
    target: dict[str, Any] = {"name": "clickhouse", "kind": "clickhouse", "critical": False, "url": url}
    _add_from_parts(derived, target, "CLICKHOUSE", parts)


def _object_storage(derived: _Derived) -> None:
    minio_parts = ["MINIO_PORT", "MINIO_USE_SSL", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_ROOT_USER"]
    minio_parts += ["MINIO_ROOT_PASSWORD", "MINIO_BUCKET"]
    s3_parts = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET", "AWS_REGION"]
    endpoint = derived.get("MINIO_ENDPOINT")
    if endpoint is not None:
        used = ["MINIO_ENDPOINT"]
        target: dict[str, Any] = {"name": "minio", "kind": "minio", "critical": False}
        if "://" in endpoint:
            target["endpoint"] = endpoint
            derived.ignore(["MINIO_PORT", "MINIO_USE_SSL"], "MINIO_ENDPOINT is a URL, which says both")
        else:  # minio-js's endPoint; apps write useSSL: process.env.MINIO_USE_SSL === 'true'
            target["endpoint"] = endpoint
            target["use_ssl"] = (derived.get("MINIO_USE_SSL") or "").lower() in ("true", "1", "yes", "on")
            used += [n for n in ("MINIO_USE_SSL",) if derived.environ.get(n, "").strip()]
            if derived.get("MINIO_PORT") is not None and ":" not in endpoint:
                target["port"] = derived.get("MINIO_PORT")
                used.append("MINIO_PORT")
            elif ":" in endpoint:
                derived.ignore(["MINIO_PORT"], "MINIO_ENDPOINT names its port")
        keys = _first(derived, ["MINIO_ACCESS_KEY", "MINIO_ROOT_USER"])
        if keys is not None:
            secret = "MINIO_SECRET_KEY" if keys == "MINIO_ACCESS_KEY" else "MINIO_ROOT_PASSWORD"
            target["access_key"] = derived.get(keys)
            if derived.get(secret) is not None:
                target["secret_key"] = derived.get(secret)
                used += [keys, secret]
            other = "MINIO_ROOT_PASSWORD" if secret == "MINIO_SECRET_KEY" else "MINIO_SECRET_KEY"
            derived.ignore([other], f"the keys come from {keys} and {secret}")
        if derived.get("MINIO_BUCKET") is not None:
            target["bucket"] = derived.get("MINIO_BUCKET")
            used.append("MINIO_BUCKET")
        derived.add(target, used)
        derived.ignore(["S3_ENDPOINT", *s3_parts], "the object store comes from MINIO_ENDPOINT")
        return
    derived.ignore(minio_parts, "MINIO_ENDPOINT is not set")
    s3 = derived.get("S3_ENDPOINT")
    if s3 is None:
        return
    target = {"name": "s3", "kind": "minio", "critical": False, "health_endpoints": False}
    target["endpoint"] = s3 if "://" in s3 else f"https://{s3}"
    used = ["S3_ENDPOINT"]
    for variable, key in (
        ("AWS_ACCESS_KEY_ID", "access_key"),
        ("AWS_SECRET_ACCESS_KEY", "secret_key"),
        ("S3_BUCKET", "bucket"),
        ("AWS_REGION", "region"),
    ):
        value = derived.get(variable)
        if value is not None:
            target[key] = value
            used.append(variable)
    derived.add(target, used)


def _apps(derived: _Derived) -> None:
    for variable, name in (("APP_LIVENESS_URL", "app-live"), ("APP_READINESS_URL", "app-ready")):
        url = derived.get(variable)
        if url is not None:
            derived.add({"name": name, "kind": "http", "critical": True, "url": url}, [variable])
    for address in filter(None, (a.strip() for a in derived.environ.get("TLS_CHECK_ADDRESSES", "").split(","))):
        address = address if ":" in address.rsplit("]", 1)[-1] else f"{address}:443"
        host = address.rsplit(":", 1)[0].strip("[]")
        name = "tls-" + re.sub(r"[^a-z0-9_.-]", "-", host.lower())
        derived.add({"name": name, "kind": "tls", "critical": False, "address": address}, ["TLS_CHECK_ADDRESSES"])


def derive_from_environment(environ: Mapping[str, str]) -> _Derived:
    """Targets derived from the variables the application next to the sidecar already has
    (``ZERO_CONFIG_VARIABLES``), with where each came from and the variables left unused."""
    derived = _Derived(environ)
    for step in (_postgres, _redis, _mongodb, _clickhouse, _object_storage, _apps):
        step(derived)
    return derived


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The zero-config document: targets derived from the application's variables."""
    return {"targets": derive_from_environment(environ).targets}


def read_env_file(path: str) -> dict[str, str]:
    """The application's dotenv file (python-dotenv's syntax: ``KEY=value``, ``export``, quotes, ``${VAR}``).
    A line it cannot parse is a config error naming the line, never echoing it (it may hold a secret)."""
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{path}: cannot read the env file: {reason}"]) from None
    bad = [binding.original.line for binding in parse_stream(io.StringIO(text)) if binding.error]
    if bad:
        raise ConfigError([f"{path}:{line}: env file: cannot parse this line (expected KEY=value)" for line in bad])
    return {key: value for key, value in dotenv_values(stream=io.StringIO(text)).items() if value is not None}


def with_env_file(environ: Mapping[str, str]) -> tuple[Mapping[str, str], str | None]:
    """The environment, plus the application's env file named by ``PROBER_ENV_FILE`` (``--env-file``);
    a variable set in the process's own environment wins, as with systemd's EnvironmentFile= and dotenv."""
    path = environ.get(ENV_FILE_VARIABLE)
    if not path:
        return environ, None
    return {**read_env_file(path), **environ}, path


class Asked(Mapping[str, str]):
    """An environment that remembers the variables asked for: the list of variables zero-config looks
    for is whatever :func:`from_environment` reads, never a list kept by hand beside it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.asked: dict[str, None] = {}

    def __getitem__(self, key: str) -> str:
        self.asked[key] = None
        return self._environ[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked[key] = None
        return key in self._environ

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


def variables_looked_for(environ: Mapping[str, str] | None = None) -> list[str]:
    """The variables zero-config reads to find targets (asked of ``from_environment`` itself)."""
    asked = Asked({} if environ is None else environ)
    from_environment(asked)
    return list(asked.asked)
