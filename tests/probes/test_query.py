"""``query:`` on postgres, clickhouse and mongodb: the first row of the user's read-only query as observations
(``row``, ``result``) and ``prober_query_value`` samples, against a real PostgreSQL whose table the test fills,
the ClickHouse engine (chdb behind its HTTP front), nx-27017 and mockupdb; a query that writes is refused."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import gc
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from pydantic import ValidationError

from prober.probes import ProbeContext
from prober.probes import _query as query_kit
from prober.probes.clickhouse import ClickhouseTarget
from prober.probes.mongodb import MongodbTarget
from prober.probes.postgres import PostgresTarget
from prober.runner import run_probe
from prober.status import Reason, State
from tests.helpers import run_cli
from tests.peers import clickhouse as peers_ch
from tests.peers.clickhouse import ChdbFront
from tests.peers.mongodb import NxServer, mock_member, nx_server
from tests.peers.postgres import SUPERUSER, PgServer, fake_postgres, pg_primary_fixture  # noqa: F401

chdb_front_session = peers_ch.chdb_front_session
chdb_front = peers_ch.chdb_front


@pytest.fixture(autouse=True)
async def settle() -> AsyncIterator[None]:
    """As in test_postgres.py: let asyncpg finish closing on this loop before pytest closes it."""
    yield
    await asyncio.sleep(0.1)
    gc.collect()


# --- postgres ---------------------------------------------------------------------------------------


@pytest.fixture
def jobs(pg_primary: PgServer) -> Iterator[str]:
    """A table of the test's own, filled with 1,200 pending and 300 done jobs."""
    table = f"jobs_{uuid.uuid4().hex[:8]}"
    pg_primary.sql(
        f"CREATE TABLE {table} (id serial PRIMARY KEY, state text NOT NULL, created timestamptz NOT NULL); "
        f"INSERT INTO {table} (state, created) SELECT CASE WHEN n <= 1200 THEN 'pending' ELSE 'done' END, "
        f"now() - n * interval '1 second' FROM generate_series(1, 1500) AS n"
    )
    try:
        yield table
    finally:
        pg_primary.sql(f"DROP TABLE {table}")


def pg_target(server: PgServer, query: str, **fields: Any) -> PostgresTarget:
    data = {"name": "db", "kind": "postgres", "dsn": server.dsn(SUPERUSER, sslmode="disable"), "query": query}
    return PostgresTarget.model_validate(data | {"timeout": "3s", **fields})


