"""Wait until a local Store reflects everything committed to its topics so far.

A saga reads state to decide its commands (a zone's targets, say). Its events
arrive on one topic while that state comes from others, and Kafka orders
nothing across topics, so "the store has read past this event" is not enough:
a Target committed before the Zone's delete could still be unread. Asking the
broker for the last stable offsets of every entity partition, after the event
was received, and waiting for the store to reach them, closes that gap.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from myko.errors import Unavailable
from myko.repo import Store
from myko.settings import KafkaSettings

log = logging.getLogger(__name__)


class StoreFence:
    def __init__(
        self, kafka: KafkaSettings, store: Store, *, client_id: str, timeout_s: float = 30.0
    ) -> None:
        self._kafka = kafka
        self._store = store
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            # End offsets are then the last stable offsets: what a read_committed reader can reach.
            isolation_level="read_committed",
            client_id=self._client_id,
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        try:
            await consumer.start()
            tps: list[TopicPartition] = []
            for topic in self._store.topics:
                parts = await self._partitions_of(consumer, topic)
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise Unavailable(f"cannot read partitions of {self._store.topics}: {exc}") from exc
        self._consumer = consumer
        self._partitions = tps

    @staticmethod
    async def _partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        for _ in range(50):
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return set(parts)
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise Unavailable(f"topic {topic!r} has no partitions (does it exist?)")

    async def sync(self) -> None:
        """Return once the store has read everything committed before this call."""
        if self._consumer is None:
            raise RuntimeError("StoreFence not started")
        if not self._partitions:
            return
        try:
            ends = await self._consumer.end_offsets(self._partitions)
        except (KafkaError, OSError) as exc:
            raise Unavailable(f"cannot read end offsets: {exc}") from exc
        await self._store.wait_for({tp: int(end) for tp, end in ends.items()}, timeout_s=self._timeout_s)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
