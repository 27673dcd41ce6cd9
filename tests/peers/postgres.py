"""Real PostgreSQL 15 servers for the ``postgres`` kind's tests, and a few hostile fakes.

Servers: ``initdb`` (scram-sha-256, a password file) and ``pg_ctl``, run as the ``postgres`` user when
the tests run as root (``runuser -u postgres --``), with data in a temporary directory owned by that
user, listening on 127.0.0.1 on a free port with ``fsync=off``. A streaming replica is made with
``pg_basebackup -R -X stream``. Every server a fixture starts is stopped by it.

Fixtures:
- ``pg_primary`` (session): a primary with TLS on (a trustme CA; ``pg_primary.ca_file``), a
  superuser ``postgres``, an unprivileged login ``app`` and a ``monitor`` login in ``pg_monitor``.
- ``pg_replica`` (session): a streaming replica of ``pg_primary``, without TLS.
- ``pg_small`` (session): a primary with ``max_connections=6`` and one superuser-reserved slot, for
  connection-usage tests (tests hold connections and release them).
- ``pg_scratch`` (function): a primary of a test's own, for tests that stop or freeze the server.

Fakes (:class:`FakePostgres`, in the test's event loop): peers that speak just enough of the
PostgreSQL protocol to misbehave: close after the SSL answer, ask for a cleartext password and echo
it back in an error, accept it and echo it in errors to every query, or accept it and never answer.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shlex
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import trustme

from tests.helpers import free_port, require

SUPERUSER = "postgres"
APP_USER = "app"
MONITOR_USER = "monitor"


def _as_postgres(command: list[str]) -> list[str]:
    """Server tools refuse to run as root: run them as the ``postgres`` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _owned_tempdir(prefix: str) -> Path:
    """A temporary directory the server's user owns (pytest's tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)


def _run(command: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


@dataclass
class PgServer:
    """One PostgreSQL server started by the tests."""

    bindir: Path
    base: Path  # owned by postgres: data/, the log, the socket, certificates
    port: int
    password: str  # the superuser's
    settings: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)  # user -> password
    ca_file: str | None = None  # the CA that signed the server certificate, when TLS is on

    host = "127.0.0.1"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def dsn(self, user: str = SUPERUSER, password: str | None = None, database: str = "postgres", **query: str) -> str:
        """A DSN; the user's own password unless ``password`` is given ("" for none)."""
        secret = self.passwords.get(user, "") if password is None else password
        auth = f"{user}:{secret}@" if secret else f"{user}@"
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"postgresql://{auth}{self.host}:{self.port}/{database}" + (f"?{params}" if params else "")

    def start(self) -> None:
        options = [f"-p {self.port}", f"-k {self.base}", "-c listen_addresses=127.0.0.1", "-c fsync=off"]
        options += [f"-c {key}={shlex.quote(value)}" for key, value in self.settings.items()]
        pg_ctl = str(self.bindir / "pg_ctl")
        _run(
            _as_postgres(
                [pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", " ".join(options), "start"]
            )
        )

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        self.thaw()  # a frozen postmaster would never stop
        pg_ctl = str(self.bindir / "pg_ctl")
        _run(_as_postgres([pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"]))

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def freeze(self) -> None:
        """SIGSTOP the postmaster: the kernel still accepts TCP connections, nobody answers them."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.running():
            os.kill(self.pid, signal.SIGCONT)

    def sql(self, statement: str, user: str = SUPERUSER) -> str:
        """Run SQL with psql (no TLS); returns the unaligned output."""
        psql = str(self.bindir / "psql")
        command = [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port)]
        command += ["-U", user, "-d", "postgres", "-c", statement]
        return _run(command, env={"PGPASSWORD": self.passwords[user], "PGSSLMODE": "disable"}, timeout=60).strip()

    def wait_sql(self, statement: str, expected: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        got = ""
        while time.monotonic() < deadline:
            got = self.sql(statement)
            if got == expected:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{statement!r} gave {got!r}, not {expected!r}, after {timeout}s")

    def destroy(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def _bindir() -> Path:
    return Path(require("initdb")).resolve().parent


def make_primary(settings: dict[str, str] | None = None, tls: bool = False) -> PgServer:
    """initdb (scram-sha-256, password file), start, and create the ``app`` and ``monitor`` logins."""
    bindir = _bindir()
    require("pg_ctl")
    require("psql")
    base = _owned_tempdir("prober-pg-")
    server = PgServer(bindir, base, free_port(), secrets.token_urlsafe(12), dict(settings or {}))
    try:
        pwfile = base / "superuser.pw"
        pwfile.write_text(server.password + "\n")
        _chown(pwfile)
        initdb = [str(bindir / "initdb"), "-D", str(server.data), "-U", SUPERUSER, "--auth=scram-sha-256"]
        _run(_as_postgres([*initdb, f"--pwfile={pwfile}", "--no-sync", "--locale=C", "--encoding=UTF8"]))
        pwfile.unlink()
        if tls:
            ca = trustme.CA()
            leaf = ca.issue_cert("127.0.0.1", "localhost")
            for name, blob in (("server.crt", leaf.cert_chain_pems[0]), ("server.key", leaf.private_key_pem)):
                blob.write_to_path(str(base / name))
                _chown(base / name)
                os.chmod(base / name, 0o600)
            ca.cert_pem.write_to_path(str(base / "ca.crt"))
            os.chmod(base / "ca.crt", 0o644)
            server.ca_file = str(base / "ca.crt")
            server.settings.update(
                ssl="on", ssl_cert_file=str(base / "server.crt"), ssl_key_file=str(base / "server.key")
            )
        server.passwords = {SUPERUSER: server.password}
        server.start()
        server.passwords[APP_USER] = secrets.token_urlsafe(12)
        server.passwords[MONITOR_USER] = secrets.token_urlsafe(12)
        server.sql(
            f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{server.passwords[APP_USER]}';"
            f"CREATE ROLE {MONITOR_USER} LOGIN PASSWORD '{server.passwords[MONITOR_USER]}' IN ROLE pg_monitor;"
            f"CREATE TABLE ticks (n bigserial PRIMARY KEY, at timestamptz DEFAULT now());"
            f"GRANT SELECT ON ticks TO {APP_USER};"
        )
    except BaseException:
        server.destroy()
        raise
    return server


def make_replica(primary: PgServer) -> PgServer:
    """``pg_basebackup -R -X stream`` from ``primary``, started on a port of its own, streaming."""
    bindir = primary.bindir
    require("pg_basebackup")
    base = _owned_tempdir("prober-pg-replica-")
    server = PgServer(bindir, base, free_port(), primary.password, passwords=dict(primary.passwords))
    try:
        source = f"host={primary.host} port={primary.port} user={SUPERUSER} password={primary.password} sslmode=disable"
        _run(
            _as_postgres(
                [
                    str(bindir / "pg_basebackup"),
                    "-d",
                    source,
                    "-D",
                    str(server.data),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                ]
            )
        )
        server.start()
        server.wait_sql("SELECT status FROM pg_stat_wal_receiver", "streaming")
    except BaseException:
        server.destroy()
        raise
    return server


def caught_up(primary: PgServer, replica: PgServer, timeout: float = 30.0) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    lsn = primary.sql("SELECT pg_current_wal_lsn()")
    replica.wait_sql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn", "t", timeout)


@pytest.fixture(scope="session", name="pg_primary")
def pg_primary_fixture() -> Iterator[PgServer]:
    server = make_primary(tls=True)
    yield server
    server.destroy()


@pytest.fixture(scope="session", name="pg_replica")
def pg_replica_fixture(pg_primary: PgServer) -> Iterator[PgServer]:
    server = make_replica(pg_primary)
    yield server
    server.destroy()


@pytest.fixture(scope="session", name="pg_small")
def pg_small_fixture() -> Iterator[PgServer]:
    server = make_primary({"max_connections": "6", "superuser_reserved_connections": "1"})
    yield server
    server.destroy()


@pytest.fixture(name="pg_scratch")
def pg_scratch_fixture() -> Iterator[PgServer]:
    server = make_primary()
    yield server
    server.destroy()


# --- hostile fakes ---------------------------------------------------------------------------------

SSL_REQUEST = 80877103
PROTOCOL_3 = 196608


def _message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _error(severity: str, sqlstate: str, text: str, detail: str) -> bytes:
    fields = b"".join(
        code + value.encode() + b"\0"
        for code, value in ((b"S", severity), (b"V", severity), (b"C", sqlstate), (b"M", text), (b"D", detail))
    )
    return _message(b"E", fields + b"\0")


async def _read_startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the startup packet, answering an SSLRequest with 'N' (no TLS here) first."""
    while True:
        (length,) = struct.unpack("!i", await reader.readexactly(4))
        body = await reader.readexactly(length - 4)
        (code,) = struct.unpack("!i", body[:4])
        if code == SSL_REQUEST:
            writer.write(b"N")
            await writer.drain()
            continue
        return


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    kind = await reader.readexactly(1)
    (length,) = struct.unpack("!i", await reader.readexactly(4))
    return kind, await reader.readexactly(length - 4)


FakeMode = Literal[
    "close-after-ssl-answer",
    "echo-password-in-auth-error",
    "echo-password-in-query-error",
    "silent-after-auth",
    "huge-message",
]
HUGE_MESSAGE = 2**30  # what the "huge-message" fake announces: a message of 1 GiB


@dataclass
class FakePostgres:
    """A fake server on a loopback port; ``received`` keeps the passwords it was sent."""

    mode: FakeMode
    port: int = 0
    received: list[str] = field(default_factory=list)
    sent: int = 0  # bytes of the huge message actually sent
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self.handlers.add(task)
        try:
            if self.mode == "close-after-ssl-answer":
                await reader.readexactly(8)  # the SSLRequest
                writer.write(b"N")
                await writer.drain()
                await reader.read(1)  # the startup packet arrives; hang up in the middle of the handshake
                writer.transport.abort()
                return
            await _read_startup(reader, writer)
            if self.mode == "huge-message":  # announce a 1 GiB message, then send it as fast as it is taken
                writer.write(b"R" + struct.pack("!i", HUGE_MESSAGE))
                piece = bytes(1 << 20)
                while self.sent < HUGE_MESSAGE:
                    writer.write(piece)
                    await writer.drain()
                    self.sent += len(piece)
                return
            writer.write(_message(b"R", struct.pack("!i", 3)))  # AuthenticationCleartextPassword
            await writer.drain()
            kind, body = await _read_message(reader)
            password = body.rstrip(b"\0").decode(errors="replace") if kind == b"p" else ""
            self.received.append(password)
            if self.mode == "echo-password-in-auth-error":
                said = f"password authentication failed: got {password!r}"
                writer.write(_error("FATAL", "28P01", said, f"the password was {password}"))
                await writer.drain()
                return
            writer.write(_message(b"R", struct.pack("!i", 0)))  # AuthenticationOk
            for name, value in (
                ("server_version", f"15.0 ({password})"),
                ("client_encoding", "UTF8"),
                ("server_encoding", "UTF8"),
                ("integer_datetimes", "on"),
                ("standard_conforming_strings", "on"),
                ("DateStyle", "ISO, MDY"),
            ):
                writer.write(_message(b"S", name.encode() + b"\0" + value.encode() + b"\0"))
            writer.write(_message(b"K", struct.pack("!ii", 4242, 1234)))
            writer.write(_message(b"Z", b"I"))
            await writer.drain()
            if self.mode == "silent-after-auth":
                while True:  # reads every query, answers none
                    await _read_message(reader)
            failed = False  # an error was sent for the current extended-protocol cycle
            while True:
                kind, _body = await _read_message(reader)
                if kind == b"X":
                    return
                if kind in (b"H", b"S") and not failed:  # Flush or Sync: whatever was asked fails, echoing
                    writer.write(_error("ERROR", "XX000", f"cannot run this for {password}", f"password={password}"))
                    failed = True
                if kind == b"S":
                    writer.write(_message(b"Z", b"I"))
                    failed = False
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def fake_postgres(mode: FakeMode) -> AsyncIterator[FakePostgres]:
    fake = FakePostgres(mode)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = int(server.sockets[0].getsockname()[1])
    try:
        yield fake
    finally:
        server.close()
        for writer in list(fake.writers):
            writer.transport.abort()  # handlers still reading see the end of the stream and return
        await asyncio.gather(*fake.handlers, return_exceptions=True)
        await server.wait_closed()
