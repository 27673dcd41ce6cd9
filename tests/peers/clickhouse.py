"""ClickHouse peers for the ``clickhouse`` probe's tests.

Two real engines, because no current ClickHouse *server* can be installed here (see
/work/shared/notes/test-peers.md):

- :class:`OldClickHouse`: the real Debian ``clickhouse-server`` 18.16, started per test on free loopback
  ports with its data under a temporary directory and a user with a password. clickhouse-connect 1.12
  cannot talk to it (its setup query reads ``system.settings.readonly``, a column 18.16 lacks), so it
  serves the old-version path and the real failures: wrong password, stopped, frozen (SIGSTOP).
- :class:`ChdbFront`: the current ClickHouse engine (chdb, embedded) behind a small front speaking
  ClickHouse's HTTP interface (``/ping``, ``query=`` and POST bodies, ``default_format``, ``database``,
  Basic auth, the ``X-ClickHouse-*`` headers, error codes in ``X-ClickHouse-Exception-Code``): every
  query of clickhouse-connect is run by the real engine. chdb has no server and no authentication: the
  front checks the user and password itself and answers a wrong one as ClickHouse does (401, code 516).
  chdb has no replicated tables either: queries naming ``system.replicas`` are run against
  ``scripted.replicas``, a table created ``AS system.replicas`` (the real column types) whose rows the
  test writes, a *scripted stand-in* for replicas that are read-only, without a Keeper session or lagging.
  Query-level settings in the URL (``readonly``, ``max_execution_time``, ``max_result_rows``,
  ``result_overflow_mode``, as clickhouse-connect sends them) are applied by the engine through a ``SETTINGS``
  clause on a SELECT (the engine's parser, ``EXPLAIN AST``, says what the statement is); a statement that is not
  a SELECT under ``readonly`` gets the engine's own READONLY error (code 164) without being run, the answer the
  engine gives such a statement with ``SETTINGS readonly=1``.

Both fronts (plain and TLS) run in one background thread with its own event loop, so that in-process
probes and ``prober`` subprocesses both reach them; chdb is only ever called from that thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiohttp import web

from tests.helpers import free_port, require

USER = "prober"
PASSWORD = "Ch-pr0be-S3cret"  # a test password, asserted never to leak
START_TIMEOUT = 30.0

Fault = Literal["garbage", "hang"] | None

# ---------------------------------------------------------------------------------------------------------------
# The real Debian clickhouse-server 18.16
# ---------------------------------------------------------------------------------------------------------------

_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dir}/server.log</log><errorlog>{dir}/server.err.log</errorlog></logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <format_schema_path>{dir}/format_schemas/</format_schema_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <uncompressed_cache_size>67108864</uncompressed_cache_size>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <{user}>
      <password>{password}</password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </{user}>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


class OldClickHouse:
    """One real clickhouse-server 18.16 process on loopback."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.http_port = free_port()
        self.tcp_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def url(self, password: str = PASSWORD, user: str = USER) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.http_port}/"

    def start(self) -> OldClickHouse:
        self.directory.mkdir(parents=True, exist_ok=True)
        values = {"dir": self.directory, "http_port": self.http_port, "tcp_port": self.tcp_port}
        (self.directory / "config.xml").write_text(_CONFIG.format(**values))
        (self.directory / "users.xml").write_text(_USERS.format(user=USER, password=PASSWORD))
        with open(self.directory / "stdout.log", "wb") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config-file={self.directory / 'config.xml'}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.directory / "stdout.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"clickhouse-server exited with {self.process.returncode}: {log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/ping", timeout=1) as answer:
                    if answer.read().startswith(b"Ok."):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"clickhouse-server did not answer /ping within {START_TIMEOUT}s")

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if self.frozen:
            self.thaw()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def old_clickhouse(tmp_path: Path) -> Iterator[OldClickHouse]:
    """A fresh real clickhouse-server 18.16 per test (it starts in well under a second)."""
    server = OldClickHouse(require("clickhouse-server"), tmp_path / "clickhouse-18")
    try:
        yield server.start()
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------------------------
# The current engine (chdb) behind a ClickHouse-HTTP front
# ---------------------------------------------------------------------------------------------------------------

_REPLICAS = re.compile(r"\bsystem\s*\.\s*replicas\b", re.IGNORECASE)
_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE = re.compile(r"Code:\s*(\d+)")
_STATUS_OF_CODE = {47: 404, 60: 404, 81: 404, 62: 400, 164: 500, 497: 403, 516: 401}
QUERY_SETTINGS = ("readonly", "max_execution_time", "max_result_rows", "result_overflow_mode")


