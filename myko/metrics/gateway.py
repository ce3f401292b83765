"""The grpc-web gateway: calls by route and status, live sessions, feeds and what they send."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from myko.metrics.buckets import LATENCY_S

# Paths the gateway does not serve are counted under this one label value.
OTHER_METHOD = "other"


class GatewayRouteMetrics:
    __slots__ = ("_codes", "_method", "_requests", "seconds")

    def __init__(self, gateway: GatewayMetrics, method: str) -> None:
        self._requests = gateway.requests
        self._method = method
        self.seconds = gateway.seconds.labels(method)
        self._codes: dict[int, Counter] = {}

    def done(self, code: int) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._requests.labels(self._method, _code_name(code))
        child.inc()


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "myko_gateway_requests_total",
            "grpc-web calls answered, by method and gRPC status code (streams count when they end)",
            ["method", "code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "myko_gateway_request_seconds",
            "Time to answer a unary grpc-web call, by method",
            ["method"],
            buckets=LATENCY_S,
            registry=registry,
        )
        self.frames = Counter(
            "myko_gateway_live_frames_sent_total",
            "LiveBus frames written to browsers (results, errors, heartbeats)",
            registry=registry,
        )
        self.sent_bytes = Counter(
            "myko_gateway_live_sent_bytes_total", "Bytes of those frames", registry=registry
        )
        self.coalesced = Counter(
            "myko_gateway_live_coalesced_total",
            "Results a LiveBus subscription skipped: replaced by a newer one before it was sent",
            registry=registry,
        )
        self.feed_results = Counter(
            "myko_gateway_feed_results_total",
            "Results received on the shared upstream feeds (each fanned out to its subscriptions)",
            registry=registry,
        )
        self._gauges = {
            name: Gauge(f"myko_gateway_{name}", text, registry=registry)
            for name, text in (
                ("sessions", "LiveBus sessions (browser pages) open"),
                ("feeds", "Upstream Watch feeds open, each shared by identical subscriptions"),
                ("subscriptions", "Subscriptions admitted over every open stream"),
                ("streams", "Streams open: LiveBus sessions and proxied Watch calls"),
                ("buffered_bytes", "Request and result bytes held for callers"),
            )
        }
        self._routes: dict[str, GatewayRouteMetrics] = {}

    def route(self, method: str) -> GatewayRouteMetrics:
        found = self._routes.get(method)
        if found is None:
            found = self._routes[method] = GatewayRouteMetrics(self, method)
        return found

    def watch(self, **readings: Callable[[], int]) -> None:
        """Gauges read when scraped: sessions, feeds, subscriptions, streams, buffered_bytes."""
        for name, read in readings.items():
            self._gauges[name].set_function(lambda read=read: float(read()))  # type: ignore[misc]


# grpc-web carries the status as a number; the label is its name, as on the services.
_CODE_NAMES: dict[int, str] = {int(c.value[0]): str(c.name) for c in grpc.StatusCode}


def _code_name(code: int) -> str:
    return _CODE_NAMES.get(code, str(code))
