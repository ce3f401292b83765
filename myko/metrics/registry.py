"""`Metrics`: one process's registry and the metric families of what it runs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from myko.metrics.command import CommandMetrics
from myko.metrics.consumer import ConsumerMetrics
from myko.metrics.gateway import GatewayMetrics
from myko.metrics.live import LiveMetrics
from myko.metrics.quarantine import QuarantineCollector
from myko.metrics.rpc import RpcMetrics
from myko.metrics.saga import SagaMetrics


def _version() -> str:
    try:
        return metadata.version("myko")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@dataclass(frozen=True)
class Totals:
    """The few numbers a service reports about itself (myko.v1.ServiceStatus)."""

    lag_records: int
    subscriptions: int
    dead_letters: int
    quarantined_records: int
    rss_bytes: int
    version: str
    leader: bool


def _sum(metric: Gauge | Counter) -> float:
    return sum(s.value for m in metric.collect() for s in m.samples if not s.name.endswith("_created"))


class Metrics:
    """The metric families of one service process, on its own registry.

    A component asks for its area's families (`metrics.command`); they are
    created on first use, once per registry. Services built without one (unit
    and in-process tests) make their own: metrics are always recorded, only
    the entry point decides whether anyone can scrape them.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._serving = Gauge(
            "myko_service_serving",
            "1 while the service's gRPC health says SERVING (the gateway: while it serves)",
            registry=self.registry,
        )

    @classmethod
    def for_process(cls, service: str, instance_id: str) -> Metrics:
        """A service's registry with the process collectors (CPU, RSS, fds, GC) and its identity."""
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        info = Gauge(
            "myko_service_info",
            "Always 1; names the service, its instance id and the framework version",
            ["service", "instance_id", "version"],
            registry=registry,
        )
        info.labels(service, instance_id, _version()).set(1)
        return cls(registry)

    def serving(self, serving: bool) -> None:
        self._serving.set(1 if serving else 0)

    @cached_property
    def rpc(self) -> RpcMetrics:
        return RpcMetrics(self.registry)

    @cached_property
    def command(self) -> CommandMetrics:
        return CommandMetrics(self.registry)

    @cached_property
    def consumers(self) -> ConsumerMetrics:
        return ConsumerMetrics(self.registry)

    @cached_property
    def live(self) -> LiveMetrics:
        return LiveMetrics(self.registry)

    @cached_property
    def sagas(self) -> SagaMetrics:
        return SagaMetrics(self.registry)

    @cached_property
    def quarantine(self) -> QuarantineCollector:
        return QuarantineCollector(self.registry)

    @cached_property
    def gateway(self) -> GatewayMetrics:
        return GatewayMetrics(self.registry)

    def _made(self, area: str) -> bool:
        """Whether this process uses the area (asking for it would create its families)."""
        return area in self.__dict__

    def totals(self) -> Totals:
        live = self._made("live")
        return Totals(
            lag_records=self.consumers.total_lag if self._made("consumers") else 0,
            # Live subscribers where there are any, else open streams (repo_svc's mirrors).
            subscriptions=int(_sum(self.live.subscriptions if live else self.rpc.streams))
            if live or self._made("rpc")
            else 0,
            dead_letters=int(_sum(self.sagas.dead_lettered)) if self._made("sagas") else 0,
            quarantined_records=self.quarantine.total if self._made("quarantine") else 0,
            rss_bytes=int(self.value("process_resident_memory_bytes") or 0),
            version=_version(),
            leader=bool(self.value("myko_command_leader")) if self._made("command") else False,
        )

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (what GET /metrics answers)."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample's current value, None when absent (tests, the status report)."""
        return self.registry.get_sample_value(name, labels or {})
