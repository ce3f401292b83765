"""gRPC server metrics, recorded by the method wrappers in myko/status.py (the one place)."""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from myko.metrics.buckets import LATENCY_S


class MethodMetrics:
    """One method's pre-bound series: a call costs a dict lookup (its code) and two updates."""

    __slots__ = ("_codes", "_handled", "_method", "_seconds", "sent", "streams")

    def __init__(self, rpc: RpcMetrics, method: str) -> None:
        self._method = method
        self._handled = rpc.handled
        self._seconds = rpc.seconds.labels(method)
        self.streams = rpc.streams.labels(method)
        self.sent = rpc.sent.labels(method)
        # Status codes are a closed set of 17: children are made on first use.
        self._codes: dict[grpc.StatusCode, Counter] = {}

    def handled(self, code: grpc.StatusCode) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._handled.labels(self._method, code.name)
        child.inc()

    def unary_done(self, code: grpc.StatusCode, seconds: float) -> None:
        self.handled(code)
        self._seconds.observe(seconds)


class RpcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "myko_grpc_server_handled_total",
            "RPCs completed, by method and gRPC status code (streams count when they end)",
            ["method", "code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "myko_grpc_server_handling_seconds",
            "Time from receiving a unary RPC to its answer, by method",
            ["method"],
            buckets=LATENCY_S,
            registry=registry,
        )
        self.streams = Gauge(
            "myko_grpc_server_streams_open",
            "Server streams open now, by method",
            ["method"],
            registry=registry,
        )
        self.sent = Counter(
            "myko_grpc_server_stream_messages_sent_total",
            "Messages sent on server streams, by method",
            ["method"],
            registry=registry,
        )
        self._methods: dict[str, MethodMetrics] = {}

    def method(self, name: str) -> MethodMetrics:
        """The series of `name` (service/method), made once when the method is registered."""
        found = self._methods.get(name)
        if found is None:
            found = self._methods[name] = MethodMetrics(self, name)
        return found
