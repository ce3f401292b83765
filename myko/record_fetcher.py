"""Reads single committed records back from Kafka by position (the tx log's RecordSource).

One consumer without a group, read_committed, started on first use. Lookups are
rare (a retry of a tx whose result is no longer cached) and served one at a time.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from myko.errors import Unavailable
from myko.lifecycle import Lifecycle
from myko.settings import KafkaSettings

log = logging.getLogger(__name__)


class KafkaRecordFetcher(Lifecycle):
    def __init__(
        self, kafka: KafkaSettings, *, client_id: str, max_record_bytes: int, timeout_s: float = 10.0
    ) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._max_record_bytes = max_record_bytes
        self._timeout_s = timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._consumer is not None:
            return
        consumer = AIOKafkaConsumer(
            **self._kafka.client_args(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            client_id=self._client_id,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=self._max_record_bytes,
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        try:
            await consumer.start()
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise Unavailable(f"cannot start the tx-log fetcher: {exc}") from exc
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def fetch(
        self, topic: str, partition: int, offset: int
    ) -> tuple[bytes | None, bytes | None] | None:
        async with self._lock:
            await self.start()
            assert self._consumer is not None
            consumer = self._consumer
            tp = TopicPartition(topic, partition)
            try:
                if consumer.assignment() != {tp}:
                    consumer.assign([tp])
                consumer.resume(tp)
                consumer.seek(tp, offset)
                async with asyncio.timeout(self._timeout_s):
                    while True:
                        fetched = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                        for record in fetched.get(tp, []):
                            if record.offset != offset:
                                return None  # gone: retention or truncation passed it
                            return record.key, record.value
            except TimeoutError:
                raise Unavailable(f"cannot read {topic}/{partition}@{offset} back yet") from None
            except (KafkaError, OSError) as exc:
                raise Unavailable(f"cannot read {topic}/{partition}@{offset} back: {exc}") from exc
            finally:
                # No prefetching between lookups: they are rare and far apart.
                consumer.pause(tp)
