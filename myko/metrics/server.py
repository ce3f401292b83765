"""Serves a process's metrics over HTTP (GET /metrics) on its metrics port.

On the event loop, with aiohttp, rather than prometheus_client's thread: the
values read at scrape time (set_function gauges, the quarantine collector)
belong to asyncio components, which are only consistent on their own loop.
A scrape costs the loop a few milliseconds.
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from myko.lifecycle import Lifecycle
from myko.metrics.registry import Metrics

log = logging.getLogger(__name__)


async def metrics_response(metrics: Metrics) -> web.Response:
    # The classic text format, which every Prometheus (Debian's 2.42 too) reads.
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


class MetricsServer(Lifecycle):
    """GET /metrics on host:port (port 0: a free one, see `port` after start)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self.port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        for addr in runner.addresses:
            if isinstance(addr, tuple):
                self.port = int(addr[1])
                break
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)

    async def _handle(self, request: web.Request) -> web.Response:
        return await metrics_response(self._metrics)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
