"""Kafka consumers: lag and catch-up per topic-partition, records read.

A consumer is a TopicReader (label `consumer="store"`: command_svc, repo_svc
and saga_svc each follow every topic they need into a Store) or one saga's
group member (`consumer="saga:<name>"`). Lag is the partition's end (its last
stable offset, as the fetches report it: these readers are read_committed)
minus the next offset this consumer will handle; for a saga that is the next
offset it has not committed yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass(slots=True)
class _Partition:
    lag: Gauge
    caught_up: Gauge
    records: Counter
    # The end offset to reach before the partition counts as caught up.
    target: int | None
    behind: int = 0
    done: bool = False


class ConsumerLag:
    """One consumer's partitions; made by `ConsumerMetrics.consumer`."""

    def __init__(self, family: ConsumerMetrics, consumer: str) -> None:
        self._family = family
        self.consumer = consumer
        self._tps: dict[tuple[str, int], _Partition] = {}

    def _entry(self, topic: str, partition: int, target: int | None = None) -> _Partition:
        entry = self._tps.get((topic, partition))
        if entry is None:
            labels = (self.consumer, topic, str(partition))
            entry = self._tps[(topic, partition)] = _Partition(
                lag=self._family.lag.labels(*labels),
                caught_up=self._family.caught_up.labels(*labels),
                records=self._family.records.labels(self.consumer, topic),
                target=target,
            )
            entry.caught_up.set(0)
        return entry

    def start(self, targets: dict[tuple[str, int], int]) -> None:
        """The end offsets seen when reading began: a partition is caught up once past its own."""
        for (topic, partition), end in targets.items():
            self._entry(topic, partition, end)

    def update(self, topic: str, partition: int, position: int, end: int | None) -> None:
        """Where the consumer is in a partition and where the partition ends (None: not known yet)."""
        entry = self._entry(topic, partition)
        if end is None or end < 0:
            return
        if entry.target is None:
            entry.target = end
        entry.behind = max(0, end - position)
        entry.lag.set(entry.behind)
        if not entry.done and position >= entry.target:
            entry.done = True
            entry.caught_up.set(1)

    def read(self, topic: str, partition: int, records: int) -> None:
        self._entry(topic, partition).records.inc(records)

    def forget(self, topic: str, partition: int) -> None:
        """The partition went to another consumer (a saga rebalance): drop its series."""
        if self._tps.pop((topic, partition), None) is not None:
            labels = (self.consumer, topic, str(partition))
            self._family.lag.remove(*labels)
            self._family.caught_up.remove(*labels)

    @property
    def total_lag(self) -> int:
        return sum(e.behind for e in self._tps.values())

    @property
    def caught_up(self) -> bool:
        return all(e.done for e in self._tps.values())


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["consumer", "topic", "partition"]
        self.lag = Gauge(
            "myko_kafka_consumer_lag_records",
            "Records committed to the partition that this consumer has not handled yet",
            labels,
            registry=registry,
        )
        self.caught_up = Gauge(
            "myko_kafka_consumer_caught_up",
            "1 once the consumer has reached the partition's end as it was when reading began",
            labels,
            registry=registry,
        )
        self.records = Counter(
            "myko_kafka_consumer_records_total",
            "Records read, by consumer and topic",
            ["consumer", "topic"],
            registry=registry,
        )
        self._consumers: dict[str, ConsumerLag] = {}

    def consumer(self, name: str) -> ConsumerLag:
        found = self._consumers.get(name)
        if found is None:
            found = self._consumers[name] = ConsumerLag(self, name)
        return found

    @property
    def total_lag(self) -> int:
        """Every consumer's lag added up (the service's status report shows it)."""
        return sum(c.total_lag for c in self._consumers.values())
