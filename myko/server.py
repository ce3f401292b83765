"""Builds a grpc.aio server the Myko way: health, reflection, limits, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import _async as health_aio  # health.aio, spelt so mypy finds it
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from myko import catalogue
from myko.metrics import Metrics
from myko.server_spans import ServerSpans
from myko.settings import ServerSettings
from myko.tls import Transport
from myko.tracing import Tracing

log = logging.getLogger(__name__)

Register = Callable[[grpc.aio.Server], None]

# The largest reply (a full query result) a server sends; Myko's clients accept as much.
MAX_REPLY_BYTES = 64 * 1024 * 1024
# How replies leave every server. bench/transfer_floor.py's bare server takes the same,
# so its floor is this transport's.
TRANSFER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_REPLY_BYTES),
]


class GrpcServer:
    """A gRPC server whose health says NOT_SERVING until `set_serving()`.

    It listens on the service's port, secured as the catalogue says that port
    is used (myko/tls.py: internal = client certificates required when TLS is
    on), and, with TLS on and `internal_listen` given, on an internal port too.
    Both serve the same methods; handlers tell them apart by the caller's
    certificate (`Transport.caller`).
    """

    def __init__(
        self,
        settings: ServerSettings,
        *,
        service_names: Sequence[str],
        register: Sequence[Register],
        transport: Transport | None = None,
        internal_listen: str | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.transport = transport or Transport(settings.tls)
        self.service_names = list(service_names)
        self.metrics = metrics if metrics is not None else Metrics()
        # What health says now (myko_service_serving, the status report).
        self.serving = False
        limit = settings.max_message_bytes
        self.server = grpc.aio.server(
            interceptors=[ServerSpans(tracing)] if tracing is not None and tracing.enabled else None,
            options=[
                ("grpc.max_receive_message_length", limit),
                *TRANSFER_OPTIONS,
                # A port already in use must fail the start, not be shared
                # silently with another server (gRPC's default on Linux).
                ("grpc.so_reuseport", 0),
                # Accept the clients' keepalive pings and ping them back (see there).
                *settings.keepalive.server_options(),
                # Calls gRPC holds until this process picks them up. gRPC's
                # default (1,000, then dropping at random up to 3,000) ended
                # bursts of new Watches with CANCELLED and no log line while
                # the event loop was busy starting evaluations (issue 12,
                # finding 6); equal soft and hard limits never drop below it.
                ("grpc.server.max_pending_requests", settings.max_streams),
                ("grpc.server.max_pending_requests_hard_limit", settings.max_streams),
            ],
        )
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        for reg in register:
            reg(self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        spec = catalogue.service(settings.service)
        self.port = self.transport.add_port(self.server, settings.listen, internal=spec.internal)
        if self.port == 0:
            raise OSError(f"cannot listen on {settings.listen}")
        # Opened with TLS only: without it the one plaintext port serves everyone.
        self.internal_port: int | None = None
        if internal_listen is not None and self.transport.enabled:
            self.internal_port = self.transport.add_port(self.server, internal_listen, internal=True)
            if self.internal_port == 0:
                raise OSError(f"cannot listen on {internal_listen}")

    async def start(self) -> None:
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        log.info(
            "%s listening on %s:%d%s",
            self.settings.service,
            self.settings.host,
            self.port,
            f" (internal, client certificates: {self.internal_port})" if self.internal_port else "",
        )

    async def set_serving(self, serving: bool = True) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._set(status)

    async def _set(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        self.serving = status == health_pb2.HealthCheckResponse.SERVING
        self.metrics.serving(self.serving)
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        await self._set(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace_s)


async def run_until_signalled(
    start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    """Start a service, then stop it cleanly on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        await start()
        await done.wait()
    finally:
        await stop()
