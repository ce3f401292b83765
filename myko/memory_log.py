"""An in-memory stand-in for the Kafka topics the command core uses.

Topics of numbered partitions holding records (key, value, headers, timestamp),
written in transactions that become visible whole or not at all, with offsets
that only grow. It is what `MemoryPublisher` writes to, `MemoryFeed` reads from
and the tx log reads results back from (`fetch`, the RecordSource port), so the
command core runs and is tested without a broker (docs/architecture.md, ports).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from myko.events import Headers, KafkaRecord
from myko.txlog import wall_clock_ms
from myko.watermark import TopicPartition


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A committed record, with the attributes of aiokafka's ConsumerRecord the core reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: int


@dataclass
class Transaction:
    """Records staged for one atomic append; `send` tells where each will land."""

    log: MemoryLog
    staged: list[LogRecord] = field(default_factory=list)
    # Records staged per partition so far (a group commit stages thousands).
    _per_partition: dict[tuple[str, int], int] = field(default_factory=dict)

    def send(self, record: KafkaRecord) -> LogRecord:
        partition = self.log.partition_for(record.topic, record.key)
        tp = (record.topic, partition)
        before = self._per_partition.get(tp, 0)
        self._per_partition[tp] = before + 1
        offset = self.log._next_offset(tp) + before
        staged = LogRecord(
            topic=record.topic,
            partition=partition,
            offset=offset,
            key=record.key,
            value=record.value,
            headers=list(record.headers),
            timestamp=self.log.clock_ms(),
        )
        self.staged.append(staged)
        return staged


class MemoryLog:
    def __init__(self, *, default_partitions: int = 3, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.default_partitions = default_partitions
        self.clock_ms = clock_ms
        self._partitions: dict[str, int] = {}
        self._records: dict[TopicPartition, list[LogRecord]] = {}
        # Offsets below this were removed (retention); reading starts here.
        self._first: dict[TopicPartition, int] = {}
        self._open = False
        self._changed: asyncio.Event | None = None
        self.transactions = 0

    # --- topics ------------------------------------------------------------
    def create(self, topic: str, partitions: int | None = None) -> None:
        if topic not in self._partitions:
            self._partitions[topic] = partitions or self.default_partitions
            for p in range(self._partitions[topic]):
                self._records[(topic, p)] = []
                self._first[(topic, p)] = 0

    def partitions(self, topic: str) -> int:
        self.create(topic)
        return self._partitions[topic]

    def partition_for(self, topic: str, key: bytes | None) -> int:
        return zlib.crc32(key or b"") % self.partitions(topic)

    # --- writing -----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Stage records; they all become visible when the block ends without error."""
        if self._open:
            raise RuntimeError("MemoryLog: one transaction at a time")
        self._open = True
        txn = Transaction(self)
        try:
            yield txn
            for r in txn.staged:
                self._records[(r.topic, r.partition)].append(r)
            if txn.staged:
                self.transactions += 1
                self._notify()
        finally:
            self._open = False

    def append(self, records: Sequence[KafkaRecord]) -> list[LogRecord]:
        """Another writer's transaction (tests: a second replica, a foreign producer)."""
        with self.transaction() as txn:
            return [txn.send(r) for r in records]

    def truncate_before(self, topic: str, partition: int, offset: int) -> None:
        """Drop records below `offset`, as retention does."""
        tp = (topic, partition)
        self._records[tp] = [r for r in self._records[tp] if r.offset >= offset]
        self._first[tp] = max(self._first[tp], offset)

    # --- reading -----------------------------------------------------------
    def tps(self, topics: Sequence[str]) -> list[TopicPartition]:
        return [(t, p) for t in topics for p in range(self.partitions(t))]

    def first_offset(self, tp: TopicPartition) -> int:
        return self._first[tp]

    def end_offset(self, tp: TopicPartition) -> int:
        return self._next_offset(tp)

    def read(self, tp: TopicPartition, offset: int, *, max_records: int) -> list[LogRecord]:
        records = self._records[tp]
        if not records:
            return []
        start = max(0, offset - records[0].offset)
        return records[start : start + max_records]

    def offset_for_time(self, tp: TopicPartition, timestamp_ms: int) -> int:
        """The first offset whose record is at least that young (the end when none is)."""
        for r in self._records[tp]:
            if r.timestamp >= timestamp_ms:
                return r.offset
        return self.end_offset(tp)

    async def fetch(
        self, topic: str, partition: int, offset: int
    ) -> tuple[bytes | None, bytes | None] | None:
        found = self.read((topic, partition), offset, max_records=1)
        if not found or found[0].offset != offset:
            return None
        return found[0].key, found[0].value

    async def wait_beyond(self, tp_ends: dict[TopicPartition, int]) -> None:
        """Return once some partition has a record at or past its given end."""
        while not any(self.end_offset(tp) > end for tp, end in tp_ends.items()):
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def _next_offset(self, tp: TopicPartition) -> int:
        records = self._records[tp]
        return records[-1].offset + 1 if records else self._first[tp]

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
