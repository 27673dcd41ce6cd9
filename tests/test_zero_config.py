"""Zero-config as the applications' variables have it: every variable of ``ZERO_CONFIG_VARIABLES``, one target
per dependency in the documented precedence (the others noted), where each target came from, the
application's dotenv file, and real runs against PostgreSQL (a Prisma URL, libpq's PG* variables) and Redis
(REDIS_URL, REDIS_HOST and friends)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prober import config, zeroconfig
from prober.errors import ConfigError
from prober.probes.minio import MinioTarget
from prober.probes.postgres import PostgresTarget
from prober.probes.redis import RedisTarget
from tests.helpers import ROOT, run_cli
from tests.peers import redis as redis_peers
from tests.peers.postgres import APP_USER, PgServer, pg_primary_fixture  # noqa: F401  (registers pg_primary)
from tests.peers.redis import Process

redis_master = redis_peers.redis_master


def loaded(**environ: str) -> config.Config:
    return config.load(None, environ)


def targets(**environ: str) -> dict[str, Any]:
    return {t.name: t for t in loaded(**environ).targets}


def test_mongodb_uri_is_read() -> None:  # the second stack's variable
    found = loaded(MONGODB_URI="mongodb://admin:pw@m1:27017,m2:27017/simplepro?authSource=admin&replicaSet=rs0")
    assert [t.name for t in found.targets] == ["mongodb"]
    assert dict(found.origins) == {"mongodb": "MONGODB_URI"}


@pytest.mark.parametrize(
    ("environ", "chosen", "ignored"),
    [
        ({"DATABASE_URL": "postgres://a@h/d", "POSTGRES_URL": "postgres://b@h/d"}, "DATABASE_URL", "POSTGRES_URL"),
        ({"POSTGRESQL_URL": "postgres://a@h/d", "POSTGRES_URL": "postgres://b@h/d"}, "POSTGRES_URL", "POSTGRESQL_URL"),
        ({"POSTGRES_URL": "postgres://a@h/d", "PGHOST": "db", "PGUSER": "u"}, "POSTGRES_URL", "PGHOST, PGUSER"),
        ({"MONGO_URL": "mongodb://h/", "MONGODB_URI": "mongodb://i/"}, "MONGODB_URI", "MONGO_URL"),
        ({"MONGODB_URL": "mongodb://h/", "MONGO_URI": "mongodb://i/"}, "MONGODB_URL", "MONGO_URI"),
        ({"REDIS_URL": "redis://h", "REDIS_HOST": "r", "REDIS_PORT": "1"}, "REDIS_URL", "REDIS_HOST, REDIS_PORT"),
        ({"CLICKHOUSE_URL": "http://h:8123", "CLICKHOUSE_HOST": "c"}, "CLICKHOUSE_URL", "CLICKHOUSE_HOST"),
        ({"MINIO_ENDPOINT": "m", "S3_ENDPOINT": "https://s3"}, "MINIO_ENDPOINT", "S3_ENDPOINT"),
    ],
)
def test_one_target_per_dependency_the_others_noted(environ: dict[str, str], chosen: str, ignored: str) -> None:
    found = config.load(None, environ)
    assert len(found.targets) == 1
    assert dict(found.origins)[found.targets[0].name].startswith(chosen)
    assert any(note.startswith(f"{ignored} ") and "ignored" in note for note in found.notes), found.notes


def test_libpq_variables_make_a_keyword_value_dsn() -> None:
    pg = targets(
        PGHOST="db.internal", PGPORT="5433", PGUSER="app", PGPASSWORD="pw-1'x", PGDATABASE="orders", PGSSLMODE="require"
    )["postgres"]
    assert isinstance(pg, PostgresTarget)
    assert pg.dsn == "host='db.internal' port='5433' user='app' dbname='orders' sslmode='require'"
    assert pg.password is not None and pg.password.get_secret_value() == "pw-1'x"
    assert pg.critical and pg.sslmode == "require"


def test_redis_host_variables_make_a_url() -> None:
    redis = targets(
        REDIS_HOST="cache",
        REDIS_PORT="6380",
        REDIS_USERNAME="bull",
        REDIS_PASSWORD="pw",
        REDIS_DB="2",
        REDIS_TLS="true",
    )["redis"]
    assert isinstance(redis, RedisTarget)
    assert redis.url == "rediss://bull@cache:6380/2" and not redis.critical
    assert redis.password is not None and redis.password.get_secret_value() == "pw"


@pytest.mark.parametrize(
    ("environ", "endpoint", "keys"),
    [
        ({"MINIO_ENDPOINT": "minio", "MINIO_PORT": "9000"}, "http://minio:9000", None),
        ({"MINIO_ENDPOINT": "minio", "MINIO_USE_SSL": "true"}, "https://minio:443", None),
        (
            {"MINIO_ENDPOINT": "minio:9000", "MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk"},
            "http://minio:9000",
            ("ak", "sk"),
        ),
        (
            {"MINIO_ENDPOINT": "http://minio:9000", "MINIO_ROOT_USER": "root", "MINIO_ROOT_PASSWORD": "rootpw"},
            "http://minio:9000",
            ("root", "rootpw"),
        ),
    ],
)
def test_minio_js_variables(environ: dict[str, str], endpoint: str, keys: tuple[str, str] | None) -> None:
    minio = targets(**environ)["minio"]
    assert isinstance(minio, MinioTarget) and minio.health_endpoints
    assert minio.endpoint == endpoint
    found = (minio.access_key, minio.secret_key.get_secret_value()) if minio.secret_key is not None else None
    assert found == keys


def test_aws_style_s3_variables() -> None:
    s3 = targets(
        S3_ENDPOINT="s3.eu-west-1.amazonaws.com",
        AWS_ACCESS_KEY_ID="AKIA1",
        AWS_SECRET_ACCESS_KEY="sk",
        S3_BUCKET="media",
        AWS_REGION="eu-west-1",
    )["s3"]
    assert isinstance(s3, MinioTarget)
    assert (s3.endpoint, s3.bucket, s3.region, s3.health_endpoints) == (
        "https://s3.eu-west-1.amazonaws.com",
        "media",
        "eu-west-1",
        False,
    )


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        (
            {"CLICKHOUSE_HOST": "ch", "CLICKHOUSE_PORT": "8124", "CLICKHOUSE_USER": "u", "CLICKHOUSE_DATABASE": "a"},
            "http://u@ch:8124/a",
        ),
        (
            {"CLICKHOUSE_HOST": "https://ch.example:8443", "CLICKHOUSE_USER": "default"},
            "https://default@ch.example:8443/",
        ),
    ],
)
def test_clickhouse_variables(environ: dict[str, str], url: str) -> None:
    assert targets(**environ)["clickhouse"].where() == url


def test_database_url_of_another_kind() -> None:
    with pytest.raises(ConfigError) as caught:  # nothing else to probe: no targets, and why DATABASE_URL is not one
        loaded(DATABASE_URL="mysql://u:p@h/db")
    assert any("mysql is not a kind" in problem for problem in caught.value.problems), caught.value.problems
    assert not any("u:p@" in problem for problem in caught.value.problems)
    mongo = loaded(DATABASE_URL="mongodb://h/db")  # Prisma's MongoDB connector
    assert [t.kind for t in mongo.targets] == ["mongodb"] and dict(mongo.origins) == {"mongodb": "DATABASE_URL"}


def test_secret_named_variables_are_secrets() -> None:
    found = loaded(MINIO_ENDPOINT="minio", MINIO_ACCESS_KEY="ak-visible-before", MINIO_SECRET_KEY="sk-2")
    assert "ak-visible-before" in found.secrets()  # an access key is masked too (its name holds KEY)
    assert zeroconfig.is_secret_variable("REDIS_PASSWORD", "x1y2") and not zeroconfig.is_secret_variable(
        "AUTH_ENABLED", "true"
    )


def test_every_variable_in_the_table_is_read_and_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for variable in zeroconfig.ZERO_CONFIG_VARIABLES:
        assert f"`{variable.name}`" in readme, f"README's zero-config table does not name {variable.name}"
    source = (ROOT / "prober" / "zeroconfig.py").read_text()
    for variable in zeroconfig.ZERO_CONFIG_VARIABLES:
        assert source.count(f'"{variable.name}"') >= 2, f"{variable.name} is in the table but never read"


def test_check_config_says_where_each_target_came_from() -> None:
    done = run_cli(
        "check-config",
        env={
            "PROBER_CONFIG": "",
            "DATABASE_URL": "postgres://app:pw-secret@db/app",
            "POSTGRES_URL": "postgres://x@y/z",
            "REDIS_HOST": "cache",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "target=postgres kind=postgres critical postgresql://" not in done.stdout  # written as given
    assert "(from DATABASE_URL)" in done.stdout and "(from REDIS_HOST)" in done.stdout
    assert "note: POSTGRES_URL is set but ignored: DATABASE_URL takes precedence" in done.stdout
    assert "pw-secret" not in done.stdout + done.stderr


# --- the application's dotenv file -----------------------------------------------------------------


def test_env_file_feeds_zero_config_and_interpolation(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        '# the app\nexport DATABASE_URL="postgresql://app:pw@db:5432/app?schema=public"\n'
        "REDIS_HOST=cache\nAPP_PORT=3000\n"
    )
    found = config.load(None, {"PROBER_ENV_FILE": str(env_file)})
    assert {t.name for t in found.targets} == {"postgres", "redis"}
    assert found.source == f"<environment> and {env_file}"
    # the process's own environment wins over the file
    assert config.load(None, {"PROBER_ENV_FILE": str(env_file), "REDIS_HOST": "other"}).targets[1].where() == (
        "redis://other:6379"
    )
    prober_yaml = tmp_path / "prober.yaml"
    prober_yaml.write_text("targets:\n  - {name: app, kind: http, url: 'http://127.0.0.1:${APP_PORT}/api/health'}\n")
    assert (
        config.load(str(prober_yaml), {"PROBER_ENV_FILE": str(env_file)})
        .targets[0]
        .where()
        .endswith(":3000/api/health")
    )


def test_env_file_errors_name_the_line_without_echoing_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GOOD=1\nthis line has the Secret-In-A-Bad-Line\n")
    with pytest.raises(ConfigError) as caught:
        config.load(None, {"PROBER_ENV_FILE": str(env_file)})
    assert caught.value.problems == [f"{env_file}:2: env file: cannot parse this line (expected KEY=value)"]
    with pytest.raises(ConfigError, match="cannot read the env file"):
        config.load(None, {"PROBER_ENV_FILE": str(tmp_path / "missing.env")})
    done = run_cli("check-config", "--env-file", str(env_file), env={"PROBER_CONFIG": ""})
    assert done.returncode == 2 and "Secret-In-A-Bad-Line" not in done.stderr


# --- against real servers -----------------------------------------------------------------------------


def test_prisma_database_url_and_redis_url_from_an_env_file(
    pg_primary: PgServer, redis_master: Process, tmp_path: Path
) -> None:
    env_file = tmp_path / "app.env"
    prisma = pg_primary.dsn(APP_USER, schema="public", connection_limit="10", pool_timeout="20")
    env_file.write_text(f"DATABASE_URL={prisma}\nREDIS_URL={redis_master.url()}/0?maxRetriesPerRequest=null\n")
    done = run_cli("once", "--json", "--env-file", str(env_file), env={"PROBER_CONFIG": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    checks = json.loads(done.stdout)["checks"]
    assert {name: check["status"] for name, check in checks.items()} == {"postgres": "ok", "redis": "ok"}
    assert checks["postgres"]["details"]["schema_exists"] is True


def test_libpq_and_redis_host_variables_against_real_servers(pg_primary: PgServer, redis_master: Process) -> None:
    env = {
        "PROBER_CONFIG": "",
        "PGHOST": pg_primary.host,
        "PGPORT": str(pg_primary.port),
        "PGUSER": APP_USER,
        "PGPASSWORD": pg_primary.passwords[APP_USER],
        "PGDATABASE": "postgres",
        "PGSSLMODE": "require",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_master.port),
        "REDIS_PASSWORD": str(redis_master.password),
    }
    done = run_cli("once", "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = json.loads(done.stdout)["checks"]
    assert (checks["postgres"]["status"], checks["postgres"]["details"]["tls"]) == ("ok", True)
    assert checks["redis"]["status"] == "ok"
    wrong = run_cli("once", "--json", env={**env, "REDIS_PASSWORD": "not-it"})
    assert json.loads(wrong.stdout)["checks"]["redis"]["reason"] == "auth"
    assert "not-it" not in wrong.stdout + wrong.stderr
