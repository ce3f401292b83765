"""Quarantined records, read from each Quarantine's own stats when scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from myko.quarantine import Quarantine


class QuarantineCollector(Collector):
    """The stats of every Quarantine of the process (myko/quarantine.py keeps them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._watched: list[Quarantine] = []
        registry.register(self)

    def watch(self, quarantine: Quarantine) -> None:
        if quarantine not in self._watched:
            self._watched.append(quarantine)

    def collect(self) -> Iterator[CounterMetricFamily]:
        records = CounterMetricFamily(
            "myko_quarantined_records",
            "Records read that could not be decoded, by topic and defect (docs/quarantine.md)",
            labels=["topic", "defect"],
        )
        written = CounterMetricFamily(
            "myko_quarantine_copies_written", "Quarantined records copied to the quarantine topic"
        )
        failed = CounterMetricFamily(
            "myko_quarantine_copy_failures", "Attempts to write a quarantine copy that failed (retried)"
        )
        totals: dict[tuple[str, str], int] = {}
        copies = failures = 0
        for q in self._watched:
            for key, n in q.stats.records.items():
                totals[key] = totals.get(key, 0) + n
            copies += q.stats.copies_written
            failures += q.stats.copy_failures
        for (topic, defect), n in sorted(totals.items()):
            records.add_metric([topic, defect], n)
        written.add_metric([], copies)
        failed.add_metric([], failures)
        yield records
        yield written
        yield failed

    @property
    def total(self) -> int:
        return sum(q.stats.total for q in self._watched)
