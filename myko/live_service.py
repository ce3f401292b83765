"""query_svc and report_svc: live buses over a mirror of repo_svc's state."""

from __future__ import annotations

import logging
from typing import Any

from myko import catalogue
from myko.app import App, HandlerRegistry
from myko.authentication import Authenticator
from myko.heap_trim import HeapTrimmer
from myko.lifecycle import Lifecycle
from myko.live import LiveHub
from myko.live_bus import LiveBus, register_live_bus
from myko.live_kind import LiveKind
from myko.live_streams import LiveStreams, register_live_streams
from myko.metrics import Metrics
from myko.repo import Store
from myko.repo_feed import RepoFeed
from myko.revocation import is_revoked
from myko.server import GrpcServer
from myko.settings import QuerySettings, ReportSettings
from myko.tls import Transport
from myko.tracing import Tracing, emit_span_name

log = logging.getLogger(__name__)


class LiveService(Lifecycle):
    """SERVING while its mirror of repo_svc is connected and complete."""

    def __init__(
        self,
        settings: QuerySettings | ReportSettings,
        app: App,
        *,
        kind: LiveKind,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics = metrics if metrics is not None else Metrics()
        self.tracing = tracing or Tracing.off()
        self.store = Store(
            app.entities,
            topic_prefix=settings.topic_prefix,
            indexes=app.declared_indexes,
            orders=app.declared_orders,
            keep_events=False,  # a mirror serves results, never events
            cache_entities=settings.repo_cache_entities,
        )
        self.transport = Transport(settings.tls)
        self.hub = LiveHub(
            position=lambda: self.store.watermark,
            metrics=metrics.live,
            tracing=self.tracing,
            span_name=emit_span_name(kind.value),
        )
        registry: HandlerRegistry[Any] = app.queries if kind is LiveKind.QUERY else app.reports
        # Revocations arrive through repo_svc like any entity (myko/revocation.py).
        self.auth = Authenticator(settings.auth, revoked=lambda p: is_revoked(self.store, p))
        self.heap = HeapTrimmer(threshold_bytes=settings.heap_trim_threshold_bytes)
        self.bus = LiveBus(
            kind=kind,
            registry=registry,
            store=self.store,
            hub=self.hub,
            auth=self.auth,
            max_streams=settings.max_streams,
            heap=self.heap,
        )
        # The same subscriptions, many over one stream (LiveBus/Open), for internal callers.
        self.streams = LiveStreams(self.bus, self.auth, settings)
        self.grpc = GrpcServer(
            settings,
            service_names=catalogue.service(settings.service).grpc_services,
            register=[
                lambda s: register_live_bus(s, self.bus, metrics.rpc),
                lambda s: register_live_streams(s, self.streams, metrics.rpc),
            ],
            transport=self.transport,
            metrics=metrics,
            tracing=self.tracing,
        )
        self.feed = RepoFeed(
            repo_addr=settings.repo_addr,
            store=self.store,
            on_ready=self.grpc.set_serving,
            keepalive=settings.keepalive,
            transport=self.transport,
            tracing=self.tracing,
        )
        metrics.live.watch_feed(lambda: self.feed.ready)

    async def start(self) -> None:
        self.auth.log_mode(self.settings.service)
        await self.auth.warm_up()
        await self.heap.start()
        await self.grpc.start()
        self.feed.start()
        await self.feed.wait_ready()
        self.heap.request()  # loading the mirror's snapshot freed as much as it kept
        log.info("%s ready at %s", self.settings.service, self.store.watermark)

    async def stop(self) -> None:
        await self.grpc.stop()
        await self.feed.stop()
        await self.bus.guard.close()
        self.hub.close()
        self.bus.close()
        await self.heap.stop()
        await self.auth.close()
