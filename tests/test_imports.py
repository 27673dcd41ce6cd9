"""Database drivers, protocol libraries and cryptography are imported only by the kinds that use them (idle
memory: a daemon probing HTTP endpoints does not carry asyncpg, redis-py, pymongo, minio-py, urllib3,
clickhouse-connect, dnspython, grpclib (with h2 and protobuf) or cryptography). Each case runs in a fresh
interpreter, the only place where ``sys.modules`` tells the truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prober.probes import KINDS
from tests.helpers import ROOT, free_port

HEAVY = (
    "asyncpg",
    "redis",
    "pymongo",
    "minio",
    "urllib3",
    "clickhouse_connect",
    "cryptography",
    "dns",
    "grpclib",
    "h2",
    "google.protobuf",
)
DRIVERS = {
    "postgres": "asyncpg",
    "redis": "redis",
    "bullmq": "redis",  # BullMQ is spoken through redis-py, as the redis kind speaks it
    "mongodb": "pymongo",
    "minio": "minio",
    "clickhouse": "clickhouse_connect",
    "dns": "dns",
    "grpc": "grpclib",
}
DRIVERLESS = {"http", "tcp", "tls", "websocket", "file"}  # sockets, aiohttp, os (file), cryptography on first TLS use


def test_every_kind_has_an_import_case() -> None:
    """A kind added to the registry must say here which library it loads (and get a case below)."""
    assert set(DRIVERS) | DRIVERLESS == set(KINDS)
    assert not set(DRIVERS) & DRIVERLESS


# Loads the config (argv[1]) and the daemon's modules, reports which of the modules named in argv[3:] are
# loaded; with argv[2] == "run", runs each target's probe once (failures expected: nothing listens) and
# reports again.
SCRIPT = """
import asyncio, json, sys

def loaded():
    return sorted(name for name in sys.argv[3:] if name in sys.modules)

from prober import config
cfg = config.load_file(sys.argv[1], environ={})
import prober.daemon, prober.scheduler, prober.server
report = {"kinds": sorted({t.kind for t in cfg.targets}), "after_load": loaded()}
if sys.argv[2] == "run":
    from prober.errors import ProbeFailure
    from prober.probes import PROBES, ProbeContext

    async def run_all():
        ctx = ProbeContext()
        try:
            for target in cfg.targets:
                try:
                    await PROBES[target.kind](target, ctx)
                except ProbeFailure:
                    pass
        finally:
            await ctx.close()

    asyncio.run(run_all())
    report["after_run"] = loaded()
print(json.dumps(report))
"""


def _report(tmp_path: Path, targets: str, mode: str = "load") -> dict[str, Any]:
    path = tmp_path / "prober.yaml"
    path.write_text(f"defaults:\n  interval: 5s\n  timeout: 2s\ntargets:\n{targets}", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path), mode, *HEAVY],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_driverless_config_imports_no_driver(tmp_path: Path) -> None:
    port = free_port()
    targets = (
        "  - {name: web, kind: http, url: 'https://127.0.0.1:1/health'}\n"
        "  - {name: port, kind: tcp, address: '127.0.0.1:1'}\n"
        "  - {name: cert, kind: tls, address: '127.0.0.1:1'}\n"
        f"  - {{name: ws, kind: websocket, url: 'ws://127.0.0.1:{port}/'}}\n"
        f"  - {{name: sio, kind: websocket, url: 'ws://127.0.0.1:{port}/', protocol: socketio}}\n"
    )
    report = _report(tmp_path, targets, mode="run")
    assert report["kinds"] == ["http", "tcp", "tls", "websocket"]
    assert report["after_load"] == []
    assert report["after_run"] == []  # cryptography comes only with a certificate to read


def test_a_file_target_imports_no_driver_when_it_runs(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "db.dump").write_bytes(b"dump")
    report = _report(tmp_path, f"  - {{name: backups, kind: file, path: '{backups}/*.dump'}}\n", mode="run")
    assert report["kinds"] == ["file"]
    assert report["after_load"] == [] and report["after_run"] == []


def _target(kind: str, port: int) -> str:
    address = f"127.0.0.1:{port}"
    fields = {
        "postgres": f"dsn: 'postgresql://probe@{address}/db?sslmode=disable'",
        "redis": f"url: 'redis://{address}'",
        "bullmq": f"url: 'redis://{address}', queues: [email]",
        "mongodb": f"uri: 'mongodb://{address}/'",
        # health endpoints off: the S3 part (minio-py in a worker thread) is what runs
        "minio": f"endpoint: 'http://{address}', bucket: probes, access_key: k, secret_key: s, health_endpoints: false",
        "clickhouse": f"url: 'http://{address}'",
        "dns": f"query_name: app.example, server: '{address}', transport: tcp",
        "grpc": f"address: '{address}'",
    }[kind]
    return f"  - {{name: db, kind: {kind}, {fields}}}\n"


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_a_database_kind_loads_only_its_own_driver(tmp_path: Path, kind: str) -> None:
    report = _report(tmp_path, _target(kind, free_port()), mode="run")
    assert report["kinds"] == [kind]
    others = {driver for driver in DRIVERS.values() if driver != DRIVERS[kind]}
    # mongodb and minio validate the URI / bucket name with their driver: loading may import it, no other
    assert others.isdisjoint(report["after_load"])
    if kind in ("postgres", "redis", "bullmq", "clickhouse", "dns", "grpc"):
        assert DRIVERS[kind] not in report["after_load"]
    assert DRIVERS[kind] in report["after_run"]
    assert others.isdisjoint(report["after_run"])
