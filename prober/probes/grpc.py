"""``grpc``: the standard health protocol, ``grpc.health.v1.Health/Check``, answers SERVING.

One fresh HTTP/2 connection per run with grpclib (asyncio, pure Python over h2; chosen over grpcio's aio
API by measurement, bench/KINDS.md), on a socket connected by :mod:`._net`, so the phases are ``dns``
(host names only), ``connect``, ``tls`` (with ``tls`` or ``ca_file``) and ``check`` (the call). The
call's gRPC deadline is what is left of the run's time.

The two health messages are built in a descriptor pool of this module's own (from their definition in
grpc/health/v1/health.proto) rather than imported from a generated module: grpclib and
grpcio-health-checking each register ``grpc.health.v1`` in protobuf's default pool, and a process that
loads both fails. ``NOT_FOUND`` is how a server's ``Check`` says the service is unknown (the health
protocol's words), observed as ``SERVICE_UNKNOWN``.

grpclib, h2 and protobuf are imported on first use, so a config without grpc targets does not load them.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, SecretStr

from prober.errors import ProbeFailure, Words, describe, driver_errors, shorten
from prober.judge import Observable, Observation, Rule, unhealthy_if
from prober.models import Address, ReadableFile, TargetBase, format_duration, split_address
from prober.probes import _net
from prober.probes._context import ProbeContext
from prober.probes._kit import Run
from prober.probes._tls import cert_facts, peer_cert_der
from prober.status import Reason

if TYPE_CHECKING:
    import ssl

CHECK = "/grpc.health.v1.Health/Check"
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_KEY = re.compile(r"^[0-9a-z_.-]+$")  # gRPC's ASCII metadata keys (lower case)


def _check_metadata(metadata: dict[str, SecretStr]) -> dict[str, SecretStr]:
    for key, value in metadata.items():
        if not _KEY.match(key) or key.endswith("-bin") or key.startswith("grpc-"):
            raise ValueError(f"{key!r} is not a usable metadata key (lower-case ASCII, not grpc-*, not *-bin)")
        if not all(" " <= c <= "~" for c in value.get_secret_value()):
            raise ValueError(f"the value of metadata {key!r} must be printable ASCII")
    return metadata


class GrpcTarget(TargetBase):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("bearer_token",)

    kind: Literal["grpc"]
    address: Address
    service: str = ""
    tls: bool = False
    ca_file: ReadableFile | None = None  # implies tls
    server_name: str | None = None  # default: the host of address
    metadata: Annotated[dict[str, SecretStr], AfterValidator(_check_metadata)] = Field(default_factory=dict)
    bearer_token: SecretStr | None = None  # sent as `authorization: Bearer ...`

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None

    def where(self) -> str:
        scheme = "grpcs" if self.uses_tls else "grpc"
        return f"{scheme}://{self.address} (service {self.service!r})"


MODEL = GrpcTarget

OBSERVES: dict[str, Observable] = {
    "status": Observable("string", "the serving status: SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN"),
    "service": Observable("string", "the service asked about ('' is the server as a whole)"),
    "certificate": Observable("map", "with TLS: the server certificate's facts (days_left, not_after, issuer, ...)"),
}


def _not_serving(target: GrpcTarget, values: Mapping[str, Any]) -> str | None:
    status = values["status"]
    if status == "SERVING":
        return None
    name = repr(target.service) if target.service else "the server"
    return f"health of {name}: {status}"


RULES: tuple[Rule, ...] = (unhealthy_if(_not_serving),)


# bytes one run may receive (_budget.py): the HTTP/2 preface and settings, one small HealthCheckResponse
BYTE_BUDGET = 1 * 2**20

WORDS: tuple[Words, ...] = ()  # grpclib's exception types and gRPC status codes say it all


def classify(exc: BaseException) -> ProbeFailure | None:
    """grpclib's exceptions and the call's gRPC status -> the fixed reasons."""
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

    if isinstance(exc, GRPCError):
        said = f"{exc.status.name}: {shorten(exc.message or '', 160)}".rstrip(": ")
        reason = {
            Status.UNAVAILABLE: Reason.REFUSED,
            Status.DEADLINE_EXCEEDED: Reason.TIMEOUT,
            Status.UNAUTHENTICATED: Reason.AUTH,
            Status.PERMISSION_DENIED: Reason.AUTH,
        }.get(exc.status, Reason.PROTOCOL)
        if exc.status is Status.UNIMPLEMENTED:
            return ProbeFailure(Reason.PROTOCOL, f"the server has no health service ({said})")
        return ProbeFailure(reason, f"health check failed: {said}")
    if isinstance(exc, StreamTerminatedError | ProtocolError):
        return ProbeFailure(Reason.PROTOCOL, f"not a gRPC answer: {type(exc).__name__}: {describe(exc)}")
    try:
        from h2.exceptions import H2Error
    except ImportError:  # pragma: no cover - h2 comes with grpclib
        return None
    if isinstance(exc, H2Error):
        return ProbeFailure(Reason.PROTOCOL, f"not an HTTP/2 peer: {type(exc).__name__}: {describe(exc)}")
    return None


@functools.cache
def _messages() -> tuple[Any, Any]:
    """HealthCheckRequest and HealthCheckResponse, as grpc/health/v1/health.proto defines them, in a
    descriptor pool of our own (see the module's docstring)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="prober/grpc_health_v1.proto", package="grpc.health.v1")
    proto.syntax = "proto3"
    request = proto.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    response = proto.message_type.add(name="HealthCheckResponse")
    statuses = response.enum_type.add(name="ServingStatus")
    for number, name in SERVING_STATUS.items():
        statuses.value.add(name=name, number=number)
    response.field.add(
        name="status",
        number=1,
        type=field.TYPE_ENUM,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
        label=field.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")),
    )


@functools.cache
def _channel_class() -> Any:
    """grpclib's Channel, connecting through :mod:`._net` (timed phases, the probes' own resolver)."""
    from grpclib.client import Channel

    class ProbeChannel(Channel):
        def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, server_name: str, run: Run) -> None:
            super().__init__(host, port, ssl=tls)
            self.run = run
            self.server_name = server_name
            self.peer_cert: bytes | None = None

        async def _create_connection(self) -> Any:
            sock = await _net.connect_socket(self._host, self._port, self.run.phases)
            started = time.perf_counter()
            try:
                # asyncio sets TCP_NODELAY only on sockets made with proto IPPROTO_TCP, which _net's are not:
                # without it the call's DATA frame waits for the ACK of its HEADERS frame (40 ms, delayed ACK)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                transport, protocol = await asyncio.get_running_loop().create_connection(
                    self._protocol_factory,
                    sock=sock,
                    ssl=self._ssl,
                    server_hostname=self.server_name if self._ssl else None,
                )
            except BaseException:
                sock.close()
                raise
            if self._ssl is not None:
                self.run.phases["tls"] = time.perf_counter() - started
                self.peer_cert = peer_cert_der(transport.get_extra_info("ssl_object"))
            return protocol

    return ProbeChannel


