"""The raw Kafka floor: produce -> consume latency with aiokafka, no Myko in the path.

Two variants, both sequential (the next message is sent only once the previous
one has been consumed):

- transactional, the way Myko writes and reads: an idempotent transactional
  producer (acks=all, linger 0) commits one record per transaction, and a
  read_committed consumer without a group (Myko's TopicReader settings) sees it
  once the commit marker has moved the last stable offset;
- the same with the shape of a Myko command's transaction: the event, then,
  once its offset is known, a tx-log record on a second topic (myko/publisher.py
  writes the event's offset into that record), so the cost of that shape is
  visible apart from Myko's own;
- plain, for reference: acks=all, linger 0, no transaction, read_uncommitted.

The clock starts before the producer is called and stops when the consumer
task holds the record.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.samples import Samples

# About the size of a serialised Target with its headers.
PAYLOAD = b"x" * 160
# Same as myko/reader.py: how long the broker may hold an empty fetch.
FETCH_MAX_WAIT_MS = 100


@dataclass
class FloorResult:
    produce_to_consume: Samples  # send -> record in the consumer
    produce_ack: Samples  # send -> commit (or produce) acknowledged

    @classmethod
    def combined(cls, parts: Sequence[FloorResult]) -> FloorResult:
        return cls(
            Samples.joined(p.produce_to_consume for p in parts), Samples.joined(p.produce_ack for p in parts)
        )


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
    finally:
        await admin.close()


class _Arrivals:
    """A consumer task that timestamps each record by its integer key."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._waiting: dict[int, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="floor-consumer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def expect(self, key: int) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        return fut

    async def _run(self) -> None:
        while True:
            fetched = await self._consumer.getmany(timeout_ms=1000)
            now = time.perf_counter()
            for records in fetched.values():
                for r in records:
                    fut = self._waiting.pop(int(r.key), None)
                    if fut is not None and not fut.done():
                        fut.set_result(now)


async def _consumer(bootstrap: str, topic: str, *, isolation_level: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation_level,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        client_id="bench-floor",
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_end(tp)
    await consumer.position(tp)  # resolve the lazy seek before the first send
    return consumer


async def measure_floor(
    bootstrap: str,
    *,
    transactional: bool,
    count: int,
    warmup: int,
    tx_log_record: bool = False,
    timeout_s: float = 10.0,
) -> FloorResult:
    run = uuid.uuid4().hex[:8]
    topic = f"bench.floor.{'txn' if transactional else 'plain'}.{run}"
    side_topic = f"bench.floor.txlog.{run}"
    await create_topics(bootstrap, [topic, side_topic] if tx_log_record else [topic])
    consumer = await _consumer(
        bootstrap, topic, isolation_level="read_committed" if transactional else "read_uncommitted"
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=0,
        enable_idempotence=transactional,
        transactional_id=f"bench-floor-{uuid.uuid4().hex[:8]}" if transactional else None,
    )
    await producer.start()
    arrivals = _Arrivals(consumer)
    arrivals.start()
    result = FloorResult(Samples(), Samples())
    try:
        for i in range(warmup + count):
            arrived = arrivals.expect(i)
            key = str(i).encode()
            t0 = time.perf_counter()
            if transactional:
                # As myko/publisher.py: wait for each record's offset, then commit.
                async with producer.transaction():
                    sent = [await producer.send(topic, key=key, value=PAYLOAD)]
                    if tx_log_record:  # as command_svc: the tx-log record goes in the same request
                        sent.append(await producer.send(side_topic, key=key, value=PAYLOAD))
                    await asyncio.gather(*sent)
            else:
                await producer.send_and_wait(topic, key=key, value=PAYLOAD)
            acked = time.perf_counter()
            t_seen = await asyncio.wait_for(arrived, timeout_s)
            if i >= warmup:
                result.produce_ack.add(acked - t0)
                result.produce_to_consume.add(t_seen - t0)
    finally:
        await arrivals.stop()
        await producer.stop()
        await consumer.stop()
    return result
