"""The entry point every *_svc runner shares: settings, logging, tracing, app, metrics, run until signalled.

The process's metrics registry and tracer provider are built here and passed to
the service; its metrics port (MYKO_METRICS_PORT) and its status reports
(MYKO_STATUS_INTERVAL_MS; myko/service_status.py) are started here too, before the service, so a
service that is slow to catch up can already be watched doing it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Protocol, TypeVar

from myko import catalogue
from myko.app import App, load_app
from myko.errors import ConfigError, MykoError
from myko.lifecycle import Lifecycle
from myko.live_service import LiveService
from myko.logs import configure_logging
from myko.metrics import Metrics, MetricsServer
from myko.server import GrpcServer, run_until_signalled
from myko.service_status import KafkaStatusSink, RepoStatusSink, StatusReporter, StatusSink
from myko.settings import KafkaServiceSettings, ServerSettings
from myko.trace_export import build_tracing
from myko.tracing import Tracing

S = TypeVar("S", bound=ServerSettings)
S_contra = TypeVar("S_contra", bound=ServerSettings, contravariant=True)


class Service(Protocol):
    @property
    def grpc(self) -> GrpcServer: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Build(Protocol[S_contra]):
    """A service's constructor (or a function making one)."""

    def __call__(self, settings: S_contra, app: App, /, *, metrics: Metrics, tracing: Tracing) -> Service: ...


def _status_sink(settings: ServerSettings, service: Service) -> StatusSink | None:
    """Where this service's status reports go; None for a service that does not report."""
    if isinstance(settings, KafkaServiceSettings):
        return KafkaStatusSink(settings.kafka, client_id=f"{settings.instance_id}.status")
    if isinstance(service, LiveService):
        # No Kafka access (docs/security.md): repo_svc, which it mirrors, writes it.
        return RepoStatusSink(service.settings.repo_addr, service.transport, keepalive=settings.keepalive)
    return None


def run(settings_cls: type[S], build: Build[S]) -> None:
    try:
        settings = settings_cls.from_env()  # type: ignore[attr-defined]
        name = catalogue.service(settings.service).runner
        configure_logging(service=name, level=settings.log_level, fmt=settings.log_format)
        app = load_app(settings.app_module)
        # The one tracer provider of this process, passed down; never a global.
        tracing = build_tracing(settings.tracing, service=name, instance_id=settings.instance_id)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    async def main() -> None:
        metrics = Metrics.for_process(settings.service, settings.instance_id)
        # Built inside the loop: grpc.aio servers bind to the loop that creates them.
        service = build(settings, app, metrics=metrics, tracing=tracing)
        extras: list[Lifecycle] = []
        if settings.metrics_port:
            extras.append(MetricsServer(metrics, settings.host, settings.metrics_port))
        sink = _status_sink(settings, service)
        if sink is not None and settings.status_interval_ms:
            extras.append(
                StatusReporter(settings, sink, metrics=metrics, serving=lambda: service.grpc.serving)
            )

        async def start() -> None:
            for extra in extras:
                await extra.start()
            await service.start()

        async def stop() -> None:
            # The status reporter first: its last report says the instance stopped cleanly.
            for extra in reversed(extras):
                await extra.stop()
            await service.stop()

        await run_until_signalled(start, stop)

    try:
        asyncio.run(main())
    except MykoError as exc:
        logging.getLogger(settings.service).error("%s stopped: %s", settings.service, exc)
        raise SystemExit(1) from None
    finally:
        tracing.shutdown()