async def test_postgres_first_row_becomes_observations(pg_primary: PgServer, jobs: str, ctx: ProbeContext) -> None:
    query = (
        f"SELECT count(*) FILTER (WHERE state = 'pending') AS pending, "
        f"extract(epoch FROM now() - min(created) FILTER (WHERE state = 'pending'))::numeric(10,1) AS oldest_seconds, "
        f"'x' AS label FROM {jobs}"
    )
    result = await run_probe(pg_target(pg_primary, query, unhealthy_if=["row.pending > 1000"]), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == "unhealthy: row.pending > 1000 (1200)"
    row = result.details["row"]
    assert row["pending"] == 1200 and row["label"] == "x"
    assert 1199 <= row["oldest_seconds"] <= 1300  # numeric -> a number
    assert result.details["rows"] == 1 and "result" not in result.details
    assert dict(result.series["query_value"]) == {("pending",): 1200.0, ("oldest_seconds",): row["oldest_seconds"]}
    assert "data_query" in result.phases


async def test_postgres_single_value_is_result(pg_primary: PgServer, jobs: str, ctx: ProbeContext) -> None:
    made = pg_target(pg_primary, f"SELECT count(*) FROM {jobs} WHERE state = 'done'", degraded_if=["result > 100"])
    result = await run_probe(made, ctx)
    assert result.state is State.DEGRADED, result.message
    assert result.message.endswith(": degraded: result > 100 (300)")  # after the kind's context (primary, ...)
    assert result.details["result"] == 300 and result.details["row"] == {"count": 300}


async def test_postgres_no_row(pg_primary: PgServer, jobs: str, ctx: ProbeContext) -> None:
    result = await run_probe(pg_target(pg_primary, f"SELECT id FROM {jobs} WHERE state = 'nope'"), ctx)
    assert result.state is State.OK, result.message
    assert (result.details["row"], result.details["rows"]) == ({}, 0)
    assert result.series["query_value"] == ()
    assert result.message.endswith("; the query returned no row")


@pytest.mark.parametrize(
    "query",
    [
        "INSERT INTO {jobs} (state, created) VALUES ('pending', now())",
        "UPDATE {jobs} SET state = 'done' RETURNING id",
        "DELETE FROM {jobs}",
        "SELECT nextval('{jobs}_id_seq')",
        "CREATE TABLE {jobs}_copy AS SELECT * FROM {jobs}",
    ],
)
async def test_postgres_a_writing_query_is_refused(
    pg_primary: PgServer, jobs: str, ctx: ProbeContext, query: str
) -> None:
    result = await run_probe(pg_target(pg_primary, query.format(jobs=jobs)), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message.startswith("data_query: the query tried to write: cannot execute ")
    assert result.message.endswith("in a read-only transaction")
    assert pg_primary.sql(f"SELECT count(*) FROM {jobs}") == "1500"  # nothing was written


async def test_postgres_a_query_that_ends_the_transaction_is_refused(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(pg_target(pg_primary, "COMMIT"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert "the query ended the read-only transaction" in result.message


async def test_postgres_a_slow_query_is_cancelled_by_the_server(pg_primary: PgServer, ctx: ProbeContext) -> None:
    """statement_timeout is what is left of the run, less a little: the server cancels the query (and says so)
    before the run's own deadline, and the statement does not go on running on the server."""
    started = time.monotonic()
    result = await run_probe(pg_target(pg_primary, "SELECT pg_sleep(10)", timeout="1s"), ctx)
    elapsed = time.monotonic() - started
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result.message
    # the server's words; on a loaded machine the run's own deadline may still come first
    assert result.message in (
        "data_query: query canceled by the server: canceling statement due to statement timeout",
        "data_query: no answer within 1s",
    )
    assert elapsed < 1.2
    gone = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(10)'"
    await asyncio.to_thread(pg_primary.wait_sql, gone, "0", 5)


async def test_postgres_an_error_in_the_query_names_it(pg_primary: PgServer, ctx: ProbeContext) -> None:
    result = await run_probe(pg_target(pg_primary, "SELECT * FROM no_such_table"), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == 'data_query: server error 42P01: relation "no_such_table" does not exist'


async def test_postgres_a_peer_that_hangs_before_the_query(ctx: ProbeContext) -> None:
    async with fake_postgres("silent-after-auth") as fake:
        made = PostgresTarget.model_validate(
            {"name": "db", "kind": "postgres", "dsn": f"postgresql://app:pw@127.0.0.1:{fake.port}/app"}
            | {"query": "SELECT 1", "timeout": "1s"}
        )
        result = await run_probe(made, ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result.message


# --- clickhouse -----------------------------------------------------------------------------------


@pytest.fixture
def events(chdb_front: ChdbFront) -> Iterator[str]:
    table = f"app.events_{uuid.uuid4().hex[:8]}"
    chdb_front.run(f"CREATE TABLE {table} (kind String, at DateTime) ENGINE = Memory")
    chdb_front.run(f"INSERT INTO {table} SELECT if(number < 40, 'error', 'ok'), now() - number FROM numbers(100)")
    try:
        yield table
    finally:
        chdb_front.run(f"DROP TABLE {table}")


def ch_target(front: ChdbFront, query: str, **fields: Any) -> ClickhouseTarget:
    data = {"name": "ch", "kind": "clickhouse", "url": front.url(), "query": query, "timeout": "3s", **fields}
    return ClickhouseTarget.model_validate(data)


async def test_clickhouse_first_row(chdb_front: ChdbFront, events: str, ctx: ProbeContext) -> None:
    query = f"SELECT countIf(kind = 'error') AS errors, count() AS total, max(at) AS newest FROM {events}"
    result = await run_probe(ch_target(chdb_front, query, degraded_if=["row.errors > 10"]), ctx)
    assert result.state is State.DEGRADED, result.message
    assert result.message == "degraded: row.errors > 10 (40)"
    assert (result.details["row"]["errors"], result.details["row"]["total"]) == (40, 100)
    assert isinstance(result.details["row"]["newest"], str)  # a DateTime becomes ISO 8601 text
    assert dict(result.series["query_value"]) == {("errors",): 40.0, ("total",): 100.0}
    sent = chdb_front.settings[-1]
    assert sent["readonly"] == "1" and int(sent["max_execution_time"]) >= 1
    assert (sent["max_result_rows"], sent["result_overflow_mode"]) == ("1", "break")


async def test_clickhouse_only_the_first_block_is_read(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    result = await run_probe(ch_target(chdb_front, "SELECT number AS n FROM system.numbers"), ctx)
    assert result.state is State.OK, result.message  # an endless result: stopped at the first block
    assert result.details["result"] == 0


@pytest.mark.parametrize(
    "query",
    ["INSERT INTO {events} VALUES ('x', now())", "DROP TABLE {events}", "CREATE TABLE app.t (x Int8) ENGINE = Memory"],
)
async def test_clickhouse_a_writing_query_is_refused(
    chdb_front: ChdbFront, events: str, ctx: ProbeContext, query: str
) -> None:
    result = await run_probe(ch_target(chdb_front, query.format(events=events)), ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message.startswith("data_query: the query tried to write: Code 164: ")
    assert "Cannot execute query in readonly mode" in result.message
    assert chdb_front.run(f"SELECT count() FROM {events}") == b"100\n"


async def test_clickhouse_a_slow_query_hits_max_execution_time(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    result = await run_probe(ch_target(chdb_front, "SELECT sleep(3)", timeout="1500ms"), ctx)
    assert result.state is State.UNHEALTHY, result.message
    assert result.reason in (Reason.ASSERTION, Reason.TIMEOUT), result.message


async def test_clickhouse_a_peer_that_hangs_on_the_query(chdb_front: ChdbFront, ctx: ProbeContext) -> None:
    """The server answers the ping, the setup and SELECT 1, then never answers the query."""
    chdb_front.hang_on = "hang here"
    started = time.monotonic()
    result = await run_probe(ch_target(chdb_front, "SELECT 42 AS answer /* hang here */", timeout="1500ms"), ctx)
    elapsed = time.monotonic() - started
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result.message
    assert result.message.startswith("data_query: no answer in time")
    assert elapsed < 2


# --- mongodb --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NxServer]:
    with nx_server(tmp_path_factory.mktemp("nx-query")) as server:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(server.uri, directConnection=True)
        try:
            client.app.devices.insert_many(
                [
                    {
                        "name": f"d{i}",
                        "online": i % 3 != 0,
                        "lastSeen": datetime.datetime(2026, 1, 1 + i),
                        "load": i / 10,
                    }
                    for i in range(10)
                ]
            )
        finally:
            client.close()
        yield server


def mongo_target(server: NxServer, query: dict[str, Any], **fields: Any) -> MongodbTarget:
    data = {"name": "mongo", "kind": "mongodb", "uri": f"{server.uri}app", "query": query, "timeout": "3s"}
    return MongodbTarget.model_validate(data | fields)


async def test_mongodb_count(nx: NxServer, ctx: ProbeContext) -> None:
    made = mongo_target(
        nx, {"count": {"collection": "devices", "filter": {"online": False}}}, unhealthy_if=["result > 3"]
    )
    result = await run_probe(made, ctx)
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.ASSERTION), result.message
    assert result.message == "unhealthy: result > 3 (4)"
    assert result.details["row"] == {"count": 4}
    assert result.series["query_value"] == ((("count",), 4.0),)
    assert "data_query" in result.phases


async def test_mongodb_count_with_an_extended_json_date(nx: NxServer, ctx: ProbeContext) -> None:
    wanted = {"count": {"collection": "devices", "filter": {"lastSeen": {"$lt": {"$date": "2026-01-05T00:00:00Z"}}}}}
    result = await run_probe(mongo_target(nx, wanted), ctx)
    assert result.details["result"] == 4, result.message


async def test_mongodb_find_one(nx: NxServer, ctx: ProbeContext) -> None:
    wanted = {
        "find_one": {
            "collection": "devices",
            "filter": {"online": False},
            "projection": {"_id": 0, "name": 1, "lastSeen": 1, "load": 1},
            "sort": {"lastSeen": -1},
        }
    }
    result = await run_probe(mongo_target(nx, wanted), ctx)
    assert result.state is State.OK, result.message
    assert result.details["row"] == {"name": "d9", "lastSeen": "2026-01-10T00:00:00", "load": 0.9}
    assert dict(result.series["query_value"]) == {("load",): 0.9}


async def test_mongodb_find_one_nothing_found(nx: NxServer, ctx: ProbeContext) -> None:
    wanted = {"database": "app", "find_one": {"collection": "devices", "filter": {"name": "nobody"}}}
    result = await run_probe(mongo_target(nx, wanted, uri=nx.uri), ctx)
    assert result.state is State.OK, result.message
    assert (result.details["rows"], result.details["row"]) == (0, {})


async def test_mongodb_a_member_that_never_answers_the_query(ctx: ProbeContext) -> None:
    """mockupdb answers the handshake and the probe's own commands, and leaves the count unanswered."""
    with mock_member(isWritablePrimary=True) as member:
        made = MongodbTarget.model_validate(
            {"name": "mongo", "kind": "mongodb", "uri": f"{member.uri}app", "timeout": "1s"}
            | {"query": {"count": {"collection": "devices"}}}
        )
        started = time.monotonic()
        result = await run_probe(made, ctx)
        elapsed = time.monotonic() - started
    assert (result.state, result.reason) == (State.UNHEALTHY, Reason.TIMEOUT), result.message
    assert result.message.startswith("data_query: ")
    assert elapsed < 1.5


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"query": {"collection": "x"}}, "Extra inputs are not permitted"),
        ({"query": {}}, "set exactly one of count and find_one"),
        ({"query": {"count": {"collection": "a"}, "find_one": {"collection": "b"}}}, "set exactly one"),
        ({"uri": "mongodb://h/", "query": {"count": {"collection": "a"}}}, "query needs a database"),
        ({"query": {"find_one": {"collection": "a", "sort": {"x": 2}}}}, "Input should be 1 or -1"),
    ],
)
def test_mongodb_bad_queries_are_refused(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        MongodbTarget.model_validate({"name": "m", "kind": "mongodb", "uri": "mongodb://h/app"} | fields)


# --- the shared part ------------------------------------------------------------------------------


def test_values_become_plain_data() -> None:
    values, samples = query_kit.observe(
        [
            ("n", decimal.Decimal("12")),
            ("ratio", decimal.Decimal("0.25")),
            ("when", datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)),
            ("took", datetime.timedelta(minutes=2)),
            ("blob", b"\x00\xff"),
            ("id", uuid.UUID(int=1)),
            ("flag", True),
            ("nothing", None),
            ("text", "y" * 500),
            ("nan", float("nan")),
            ("nested", {"a": [1, {"b": {"c": {"d": 1}}}]}),
        ]
    )
    row = values["row"]
    assert (row["n"], row["ratio"], row["took"], row["blob"], row["flag"]) == (12, 0.25, 120.0, "00ff", True)
    assert row["when"] == "2026-01-02T03:04:05+00:00" and row["id"] == str(uuid.UUID(int=1))
    assert len(row["text"]) == query_kit.MAX_TEXT and row["nan"] == "nan"
    assert row["nested"] == {"a": [1, {"b": "{'c': {'d': 1}}"}]}  # deeper than MAX_DEPTH: its text
    assert dict(samples) == {("n",): 12.0, ("ratio",): 0.25, ("took",): 120.0}  # not bools, not NaN


def test_columns_are_capped() -> None:
    values, samples = query_kit.observe([(f"c{i}", i) for i in range(50)])
    assert len(values["row"]) == query_kit.MAX_COLUMNS == len(samples)


@pytest.mark.parametrize("kind", ["postgres", "clickhouse"])
def test_an_empty_query_is_refused(kind: str) -> None:
    model = PostgresTarget if kind == "postgres" else ClickhouseTarget
    field = {"postgres": {"dsn": "postgresql://h/db"}, "clickhouse": {"url": "http://h:8123"}}[kind]
    with pytest.raises(ValidationError, match="at least 1 character"):
        model.model_validate({"name": "x", "kind": kind, "query": "", **field})


def test_prober_once_shows_the_row(pg_primary: PgServer, jobs: str) -> None:
    config = {
        "targets": [
            {
                "name": "pending",
                "kind": "postgres",
                "dsn": pg_primary.dsn(SUPERUSER, sslmode="disable"),
                "query": f"SELECT count(*) AS pending FROM {jobs} WHERE state = 'pending'",
                "degraded_if": ["row.pending > 1000"],
            }
        ]
    }
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "prober.yaml"
        path.write_text(json.dumps(config))
        done = run_cli("once", "-c", str(path), "--json")
    assert done.returncode == 1, done.stderr  # degraded
    check = json.loads(done.stdout)["checks"]["pending"]
    assert check["details"]["row"] == {"pending": 1200} and check["details"]["result"] == 1200
    assert check["message"].endswith("degraded: row.pending > 1000 (1200)")
