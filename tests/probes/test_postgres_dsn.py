"""The ``postgres`` kind with the DSNs applications really have: Prisma URLs (``schema``, pool tuning,
``sslmode``/``sslaccept``/``sslcert`` in Prisma's meaning), node-postgres URLs (``ssl=true``,
``sslmode=no-verify``), libpq keyword/value strings and Unix-socket hosts, against the real PostgreSQL 15
primary (TLS on, a trustme CA). Plus the parameter tables: every unknown parameter is a config error that
names the nearest known one, without the password."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from prober.config import load_file
from prober.errors import ConfigError
from prober.models import TargetBase
from prober.probes import ProbeContext, Target
from prober.probes._params import names_by_treatment
from prober.probes.postgres import TABLES, Client, PostgresTarget, parse_dsn, tls_plan
from prober.runner import run_probe
from prober.status import Reason, State
from tests.helpers import ROOT
from tests.peers.postgres import APP_USER, PgServer, pg_primary_fixture  # noqa: F401  (registers pg_primary)

TARGETS = TypeAdapter[TargetBase](Target)


def target(dsn: str, **fields: Any) -> PostgresTarget:
    made = TARGETS.validate_python({"name": "db", "kind": "postgres", "dsn": dsn, "timeout": "5s", **fields})
    assert isinstance(made, PostgresTarget)
    return made


def prisma_url(server: PgServer, **query: str) -> str:
    return server.dsn(APP_USER, **query)


async def test_prisma_url_with_pool_tuning_is_ok_and_checks_the_schema(pg_primary: PgServer, ctx: ProbeContext) -> None:
    # the URL: asyncpg used to send schema/connection_limit/pool_timeout to the server as settings,
    # which PostgreSQL refused ("unrecognized configuration parameter")
    dsn = prisma_url(pg_primary, schema="public", connection_limit="10", pool_timeout="20")
    made = target(dsn)
    assert made.parsed.client == "prisma"
    result = await run_probe(made, ctx)
    assert result.state is State.OK, result.message
    assert result.details["schema"] == "public" and result.details["schema_exists"] is True


async def test_prisma_schema_missing_is_unhealthy_assertion(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(prisma_url(pg_primary, schema="tenant_42", connection_limit="5")), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION)
    assert "schema 'tenant_42' does not exist in postgres" in result.message
    assert result.details["schema_exists"] is False


async def test_prisma_schema_created_later_turns_ok(pg_primary: PgServer, ctx: ProbeContext) -> None:
    made = target(prisma_url(pg_primary, schema="late_schema", pgbouncer="true", statement_cache_size="0"))
    assert (await run_probe(made, ctx)).state is State.UNHEALTHY
    pg_primary.sql("CREATE SCHEMA IF NOT EXISTS late_schema")
    try:
        assert (await run_probe(made, ctx)).state is State.OK
    finally:
        pg_primary.sql("DROP SCHEMA late_schema")


async def test_prisma_sslmode_require_does_not_verify(pg_primary: PgServer, ctx: ProbeContext) -> None:
    # Prisma's require (sslaccept defaults to accept_invalid_certs): TLS, the trustme certificate not verified
    result = await run_probe(target(prisma_url(pg_primary, schema="public", sslmode="require")), ctx)
    assert result.state is State.OK, result.message
    assert result.details["tls"] is True


async def test_prisma_sslaccept_strict_verifies(pg_primary: PgServer, ctx: ProbeContext) -> None:
    assert pg_primary.ca_file is not None
    strict = prisma_url(pg_primary, schema="public", sslmode="require", sslaccept="strict")
    failed = await run_probe(target(strict), ctx)  # the system store does not know the trustme CA
    assert (failed.state, failed.reason) == (State.UNHEALTHY, Reason.TLS), failed.message
    with_ca = await run_probe(target(f"{strict}&sslcert={pg_primary.ca_file}"), ctx)  # Prisma's sslcert: the CA
    assert with_ca.state is State.OK, with_ca.message
    assert with_ca.details["tls"] is True


async def test_prisma_socket_directory_host(pg_primary: PgServer, ctx: ProbeContext) -> None:
    dsn = f"postgresql://{APP_USER}:{pg_primary.passwords[APP_USER]}@localhost:{pg_primary.port}/postgres"
    result = await run_probe(target(f"{dsn}?host={pg_primary.base}&schema=public"), ctx)
    assert result.state is State.OK, result.message
    assert result.details["tls"] is False  # a Unix socket has no TLS


async def test_libpq_keyword_value_string(pg_primary: PgServer, ctx: ProbeContext) -> None:
    password = pg_primary.passwords[APP_USER]
    dsn = (
        f"host={pg_primary.host} port={pg_primary.port} dbname=postgres user={APP_USER} "
        f"password='{password}' sslmode=verify-full sslrootcert={pg_primary.ca_file} application_name='my app'"
    )
    made = target(dsn)
    assert made.parsed.client == "libpq" and password in made.secrets()
    result = await run_probe(made, ctx)
    assert result.state is State.OK, result.message
    assert result.details["tls"] is True


async def test_libpq_options_reach_the_server(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_primary.dsn(APP_USER, options="-c%20statement_timeout%3D5000")), ctx)
    assert result.state is State.OK, result.message


async def test_node_postgres_ssl_true_verifies(pg_primary: PgServer, ctx: ProbeContext) -> None:
    plain = await run_probe(target(pg_primary.dsn(APP_USER, ssl="true")), ctx)
    assert (plain.state, plain.reason) == (State.UNHEALTHY, Reason.TLS), plain.message  # unknown CA: refused
    dsn = pg_primary.dsn(APP_USER, ssl="true", sslrootcert=str(pg_primary.ca_file), statement_timeout="30000")
    made = target(dsn)
    assert made.parsed.client == "node-postgres"
    result = await run_probe(made, ctx)
    assert result.state is State.OK, result.message
    assert result.details["tls"] is True


async def test_node_postgres_no_verify(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(target(pg_primary.dsn(APP_USER, sslmode="no-verify")), ctx)
    assert result.state is State.OK, result.message
    assert result.details["tls"] is True


async def test_node_postgres_require_means_verify_full(pg_primary: PgServer, ctx: ProbeContext) -> None:
    dsn = pg_primary.dsn(APP_USER, sslmode="require")
    as_libpq = await run_probe(target(dsn), ctx)  # libpq's require: not verified
    assert as_libpq.state is State.OK, as_libpq.message
    as_node = await run_probe(target(dsn, client="node-postgres"), ctx)  # pg-connection-string 2.x: verify-full
    assert (as_node.state, as_node.reason) == (State.UNHEALTHY, Reason.TLS), as_node.message


@pytest.mark.parametrize(
    ("dsn", "complaint"),
    [
        ("postgresql://u:hunter2pw@h/db?shema=public", "unknown parameter 'shema' (did you mean 'schema'?)"),
        ("postgresql://u:hunter2pw@h/db?connection_limt=5&schema=a", "did you mean 'connection_limit'?"),
        ("postgresql://u:hunter2pw@h/db?sslmod=require", "did you mean 'sslmode'?"),
        ("postgresql://u:hunter2pw@h/db?statement_timeout=1", "is not a libpq parameter (prisma and node-postgres"),
        ("postgresql://u:hunter2pw@h/db?schema=a&ssl=true", "mixes Prisma's parameters (schema) and node-postgres's"),
        ("postgresql://u:hunter2pw@h/db?schema=a&sslmode=verify-full", "Prisma verifies the certificate with"),
        ("postgresql://u:hunter2pw@h/db?schema=a&sslidentity=id.p12", "PKCS#12"),
        ("postgresql://u:hunter2pw@h/db?ssl=maybe", "ssl must be true, false, 1 or 0"),
        ("postgresql://u:hunter2pw@h/db?sslmode=require&sslnegotiation=tls", "sslnegotiation must be"),
        ("postgresql://u:hunter2pw@h/db?sslnegotiation=direct", "needs sslmode=require"),
        ("postgresql://u:hunter2pw@h/db?require_auth=scram-sha-256", "cannot restrict the authentication"),
        ("host=h password=hunter2pw dbname", "cannot read the keyword/value DSN at character 26"),
        ("host=h password=hunter2pw sslmod=disable", "did you mean 'sslmode'?"),
        ("user=u password=hunter2pw", "names no host"),
        ("host=a,b password=hunter2pw", "several hosts"),
        ("host=h port=x password=hunter2pw", "port parameter must be a number"),
    ],
)
def test_bad_parameters_are_refused_without_echoing_the_dsn(dsn: str, complaint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        target(dsn)
    errors = caught.value.errors(include_input=False, include_url=False)
    assert complaint in errors[0]["msg"], errors[0]["msg"]
    assert "hunter2pw" not in json.dumps(errors, default=str)


def test_client_field_decides_whose_parameters_are_read() -> None:
    with pytest.raises(ValidationError, match="is not a libpq parameter"):
        target("postgresql://u@h/db?schema=public", client="libpq")
    assert target("postgresql://u@h/db?statement_timeout=30000", client="node-postgres").parsed.client == (
        "node-postgres"
    )
    assert target("postgresql://u@h/db?statement_timeout=30000", client="prisma").parsed.schema is None


@pytest.mark.parametrize(
    ("dsn", "client", "plan"),
    [
        ("postgresql://u@h/db", None, ("prefer", "none")),
        ("postgresql://u@h/db?sslmode=require", None, ("require", "none")),
        ("postgresql://u@h/db?sslmode=verify-ca", None, ("require", "ca")),
        ("postgresql://u@h/db?sslmode=verify-full", None, ("require", "full")),
        ("postgresql://u@h/db?schema=s", None, ("prefer", "none")),
        ("postgresql://u@h/db?schema=s&sslmode=require", None, ("require", "none")),
        ("postgresql://u@h/db?schema=s&sslaccept=strict", None, ("require", "full")),
        ("postgresql://u@h/db?schema=s&sslmode=disable&sslaccept=strict", None, ("disable", "none")),
        ("postgresql://u@h/db", "node-postgres", ("disable", "none")),
        ("postgresql://u@h/db?ssl=true", None, ("require", "full")),
        ("postgresql://u@h/db?ssl=0", None, ("disable", "none")),
        ("postgresql://u@h/db?ssl=true&sslmode=disable", None, ("disable", "none")),
        ("postgresql://u@h/db?sslmode=no-verify", None, ("require", "none")),
        ("postgresql://u@h/db?sslmode=prefer", "node-postgres", ("require", "full")),
        ("postgresql://u@h/db?sslmode=require&uselibpqcompat=true", None, ("require", "none")),
    ],
)
def test_tls_follows_the_client_whose_form_it_is(dsn: str, client: Client | None, plan: tuple[str, str]) -> None:
    found = tls_plan(parse_dsn(dsn, client), None)
    assert (found.mode, found.verify) == plan


def test_unknown_parameter_is_a_check_config_error_naming_file_line_target_and_field(tmp_path: Path) -> None:
    path = tmp_path / "prober.yaml"
    path.write_text(
        "targets:\n"
        "  - name: db\n"
        "    kind: postgres\n"
        "    dsn: postgresql://app:hunter2pw@db:5432/app?schema=public&conection_limit=10\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_file(str(path), environ={})
    (problem,) = caught.value.problems
    assert problem == (
        f"{path}:4: targets[0] 'db' (postgres): dsn: unknown parameter 'conection_limit' "
        "(did you mean 'connection_limit'?)"
    )


def test_the_kind_documentation_names_every_parameter() -> None:
    text = (ROOT / "docs" / "kinds" / "postgres.md").read_text()
    for client, table in TABLES.items():
        for treatment, names in names_by_treatment(table).items():
            for name in names:
                assert f"`{name}`" in text, f"docs/kinds/postgres.md does not name {client}'s {treatment} {name}"
