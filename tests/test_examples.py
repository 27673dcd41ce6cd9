"""config/examples/: one config per application stack of the readiness reviews (Vizora: NestJS + Prisma under
PM2; SimplePro: NestJS with a MongoDB replica set and Redis Sentinel; MediaNest: Node + Prisma), each passing
check-config with its env file, and each run against real local servers where the kind has one here
(PostgreSQL with the Prisma URL, Redis by URL, by REDIS_HOST variables and through real Sentinels; MongoDB's
stand-in nx-27017), seeing the states each review says the stack should have."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.helpers import ROOT, free_port, run_cli
from tests.peers import redis as redis_peers
from tests.peers.mongodb import NxServer, nx_server
from tests.peers.postgres import APP_USER, PgServer, make_primary
from tests.peers.redis import PASSWORD as REDIS_PASSWORD
from tests.peers.redis import SENTINEL_PASSWORD, SentinelGroup, Servers

EXAMPLES = ROOT / "config" / "examples"
redis_servers = redis_peers.redis_servers
sentinel_group = redis_peers.sentinel_group
TMDB_KEY = "tmdb-Key-7d1e55aa"

# what the applications answer (their health endpoints, as the reviews describe them)
ROUTES: dict[str, tuple[int, dict[str, Any]]] = {
    "/api/health": (200, {"status": "ok"}),
    "/api/health/live": (200, {"status": "ok"}),
    "/api/health/ready": (200, {"status": "ok", "checks": {"database": {"status": "ok"}}}),
    "/internal/metrics": (200, {}),
    "/health": (200, {"status": "healthy", "service": "backend", "uptime": 12.5}),
    "/": (200, {}),
    "/3/configuration": (200, {"images": {"base_url": "http://image.tmdb.org/t/p/"}}),
}


class _App(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        status, body = ROUTES.get(path, (404, {"status": "not found"}))
        if path == "/3/configuration" and f"api_key={TMDB_KEY}" not in query:
            status, body = 401, {"status_message": "Invalid API key"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def app() -> Iterator[str]:
    """The application's own HTTP services, on one loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def postgres() -> Iterator[PgServer]:
    server = make_primary()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def nx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NxServer]:
    with nx_server(tmp_path_factory.mktemp("nx-examples")) as server:
        yield server


def once(example: str, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    done = run_cli("once", "--json", "-c", str(EXAMPLES / f"{example}.yaml"), env={"PROBER_CONFIG": "", **env})
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), done.stdout + done.stderr


def states(status: dict[str, Any]) -> dict[str, str]:
    return {name: check["status"] for name, check in status["checks"].items()}


def closed() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.mark.parametrize("example", ["vizora", "simplepro", "medianest"])
def test_each_example_passes_check_config_with_its_env_file(example: str) -> None:
    done = run_cli(
        "check-config", "-c", str(EXAMPLES / f"{example}.yaml"), "--env-file", str(EXAMPLES / f"{example}.env")
    )
    assert done.returncode == 0, done.stderr
    assert "OK," in done.stdout


def test_every_example_has_an_env_file_and_a_test() -> None:
    yamls = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    assert yamls == sorted(p.stem for p in EXAMPLES.glob("*.env")) == ["medianest", "simplepro", "vizora"]


def test_vizora(app: str, postgres: PgServer, redis_servers: Servers) -> None:
    redis = redis_servers.server()
    env = {
        "MIDDLEWARE_URL": app,
        "REALTIME_URL": app,
        "WEB_URL": app,
        "DATABASE_URL": postgres.dsn(APP_USER, schema="public", connection_limit="10", pool_timeout="20"),
        "REDIS_URL": redis.url(),
        "MONGODB_URL": f"mongodb://{closed()}/vizora",  # MongoDB, MinIO and ClickHouse are not running here
        "MINIO_ENDPOINT": "127.0.0.1",
        "MINIO_PORT": closed().rsplit(":", 1)[1],
        "MINIO_ACCESS_KEY": "minioadmin",
        "MINIO_SECRET_KEY": "minio-Secret-k3y",
        "CLICKHOUSE_URL": f"http://default@{closed()}/vizora",
        "PUBLIC_HOST": "127.0.0.1",
    }
    code, status, _ = once("vizora", env)
    found = states(status)
    assert found["postgres"] == found["redis"] == found["middleware-ready"] == found["realtime"] == "ok", found
    assert found["minio"] == found["mongodb"] == found["clickhouse"] == "unhealthy"
    # the review: MinIO, MongoDB and ClickHouse down degrade the platform, they do not take it down
    assert (code, status["status"]) == (1, "degraded")

    redis.stop()  # "Redis is optional for basic functionality": degraded
    code, status, _ = once("vizora", env)
    assert (states(status)["redis"], status["status"], code) == ("unhealthy", "degraded", 1)

    postgres.stop()  # the database is critical: unhealthy
    code, status, _ = once("vizora", env)
    assert (states(status)["postgres"], status["status"], code) == ("unhealthy", "unhealthy", 2)


