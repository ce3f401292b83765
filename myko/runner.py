"""The entry point every *_svc runner shares: settings, logging, app, metrics, run until signalled.

The process's metrics registry is built here and passed to the service; its
metrics port (MYKO_METRICS_PORT) and its status reports (MYKO_STATUS_INTERVAL_MS)
are started here too, before the service, so a service that is slow to catch
up can already be watched doing it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Protocol, TypeVar

from myko.app import App, load_app
from myko.errors import ConfigError, MykoError
from myko.lifecycle import Lifecycle
from myko.metrics import Metrics, MetricsServer
from myko.server import GrpcServer, configure_logging, run_until_signalled
from myko.service_status import StatusReporter
from myko.settings import KafkaServiceSettings, ServerSettings

S = TypeVar("S", bound=ServerSettings)


class Service(Protocol):
    @property
    def grpc(self) -> GrpcServer: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def run(settings_cls: type[S], build: Callable[[S, App, Metrics], Service]) -> None:
    try:
        settings = settings_cls.from_env()  # type: ignore[attr-defined]
        configure_logging(settings.log_level)
        app = load_app(settings.app_module)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    async def main() -> None:
        metrics = Metrics.for_process(settings.service, settings.instance_id)
        # Built inside the loop: grpc.aio servers bind to the loop that creates them.
        service = build(settings, app, metrics)
        extras: list[Lifecycle] = []
        if settings.metrics_port:
            extras.append(MetricsServer(metrics, settings.host, settings.metrics_port))
        # Only a service with Kafka access writes its status (query_svc and report_svc
        # have none: docs/security.md); theirs is in Prometheus.
        if isinstance(settings, KafkaServiceSettings) and settings.status_interval_ms:
            extras.append(StatusReporter(settings, metrics=metrics, serving=lambda: service.grpc.serving))

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
