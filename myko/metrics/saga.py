"""saga_svc: events processed, retried and dead-lettered, per saga."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from myko.metrics.buckets import LATENCY_S


class SagaRunMetrics:
    """One saga's pre-bound series (its SagaRunner holds them)."""

    __slots__ = ("commands", "dead_lettered", "processed", "retries", "seconds")

    def __init__(self, sagas: SagaMetrics, saga: str) -> None:
        self.processed = sagas.processed.labels(saga)
        self.retries = sagas.retries.labels(saga)
        self.dead_lettered = sagas.dead_lettered.labels(saga)
        self.commands = sagas.commands.labels(saga)
        self.seconds = sagas.seconds.labels(saga)


class SagaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed = Counter(
            "myko_saga_events_processed_total",
            "Events a saga finished with: its commands acknowledged, or dead-lettered",
            ["saga"],
            registry=registry,
        )
        self.retries = Counter(
            "myko_saga_retries_total",
            "Failed attempts at an event that were tried again",
            ["saga"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "myko_saga_dead_letters_total",
            "Events written to the dead-letter topic (given up on, or not decodable)",
            ["saga"],
            registry=registry,
        )
        self.commands = Counter(
            "myko_saga_commands_total",
            "Commands a saga sent and had acknowledged",
            ["saga"],
            registry=registry,
        )
        self.seconds = Histogram(
            "myko_saga_event_seconds",
            "Time from picking an event up to being done with it, retries included",
            ["saga"],
            buckets=LATENCY_S,
            registry=registry,
        )
        self._sagas: dict[str, SagaRunMetrics] = {}

    def of(self, saga: str) -> SagaRunMetrics:
        found = self._sagas.get(saga)
        if found is None:
            found = self._sagas[saga] = SagaRunMetrics(self, saga)
        return found
