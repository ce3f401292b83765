"""Follows topics from the beginning, read_committed, without a consumer group.

The reader knows when it has caught up (reached the end offsets seen at start)
and lets callers wait until it has read past given positions: the basis of
read-your-writes across the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from myko.errors import DeadlineExceeded, Unavailable
from myko.lifecycle import Lifecycle, cancel_and_wait
from myko.settings import KafkaSettings
from myko.watermark import Watermark

log = logging.getLogger(__name__)

Batch = Sequence[ConsumerRecord[bytes, bytes]]
OnBatch = Callable[[Batch, Watermark], None]


class TopicReader(Lifecycle):
    """Reads every partition of `topics` and hands each fetched batch to `on_batch`.

    `on_batch` runs on the event loop with the batch and the watermark after it;
    it must not block. Positions only move forward.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Sequence[str],
        on_batch: OnBatch,
        *,
        client_id: str = "myko-reader",
        max_batch_records: int = 5000,
    ) -> None:
        self._kafka = kafka
        self._topics = list(topics)
        self._on_batch = on_batch
        self._client_id = client_id
        self._max_batch = max_batch_records
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._watermark = Watermark()
        self._targets: dict[TopicPartition, int] = {}
        self._caught_up = asyncio.Event()

    @property
    def watermark(self) -> Watermark:
        return self._watermark

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            client_id=self._client_id,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            request_timeout_ms=self._kafka.request_timeout_ms,
        )
        try:
            await consumer.start()
            tps: list[TopicPartition] = []
            for topic in self._topics:
                parts = await self._partitions(consumer, topic)
                tps += [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            # read_committed: end offsets are the last stable offsets.
            ends = await consumer.end_offsets(tps)
        except (KafkaError, OSError) as exc:
            await consumer.stop()
            raise Unavailable(f"cannot read {self._topics}: {exc}") from exc
        self._consumer = consumer
        self._watermark = Watermark({(tp.topic, tp.partition): 0 for tp in tps})
        self._targets = {tp: int(end) for tp, end in ends.items()}
        # Tell the consumer where it starts, so even an empty store reports
        # every partition in its watermark.
        self._on_batch([], self._watermark)
        self._check_caught_up()
        self._task = asyncio.create_task(self._run(), name=f"{self._client_id}-loop")

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        for _ in range(50):
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return set(parts)
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        raise Unavailable(f"topic {topic!r} has no partitions (does it exist?)")

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        """The current last stable offsets of every partition read."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    async def wait_caught_up(self, *, timeout_s: float | None = None) -> None:
        try:
            await asyncio.wait_for(self._caught_up.wait(), timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(f"reader did not catch up within {timeout_s}s") from None

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=500, max_records=self._max_batch)
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("fetch failed, retrying: %s", exc)
                await asyncio.sleep(0.5)
                continue
            updates: dict[tuple[str, int], int] = {}
            records: list[ConsumerRecord[bytes, bytes]] = []
            for recs in fetched.values():
                records.extend(recs)
            # Control records (transaction markers) advance positions without
            # producing records, so positions come from the consumer itself.
            for tp in consumer.assignment():
                pos = await consumer.position(tp)
                if pos > self._watermark.get((tp.topic, tp.partition)):
                    updates[(tp.topic, tp.partition)] = pos
            if not records and not updates:
                continue
            self._watermark = self._watermark.advanced(updates)
            try:
                self._on_batch(records, self._watermark)
            except Exception:
                log.exception("batch handler failed; batch of %d records skipped", len(records))
            self._check_caught_up()

    def _check_caught_up(self) -> None:
        if not self._caught_up.is_set() and all(
            self._watermark.get((tp.topic, tp.partition)) >= end for tp, end in self._targets.items()
        ):
            self._caught_up.set()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