@dataclass(frozen=True)
class Replica:
    """One scripted row of ``system.replicas``."""

    database: str
    table: str
    is_readonly: int = 0
    is_session_expired: int = 0
    absolute_delay: int = 0


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ChdbFront:
    """ClickHouse's HTTP interface over the embedded engine, on a plain and a TLS port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chdb-front", daemon=True)
        self.ports: dict[str, int] = {}
        self.fault: Fault = None
        self.hang_on: str | None = None  # a query holding this text is left unanswered (fault "hang" for one query)
        self.queries: list[str] = []  # every SQL text received, for assertions on what the probe ran
        self.settings: list[dict[str, str]] = []  # the query-level settings each query came with
        # scripted server errors: a query containing the key is answered with (code, name, text)
        self.errors: dict[str, tuple[int, str, str]] = {}
        self.version = ""
        self._session: Any = None
        self._release: asyncio.Event | None = None  # set to let hung queries go (at reset and stop)
        self._runners: list[web.AppRunner] = []
        ca = trustme.CA()
        self.ca_file = directory / "front-ca.pem"
        self.other_ca_file = directory / "other-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        trustme.CA().cert_pem.write_to_path(str(self.other_ca_file))
        self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self._server_tls)

    # -- lifecycle, driven from the test thread --------------------------------------------------------------

    def call(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        return asyncio.run_coroutine_threadsafe(factory(), self.loop).result(60)

    def start(self) -> ChdbFront:
        self.thread.start()
        self.call(self._start)
        return self

    async def _start(self) -> None:
        import chdb.session

        session_type: Any = chdb.session.Session
        self._session = session_type()
        self._release = asyncio.Event()
        self.version = self._run("SELECT version()", "TabSeparated").decode().strip()
        self._run("CREATE DATABASE scripted", "TabSeparated")
        self._run("CREATE TABLE scripted.replicas AS system.replicas ENGINE = Memory", "TabSeparated")
        self._run("CREATE DATABASE app", "TabSeparated")
        for name, tls in (("http", None), ("https", self._server_tls)):
            runner = web.AppRunner(self._app(), access_log=None)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
            self._runners.append(runner)
            self.ports[name] = port

    def stop(self) -> None:
        async def stop() -> None:
            self._let_go()
            for runner in self._runners:
                await runner.cleanup()
            if self._session is not None:
                self._session.close()

        self.call(stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def reset(self) -> None:
        self.fault = None
        self.hang_on = None
        self.queries.clear()
        self.settings.clear()
        self.errors.clear()
        self.set_replicas([])

        async def let_go() -> None:
            self._let_go()

        self.call(let_go)

    def _let_go(self) -> None:
        if self._release is not None:
            self._release.set()
        self._release = asyncio.Event()

    def set_replicas(self, rows: list[Replica]) -> None:
        async def write() -> None:
            self._run("TRUNCATE TABLE scripted.replicas", "TabSeparated")
            if rows:
                values = ", ".join(
                    f"({_quote(r.database)}, {_quote(r.table)}, {r.is_readonly}, {r.is_session_expired}, "
                    f"{r.absolute_delay})"
                    for r in rows
                )
                self._run(
                    "INSERT INTO scripted.replicas (database, table, is_readonly, is_session_expired, absolute_delay) "
                    f"VALUES {values}",
                    "TabSeparated",
                )

        self.call(write)

    def run(self, sql: str) -> bytes:
        """Run SQL on the engine directly (test set-up), in the front's thread."""

        async def call() -> bytes:
            return self._run(sql, "TabSeparated")

        result: bytes = self.call(call)
        return result

    def url(self, password: str = PASSWORD, user: str = USER, scheme: str = "http", database: str = "") -> str:
        host = "localhost" if scheme == "https" else "127.0.0.1"
        return f"{scheme}://{user}:{password}@{host}:{self.ports[scheme]}/{database}"

    # -- the ClickHouse HTTP interface, in the front's thread -------------------------------------------------

    def _run(self, sql: str, fmt: str) -> bytes:
        answer = self._session.query(sql, fmt)
        return bytes(answer.bytes())

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_route("GET", "/ping", self._ping)
        app.router.add_route("HEAD", "/ping", self._ping)
        app.router.add_route("GET", "/", self._query)
        app.router.add_route("POST", "/", self._query)
        return app

    async def _ping(self, _request: web.Request) -> web.Response:
        return web.Response(body=b"Ok.\n", content_type="text/plain")

    def _error(self, code: int, name: str, text: str) -> web.Response:
        body = f"Code: {code}. DB::Exception: {text}. ({name}) (version {self.version})\n"
        return web.Response(
            status=_STATUS_OF_CODE.get(code, 500),
            body=body.encode(),
            content_type="text/plain",
            headers={"X-ClickHouse-Exception-Code": str(code)},
        )

    @staticmethod
    def _credentials(request: web.Request) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user, password
        user = request.headers.get("X-ClickHouse-User", request.query.get("user", "default"))
        return user, request.headers.get("X-ClickHouse-Key", request.query.get("password", ""))

    async def _query(self, request: web.Request) -> web.StreamResponse:
        user, password = self._credentials(request)
        if (user, password) != (USER, PASSWORD):
            return self._error(
                516,
                "AUTHENTICATION_FAILED",
                f"{user}: Authentication failed: password is incorrect, or there is no user with such name",
            )
        body = (await request.read()).decode()
        sql = "\n".join(part for part in (request.query.get("query", ""), body) if part)
        self.queries.append(sql)
        hang = self.fault == "hang" or (self.hang_on is not None and self.hang_on in sql)
        if hang and self._release is not None:
            release = self._release
            await asyncio.wait_for(release.wait(), 60)  # never answered before the test ends
            return self._error(394, "QUERY_WAS_CANCELLED", "Query was cancelled")
        if self.fault == "garbage":
            return web.Response(body=os.urandom(4096), headers={"X-ClickHouse-Format": "Native"})
        for key, (code, name, text) in self.errors.items():
            if key in sql:
                return self._error(code, name, text)
        found = _FORMAT.search(sql)
        fmt = found.group(1) if found else request.query.get("default_format", "TabSeparated")
        database = request.query.get("database")
        applied = {key: request.query[key] for key in QUERY_SETTINGS if key in request.query}
        self.settings.append(applied)
        try:
            if database:
                self._run(f"USE {database}", "TabSeparated")
            try:
                if applied:
                    body_sql = sql[: found.start()] if found else sql
                    kind = self._run(f"EXPLAIN AST {body_sql}", "TabSeparated").decode().split(" ", 1)[0]
                    if not kind.startswith("Select") and int(applied.get("readonly", "0")) >= 1:
                        return self._error(164, "READONLY", f"{user}: Cannot execute query in readonly mode")
                    if kind.startswith("Select"):
                        clause = " SETTINGS " + ", ".join(
                            f"{key}={value if value.isdigit() else _quote(value)}" for key, value in applied.items()
                        )
                        sql = body_sql + clause + (sql[found.start() - 1 :] if found else "")
                data = self._run(_REPLICAS.sub("scripted.replicas", sql), fmt)
            finally:
                if database:
                    self._run("USE default", "TabSeparated")
        except Exception as exc:  # the engine's own error: answered the way ClickHouse answers it
            text = str(exc)
            code = int(m.group(1)) if (m := _CODE.search(text)) else 1002
            name = m.group(1) if (m := re.search(r"\(([A-Z_]+)\)\s*$", text)) else "UNKNOWN_EXCEPTION"
            detail = re.sub(r"^Code:\s*\d+\.\s*DB::Exception:\s*", "", text)
            detail = re.sub(r"\s*\([A-Z_]+\)\s*$", "", detail).rstrip(".")
            return self._error(code, name, detail)
        summary = {"read_rows": "0", "read_bytes": "0", "written_rows": "0", "written_bytes": "0"}
        return web.Response(
            body=data,
            headers={
                "Content-Type": "application/octet-stream" if fmt == "Native" else "text/plain; charset=UTF-8",
                "X-ClickHouse-Format": fmt,
                "X-ClickHouse-Timezone": "UTC",
                "X-ClickHouse-Query-Id": str(uuid.uuid4()),
                "X-ClickHouse-Summary": json.dumps(summary),
                "X-ClickHouse-Server-Display-Name": "chdb-front",
            },
        )


_SHARED: list[ChdbFront] = []  # chdb allows one session per process: one front, shared by every test module
_USERS_OF_SHARED: list[int] = [0]


@pytest.fixture(scope="session")
def chdb_front_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbFront]:
    """The front over one chdb session (chdb allows one per process), for the whole test session: every
    module that imports this fixture gets the same front, stopped when the last of them is done."""
    try:
        import chdb  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("chdb-core is required in CI (scripts/test.sh installs it)")
        pytest.skip("chdb-core is not installed")
    if not _SHARED:
        _SHARED.append(ChdbFront(tmp_path_factory.mktemp("chdb-front")).start())
    _USERS_OF_SHARED[0] += 1
    try:
        yield _SHARED[0]
    finally:
        _USERS_OF_SHARED[0] -= 1
        if not _USERS_OF_SHARED[0]:
            _SHARED.pop().stop()


@pytest.fixture
def chdb_front(chdb_front_session: ChdbFront) -> Iterator[ChdbFront]:
    """The shared front, with no fault and no scripted replicas at the start and end of each test."""
    chdb_front_session.reset()
    try:
        yield chdb_front_session
    finally:
        chdb_front_session.reset()
