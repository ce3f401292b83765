"""Builds and runs the gateway's aiohttp application."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from myko.authentication import Authenticator
from myko.gateway.admission import Admission, ByteGauge
from myko.gateway.cors import Cors
from myko.gateway.feed_hub import FeedHub
from myko.gateway.http_log import http_log
from myko.gateway.lingering import LingeringConnections
from myko.gateway.live_bus import LiveBus
from myko.gateway.proxy import GrpcWebProxy
from myko.gateway.routes import Upstream
from myko.gateway.ui_auth import UiAuth
from myko.gateway.ui_files import UiFiles
from myko.gateway.upstreams import Upstreams
from myko.metrics import Metrics
from myko.metrics.server import metrics_response
from myko.settings import GatewaySettings
from myko.tls import Transport
from myko.tracing import Tracing

log = logging.getLogger(__name__)


class Gateway:
    """The running gateway: start() binds the port, stop() closes streams and channels."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        transport: Transport | None = None,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings
        self._transport = transport or Transport(settings.tls)
        self.metrics = metrics if metrics is not None else Metrics()
        self._tracing = tracing or Tracing.off()
        self._upstreams = Upstreams(
            {
                Upstream.COMMAND: settings.command_addr,
                Upstream.QUERY: settings.query_addr,
                Upstream.REPORT: settings.report_addr,
            },
            keepalive=settings.keepalive,
            transport=self._transport,
        )
        self.admission = Admission(settings, ByteGauge(settings.max_buffered_bytes))
        # No revocation list here (the gateway reads no Kafka): revoked tokens are
        # refused by the services behind it, whose refusal ends the feeds too.
        self.auth = Authenticator(settings.auth)
        self.hub = FeedHub(self._upstreams, settings, self.admission, self.metrics.gateway)
        self.metrics.gateway.watch(
            sessions=lambda: self.hub.session_count,
            feeds=lambda: self.hub.feed_count,
            subscriptions=lambda: self.admission.subscriptions,
            streams=lambda: self.admission.streams,
            buffered_bytes=lambda: self.admission.gauge.held,
        )
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._lingering = LingeringConnections()
        self.port = settings.port

    def build_app(self) -> web.Application:
        # grpc-web bodies are read as a stream with their own limits (request_body.py);
        # this bounds only what aiohttp itself would buffer for any other request.
        app = web.Application(client_max_size=self._settings.max_request_body_bytes)
        cors = Cors(self._settings.cors_origins)
        live = LiveBus(self.hub, max_subscriptions=self._settings.max_subscriptions_per_stream)
        proxy = GrpcWebProxy(
            self._upstreams,
            live,
            self.admission,
            self._settings,
            self.auth,
            self.metrics.gateway,
            self._tracing,
        )
        ui = UiFiles(Path(self._settings.ui_dist))
        app.on_response_prepare.append(cors.on_response_prepare)
        app.router.add_get("/healthz", self._healthz)
        if self._settings.metrics:
            app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/myko-auth.json", UiAuth(self._settings).handle)
        app.router.add_route("OPTIONS", "/{tail:.*}", cors.preflight)
        app.router.add_post("/{tail:.*}", proxy.handle)
        app.router.add_get("/{tail:.*}", ui.handle)
        return app

    async def start(self) -> None:
        self.auth.log_mode("gateway")
        await self.auth.warm_up()
        # handler_cancellation: a browser that goes away cancels its handler,
        # which cancels the upstream call (aiohttp leaves it off by default).
        self._runner = web.AppRunner(
            self.build_app(),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=2.0,
            logger=http_log,
        )
        await self._runner.setup()
        assert self._runner.server is not None
        # Our own listener rather than a TCPSite: each connection closes in stages
        # (lingering.py), so a client whose request aiohttp refused still reads the 400.
        self._listener = await asyncio.get_running_loop().create_server(
            self._lingering.factory(self._runner.server),
            self._settings.host,
            self._settings.port,
            ssl=self._transport.https_context(),
            reuse_address=True,
            backlog=128,
        )
        self.port = int(self._listener.sockets[0].getsockname()[1])
        self.metrics.serving(True)
        log.info("gateway listening on %s://%s:%d", self.scheme, self._settings.host, self.port)

    @property
    def scheme(self) -> str:
        return "https" if self._transport.settings.public and self._transport.enabled else "http"

    async def stop(self) -> None:
        self.metrics.serving(False)
        await self.hub.aclose()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._lingering.finish_all()
        await self._upstreams.close()
        await self.auth.close()

    async def _metrics(self, request: web.Request) -> web.Response:
        return await metrics_response(self.metrics)

    async def _healthz(self, request: web.Request) -> web.Response:
        # The gateway is healthy when it serves; backend states are informational
        # (a proxy that reports unhealthy for a backend outage would get restarted for nothing).
        return web.json_response(
            {
                "status": "SERVING",
                "upstreams": self._upstreams.states(),
                "live_streams": self.hub.session_count,
                "live_feeds": self.hub.feed_count,
                "streams": self.admission.streams,
                "subscriptions": self.admission.subscriptions,
                "buffered_bytes": self.admission.gauge.held,
            }
        )
