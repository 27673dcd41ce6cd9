"""MongoDB peers for the ``mongodb`` probe's tests. No MongoDB server can be had on this machine (no
Debian package; the npm/PyPI installers download mongod from hosts that are not reachable), so:

* ``nx-27017`` (PyPI): a MongoDB wire-protocol server over SQLite. Real process, real sockets, real
  answers to ``ping``, ``hello``, ``buildInfo``; a standalone, without SCRAM authentication.
* ``mockupdb`` (PyPI, the pymongo team's own test server): scripted ``hello`` and ``replSetGetStatus``
  answers that describe replica-set states (no primary, a member DOWN, a lagging secondary), a command
  left unanswered, and the error a real mongod sends for a wrong password (code 18). pymongo 4.20 needs
  ``maxWireVersion`` 21 and an answer to the monitor's ``ismaster`` handshake as well as to ``hello``.
* Hostile peers served by the test's own event loop: an HTTP server, random bytes, a peer that hangs up,
  one that never answers.
* A TLS front (trustme certificate) before nx-27017, which has no TLS of its own.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import trustme
from mockupdb import MockupDB

from tests.helpers import free_port, require, wait_for_port
from tests.peers.web import hello_http_server

WIRE_VERSION = 21  # MongoDB 7.0
VERSION = "7.0.14"
SET_NAME = "rs0"


# --- nx-27017: a real process answering the wire protocol ---------------------------------------------


@dataclass
class NxServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextmanager
def nx_server(directory: Path) -> Iterator[NxServer]:
    """Start ``nx-27017`` on a free loopback port with an in-memory database; stop it afterwards."""
    binary = require(str(Path(sys.executable).parent / "nx-27017"))
    port = free_port()
    log = directory / "nx-27017.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                binary,
                "--host",
                "127.0.0.1",
                "-p",
                str(port),
                "--db",
                "memory",
                "--log-file",
                str(directory / "nx-27017.log"),
                "--pid-file",
                str(directory / "nx-27017.pid"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    server = NxServer(port, process)
    try:
        wait_for_port(port, timeout=30)
        yield server
    finally:
        server.stop()


# --- mockupdb: scripted members --------------------------------------------------------------------


def optime(seconds_ago: float = 0.0) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds_ago)


def status_member(
    name: str, state: str, *, seconds_behind: float = 0.0, health: int = 1, this: bool = False
) -> dict[str, Any]:
    """One entry of replSetGetStatus.members, shaped as mongod 7.0 sends it."""
    codes = {"PRIMARY": 1, "SECONDARY": 2, "RECOVERING": 3, "UNKNOWN": 6, "ARBITER": 7, "DOWN": 8, "ROLLBACK": 9}
    member: dict[str, Any] = {
        "_id": abs(hash(name)) % 100,
        "name": name,
        "health": health,
        "state": codes[state],
        "stateStr": state,
        "optimeDate": optime(seconds_behind),
    }
    if this:
        member["self"] = True
    return member


@dataclass
class Member:
    """A scripted mongod: a MockupDB answering the handshake and the probe's commands."""

    server: MockupDB

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.address}/"

    def answer_hello(self, **fields: Any) -> None:
        reply = {
            "helloOk": True,
            "ismaster": fields.get("isWritablePrimary", False),
            "maxWireVersion": WIRE_VERSION,
            "minWireVersion": 0,
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
            "logicalSessionTimeoutMinutes": 30,
            "localTime": optime(),
            **fields,
        }
        for name in ("ismaster", "hello"):  # the monitor's handshake says ismaster, commands say hello
            self.server.autoresponds(name, reply)

    def answer_status(self, members: list[dict[str, Any]]) -> None:
        self.server.autoresponds("replSetGetStatus", {"set": SET_NAME, "myState": 1, "members": members})

    def refuse(self, command: str, code: int, code_name: str, errmsg: str) -> None:
        self.server.autoresponds(command, {"ok": 0, "code": code, "codeName": code_name, "errmsg": errmsg})


@contextmanager
def mock_member(*, answer: tuple[str, ...] = ("ping", "buildInfo"), **hello: Any) -> Iterator[Member]:
    """A MockupDB on loopback whose ``hello`` is ``hello``; it answers ``endSessions`` and the commands in
    ``answer`` (anything else is left unanswered, so the client waits)."""
    server = MockupDB(max_wire_version=WIRE_VERSION, request_timeout=int(1e6))
    server.run()
    member = Member(server)
    try:
        member.answer_hello(**hello)
        server.autoresponds("endSessions")
        if "ping" in answer:
            server.autoresponds("ping")
        if "buildInfo" in answer:
            server.autoresponds("buildInfo", version=VERSION, versionArray=[7, 0, 14, 0], gitVersion="0" * 40)
        yield member
    finally:
        server.stop()


def primary_hello(member_address: str, hosts: list[str]) -> dict[str, Any]:
    return {
        "isWritablePrimary": True,
        "secondary": False,
        "setName": SET_NAME,
        "setVersion": 1,
        "hosts": hosts,
        "primary": member_address,
        "me": member_address,
    }


def secondary_hello(member_address: str, hosts: list[str], primary: str | None) -> dict[str, Any]:
    hello: dict[str, Any] = {
        "isWritablePrimary": False,
        "secondary": True,
        "setName": SET_NAME,
        "setVersion": 1,
        "hosts": hosts,
        "me": member_address,
    }
    if primary is not None:
        hello["primary"] = primary
    return hello


# --- hostile peers ---------------------------------------------------------------------------------

Garbage = Literal["http", "random", "close", "silent"]


@asynccontextmanager
async def garbage_peer(mode: Garbage) -> AsyncIterator[int]:
    """A port where MongoDB should be, served by the test's event loop: ``http`` a real aiohttp server;
    ``random`` reads the client's first message and answers 4 KiB of seeded random bytes; ``close``
    hangs up at once; ``silent`` accepts and reads but never answers (a frozen server). Yields the port."""
    if mode == "http":
        runner, port = await hello_http_server()
        try:
            yield port
        finally:
            await runner.cleanup()
        return

    noise = random.Random(27017).randbytes(4096)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if mode == "random":
                while await reader.read(65536):
                    writer.write(noise)
                    await writer.drain()
            elif mode == "silent":
                while await reader.read(65536):
                    pass
        except OSError:
            pass
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


# --- TLS in front of nx-27017 ----------------------------------------------------------------------


@dataclass
class TlsFront:
    port: int
    ca_file: Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def tls_front(backend_port: int, directory: Path) -> AsyncIterator[TlsFront]:
    """A TLS listener (certificate for 127.0.0.1 and localhost from a fresh trustme CA) that forwards the
    decrypted stream to ``backend_port``, served by the test's event loop."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    ca_file = directory / "mongo-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend_port)
            await asyncio.gather(_pipe(reader, backend_writer), _pipe(backend_reader, writer))
        except OSError:
            writer.close()
        finally:
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    try:
        yield TlsFront(int(server.sockets[0].getsockname()[1]), ca_file)
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