def test_vizora_missing_prisma_schema_is_unhealthy(app: str, postgres: PgServer) -> None:
    env = {
        "MIDDLEWARE_URL": app,
        "REALTIME_URL": app,
        "WEB_URL": app,
        "DATABASE_URL": postgres.dsn(APP_USER, schema="vizora", connection_limit="10"),
        "REDIS_URL": f"redis://{closed()}",
        "MONGODB_URL": f"mongodb://{closed()}/vizora",
        "MINIO_ACCESS_KEY": "minioadmin",
        "MINIO_SECRET_KEY": "minio-Secret-k3y",
        "MINIO_PORT": closed().rsplit(":", 1)[1],
        "PUBLIC_HOST": "127.0.0.1",
    }
    code, status, _ = once("vizora", env)
    assert status["checks"]["postgres"]["reason"] == "assertion" and code == 2
    assert "schema 'vizora' does not exist" in status["checks"]["postgres"]["message"]


def test_simplepro(app: str, nx: NxServer, sentinel_group: SentinelGroup) -> None:
    first, second, third = sentinel_group.addresses()
    env = {
        "API_URL": app,
        "WEB_URL": app,
        # nx-27017 stands in for the replica set (no MongoDB server can be installed here): one member
        "MONGODB_URI": f"{nx.uri.rstrip('/')}/simplepro_prod?authSource=admin&retryWrites=true&w=majority",
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "REDIS_SENTINEL_1": first,
        "REDIS_SENTINEL_2": second,
        "REDIS_SENTINEL_3": third,
        "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,  # the test Sentinels have one
        "MINIO_ENDPOINT": "127.0.0.1",
        "MINIO_PORT": closed().rsplit(":", 1)[1],
        "MINIO_ROOT_USER": "minioadmin",
        "MINIO_ROOT_PASSWORD": "simplepro-Minio-pw",
    }
    code, status, _ = once("simplepro", env)
    found = states(status)
    assert found["mongodb"] == found["redis"] == found["api"] == "ok", json.dumps(status["checks"])
    assert (found["minio"], status["status"], code) == ("unhealthy", "degraded", 1)  # documents: degraded

    code, status, _ = once("simplepro", {**env, "MONGODB_URI": f"mongodb://{closed()}/simplepro_prod"})
    assert (states(status)["mongodb"], status["status"], code) == ("unhealthy", "unhealthy", 2)  # critical


def test_medianest(app: str, postgres: PgServer, redis_servers: Servers) -> None:
    redis = redis_servers.server()
    env = {
        "BACKEND_URL": app,
        "FRONTEND_URL": app,
        "DATABASE_URL": postgres.dsn(APP_USER, schema="public", connection_limit="10"),
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis.port),
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "TMDB_API_URL": f"{app}/3",
        "TMDB_API_KEY": TMDB_KEY,
    }
    code, status, output = once("medianest", env)
    assert (states(status), status["status"], code) == (
        {"backend": "ok", "frontend": "ok", "postgres": "ok", "redis": "ok", "tmdb": "ok"},
        "ok",
        0,
    )
    assert TMDB_KEY not in output  # the key in the URL's query string is masked

    redis.stop()  # sessions live in Redis: critical
    code, status, output = once("medianest", env)
    assert (states(status)["redis"], status["status"], code) == ("unhealthy", "unhealthy", 2)
    code, status, output = once("medianest", {**env, "TMDB_API_KEY": "wrong-key-1"})
    assert states(status)["tmdb"] == "unhealthy" and "wrong-key-1" not in output
