"""query_svc and report_svc: shared evaluations, subscriptions, emissions, coalescing, bytes sent.

Labelled by the query or report type (`type`), which is always a registered
one: an evaluation starts only after its type was found in the registry.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class LiveTypeMetrics:
    """One query or report type's pre-bound series (each evaluation holds them)."""

    __slots__ = (
        "coalesced",
        "emissions",
        "evaluations",
        "sent_bytes",
        "sent_messages",
        "subscriptions",
        "unchanged",
    )

    def __init__(self, live: LiveMetrics, type_name: str) -> None:
        self.evaluations = live.evaluations.labels(type_name)
        self.subscriptions = live.subscriptions.labels(type_name)
        self.emissions = live.emissions.labels(type_name)
        self.unchanged = live.unchanged.labels(type_name)
        self.coalesced = live.coalesced.labels(type_name)
        self.sent_messages = live.sent_messages.labels(type_name)
        self.sent_bytes = live.sent_bytes.labels(type_name)


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Gauge(
            "myko_live_evaluations",
            "Shared evaluations running (one per distinct type and parameters)",
            ["type"],
            registry=registry,
        )
        self.subscriptions = Gauge(
            "myko_live_subscriptions",
            "Subscribers attached to those evaluations (Watch and Get calls)",
            ["type"],
            registry=registry,
        )
        self.emissions = Counter(
            "myko_live_emissions_total",
            "New results an evaluation produced and serialised once for all its subscribers",
            ["type"],
            registry=registry,
        )
        self.unchanged = Counter(
            "myko_live_unchanged_total",
            "Values an evaluation's handler produced equal to its previous result (nothing emitted)",
            ["type"],
            registry=registry,
        )
        self.coalesced = Counter(
            "myko_live_coalesced_total",
            "Results a subscriber skipped: replaced by a newer one before it was sent",
            ["type"],
            registry=registry,
        )
        self.sent_messages = Counter(
            "myko_live_sent_messages_total",
            "Results handed to subscribers' streams",
            ["type"],
            registry=registry,
        )
        self.sent_bytes = Counter(
            "myko_live_sent_bytes_total",
            "Bytes of those results",
            ["type"],
            registry=registry,
        )
        self._feed_ready = Gauge(
            "myko_repo_feed_ready",
            "1 while this service's mirror of repo_svc is connected and complete",
            registry=registry,
        )
        self._types: dict[str, LiveTypeMetrics] = {}

    def watch_feed(self, ready: Callable[[], bool]) -> None:
        self._feed_ready.set_function(lambda: 1.0 if ready() else 0.0)

    def of(self, type_name: str) -> LiveTypeMetrics:
        found = self._types.get(type_name)
        if found is None:
            found = self._types[type_name] = LiveTypeMetrics(self, type_name)
        return found
