"""The two implementations of the command core's ports, behind one test-facing shape.

`MemoryBackend` (MemoryLog, MemoryPublisher, MemoryFeed) and `KafkaBackend`
(TransactionalPublisher, TopicReader, KafkaRecordFetcher against the test
broker, topics under the test's own prefix). tests/test_core_contract.py runs
the same cases against both.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from counters import COUNTER

from myko.events import KafkaRecord
from myko.memory_feed import MemoryFeed
from myko.memory_log import MemoryLog
from myko.memory_publisher import MemoryPublisher
from myko.ports import Feed, Publisher, ReadWindow, RecordSource
from myko.publisher import TransactionalPublisher
from myko.reader import OnBatch, TopicReader
from myko.record_fetcher import KafkaRecordFetcher
from myko.settings import KafkaSettings
from myko.topics import TX_LOG, TopicSpec, ensure_topics, max_record_bytes, tx_log_topic

MAX_RESULT_BYTES = 256 * 1024


class Backend:
    name: str
    publisher: Publisher
    source: RecordSource

    def topic_of(self, type_name: str) -> str:
        raise NotImplementedError

    @property
    def txlog_topic(self) -> str:
        return self.topic_of(TX_LOG)

    def feed(self, on_batch: OnBatch, windows: Mapping[str, ReadWindow] | None = None) -> Feed:
        raise NotImplementedError

    async def write_foreign(self, records: Sequence[KafkaRecord]) -> None:
        """Another producer's transaction on the same topics."""
        raise NotImplementedError

    async def take_over(self) -> Publisher:
        """Another writer with this publisher's identity starts; the successor."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        self.log = MemoryLog()
        self.log.create(TX_LOG, 1)
        self.memory_publisher = MemoryPublisher(
            self.log, topic_of=self.topic_of, txlog_topic=self.txlog_topic, max_result_bytes=MAX_RESULT_BYTES
        )
        self.publisher = self.memory_publisher
        self.source = self.log

    def topic_of(self, type_name: str) -> str:
        return type_name

    def feed(self, on_batch: OnBatch, windows: Mapping[str, ReadWindow] | None = None) -> Feed:
        return MemoryFeed(self.log, [self.topic_of(COUNTER), self.txlog_topic], on_batch, windows=windows)

    async def write_foreign(self, records: Sequence[KafkaRecord]) -> None:
        self.log.append(records)

    async def take_over(self) -> Publisher:
        self.memory_publisher.fence()
        return MemoryPublisher(
            self.log, topic_of=self.topic_of, txlog_topic=self.txlog_topic, max_result_bytes=MAX_RESULT_BYTES
        )


class KafkaBackend(Backend):
    name = "kafka"

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.kafka = KafkaSettings(
            bootstrap_servers=bootstrap, topic_prefix=prefix, max_result_bytes=MAX_RESULT_BYTES
        )
        self._transactional_id = f"contract-{prefix}"
        self.kafka_publisher = self._new_publisher()
        self.publisher = self.kafka_publisher
        self.fetcher = KafkaRecordFetcher(
            self.kafka, client_id=f"{prefix}fetch", max_record_bytes=max_record_bytes(self.kafka)
        )
        self.source = self.fetcher
        self._others: list[Any] = []

    def _new_publisher(self) -> TransactionalPublisher:
        return TransactionalPublisher(
            self.kafka,
            transactional_id=self._transactional_id,
            topic_of=self.topic_of,
            txlog_topic=self.txlog_topic,
            max_result_bytes=MAX_RESULT_BYTES,
        )

    async def start(self) -> None:
        entity = TopicSpec(
            self.topic_of(COUNTER), 3, {"max.message.bytes": str(max_record_bytes(self.kafka))}
        )
        await ensure_topics(self.kafka, [entity, tx_log_topic(self.kafka, window_ms=3_600_000)])
        await self.kafka_publisher.start()
        self.kafka_publisher.know_partitions({self.topic_of(COUNTER): 3, self.txlog_topic: 1})

    def topic_of(self, type_name: str) -> str:
        return self.kafka.topic_prefix + type_name

    def feed(self, on_batch: OnBatch, windows: Mapping[str, ReadWindow] | None = None) -> Feed:
        return TopicReader(
            self.kafka,
            [self.topic_of(COUNTER), self.txlog_topic],
            on_batch,
            client_id=f"contract-{uuid.uuid4().hex[:6]}",
            windows=windows,
        )

    async def write_foreign(self, records: Sequence[KafkaRecord]) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap_servers, transactional_id=f"foreign-{uuid.uuid4()}"
        )
        await producer.start()
        try:
            async with producer.transaction():
                for r in records:
                    await producer.send(r.topic, key=r.key, value=r.value, headers=r.headers)
        finally:
            await producer.stop()

    async def take_over(self) -> Publisher:
        successor = self._new_publisher()
        await successor.start()
        successor.know_partitions({self.topic_of(COUNTER): 3, self.txlog_topic: 1})
        self._others.append(successor)
        return successor

    async def close(self) -> None:
        for p in [self.kafka_publisher, *self._others]:
            await p.stop()
        await self.fetcher.stop()
