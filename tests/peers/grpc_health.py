"""Real gRPC servers (grpcio, the reference implementation's C core) on loopback, each with
grpcio-health-checking's own ``HealthServicer`` whose statuses a test switches while the prober runs.

``python -m tests.peers.grpc_health PORT`` serves one health service (status SERVING) until killed: the
benchmarks' peer.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.helpers import free_port

TOKEN = "grpc-s3cr3t-token"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _RequireToken(grpc.ServerInterceptor):  # type: ignore[misc]
    """Every call without ``authorization: Bearer TOKEN`` ends UNAUTHENTICATED."""

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        metadata = dict(details.invocation_metadata)
        if metadata.get("authorization") == f"Bearer {TOKEN}":
            return continuation(details)

        def deny(_request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

        return grpc.unary_unary_rpc_method_handler(deny)


class _SlowHealth(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Answers SERVING after ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def Check(self, _request: Any, _context: Any) -> Any:
        time.sleep(self.delay)
        return health_pb2.HealthCheckResponse(status=SERVING)


class GrpcServer:
    """One grpcio server on its own port. ``health`` is None for a server without the health service."""

    def __init__(
        self,
        with_health: bool = True,
        token: bool = False,
        tls: tuple[bytes, bytes] | None = None,
        slow: float | None = None,
    ) -> None:
        interceptors = [_RequireToken()] if token else []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
        self.health: health.HealthServicer | None = None
        if slow is not None:
            health_pb2_grpc.add_HealthServicer_to_server(_SlowHealth(slow), self.server)
        elif with_health:
            self.health = health.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
            self.health.set("", SERVING)
        self.port = free_port()
        if tls is None:
            self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        else:
            credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])  # (key, chain)
            self.server.add_secure_port(f"127.0.0.1:{self.port}", credentials)
        self.server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, service: str, status: Any) -> None:
        assert self.health is not None
        self.health.set(service, status)

    def stop(self) -> None:
        self.server.stop(grace=None).wait(5)


def serve_forever(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    servicer.set("", SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    threading.Event().wait()


if __name__ == "__main__":
    serve_forever(int(sys.argv[1]))