def _metadata(target: GrpcTarget) -> dict[str, str]:
    metadata = {key: value.get_secret_value() for key, value in target.metadata.items()}
    if target.bearer_token is not None:
        metadata["authorization"] = f"Bearer {target.bearer_token.get_secret_value()}"
    return metadata


async def probe(target: GrpcTarget, ctx: ProbeContext) -> Observation:
    from grpclib.client import UnaryUnaryMethod
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    request_type, response_type = _messages()
    host, port = split_address(target.address)
    run = ctx.begin(target)
    tls = ctx.ssl_context(target.ca_file, alpn=("h2",)) if target.uses_tls else None
    channel = _channel_class()(host, port, tls, target.server_name or host, run)
    step = "connecting"
    try:
        async with run.bounded(lambda: f"no answer within {format_duration(run.budget)} ({step})"):
            with driver_errors(classify):
                await channel.__connect__()
                step = f"waiting for {CHECK}"
                check = UnaryUnaryMethod(channel, CHECK, request_type, response_type)
                with run.phase("check"):
                    try:
                        reply = await check(
                            request_type(service=target.service), timeout=run.left(), metadata=_metadata(target)
                        )
                        status = SERVING_STATUS.get(reply.status, f"UNKNOWN({reply.status})")
                    except GRPCError as exc:
                        if exc.status is not Status.NOT_FOUND:
                            raise
                        status = "SERVICE_UNKNOWN"  # the health protocol's answer for an unknown service
                    except TimeoutError:  # grpclib's own end of the call's deadline (the run's)
                        raise ProbeFailure(
                            Reason.TIMEOUT, f"no answer within {format_duration(run.budget)} ({step})"
                        ) from None
    finally:
        channel.close()
    values: dict[str, Any] = {"status": status, "service": target.service}
    gauges: dict[str, float] = {}
    if channel.peer_cert is not None:
        values["certificate"] = certificate = cert_facts(channel.peer_cert)
        gauges["tls_cert_not_after_timestamp_seconds"] = certificate["not_after_timestamp"]
    name = repr(target.service) if target.service else "the server"
    return Observation(
        values, f"health of {name}: {status}", phases=run.phases, latency=sum(run.phases.values()), gauges=gauges
    )
