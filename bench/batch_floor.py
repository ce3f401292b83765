"""The raw Kafka floor of ExecuteBatch: what aiokafka alone does with the records Myko writes.

What Myko writes and reads for a batched command (read from the code, and the
records themselves are sampled from the run's topics):

- myko/publisher.py writes, per command, one record per event on its entity's
  topic (RecordHits: one event, on the Target topic, keyed by the Target's id)
  and one tx-log record on the tx topic (one partition, keyed by the tx), all
  in one produce request per transaction;
- myko/command_writer.py is one task that commits every command pending when
  a round starts (up to MAX_GROUP_COMMANDS: ExecuteBatch's commands reach it
  one by one, myko/command_batch.py, so rounds are not batches) in one
  transaction, and starts the next round only once command_svc's own reader
  has read the transaction back;
- the read_committed readers without a group (myko/reader.py) of the bench's
  stack: command_svc's (every entity topic, the tx log and the lease topic) and
  repo_svc's (every entity topic). query_svc reads repo_svc over gRPC, not
  Kafka; saga_svc (not in the bench's stack) would be a third reader of the
  entity topics.

Here the same with no Myko code, in the bench's process: `senders` loops with
one batch of `batch_size` commands in flight each, a bare writer loop taking up
to MAX_GROUP_COMMANDS pending commands per transaction with Myko's producer
settings and waiting for the command-side reader before its next round, and one
bare reader per Myko reader with Myko's consumer settings, on fresh topics made
as Myko makes them. A batch counts once its transactions are committed and every
reader has read them. The records are the sampled ones (same values and
headers; keys as long as Myko's), so the broker and the client handle the same
bytes as for Myko's batches.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.batch_throughput import BATCH_TIMEOUT_S, BatchCall, run_senders, target_ids
from bench.client import Position, covers
from bench.cpu import CpuMeter, CpuUse
from bench.samples import Samples
from myko.app import load_app
from myko.command_writer import MAX_GROUP_COMMANDS
from myko.leader import LEASE_TOPIC
from myko.publisher import producer_args
from myko.reader import TopicReader, consumer_args
from myko.settings import CommandSettings, KafkaSettings
from myko.topics import TX_LOG, ensure_topics, entity_topics, lease_topic, max_record_bytes, tx_log_topic
from myko.watermark import Watermark

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class RecordSample:
    """One record as Myko wrote it: what the floor writes for every command."""

    key: bytes
    value: bytes
    headers: Headers

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value) + sum(len(k) + len(v) for k, v in self.headers)


@dataclass(frozen=True)
class BatchShape:
    """What one command writes: an event on `entity_type`'s topic and a tx-log record."""

    app: str  # whose entity topics the readers read (MYKO_APP)
    entity_type: str
    event: RecordSample
    txlog: RecordSample


async def last_record(bootstrap: str, topic: str, *, timeout_s: float = 10.0) -> RecordSample:
    """The last committed record of `topic` (of its fullest partition)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        tp = max(tps, key=lambda t: ends[t])
        if not ends[tp]:
            raise RuntimeError(f"{topic} is empty: nothing to sample")
        # The last stable offset is past the commit marker of the last transaction.
        consumer.seek(tp, max(0, ends[tp] - 4))
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            records = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
            if records:
                r = records[-1]
                return RecordSample(r.key or b"", r.value or b"", tuple((k, bytes(v)) for k, v in r.headers))
        raise RuntimeError(f"no record of {topic} within {timeout_s} s")
    finally:
        await consumer.stop()


async def sample_shape(bootstrap: str, *, app: str, topic_prefix: str, entity_type: str) -> BatchShape:
    """The records of the last command Myko committed under `topic_prefix` (a RecordHits)."""
    return BatchShape(
        app=app,
        entity_type=entity_type,
        event=await last_record(bootstrap, topic_prefix + entity_type),
        txlog=await last_record(bootstrap, topic_prefix + TX_LOG),
    )


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The topic's partitions once each has a leader (a fresh topic's have none at first)."""
    cluster = consumer._client.cluster
    for _ in range(100):
        parts = consumer.partitions_for_topic(topic)
        leaders = [cluster.leader_for_partition(TopicPartition(topic, p)) for p in parts or ()]
        if parts and all(leader is not None and leader >= 0 for leader in leaders):
            return sorted(parts)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic!r} has no partitions with leaders")


def merged(positions: Sequence[Mapping[Position, int]]) -> dict[Position, int]:
    """The furthest of each partition's positions: what covers all of them."""
    return dict(functools.reduce(Watermark.advanced, positions, Watermark()).positions)


class _Reader:
    """A bare reader: TopicReader's fetch loop and positions, nothing done with the records."""

    def __init__(self, consumer: AIOKafkaConsumer, topics: Sequence[str]) -> None:
        self._consumer = consumer
        self._topics = frozenset(topics)
        self._positions: dict[Position, int] = {}
        self._waiters: list[tuple[Mapping[Position, int], asyncio.Future[None]]] = []
        self._failed: Exception | None = None

    async def run(self) -> None:
        try:
            await self._fetch()
        except Exception as exc:  # fail the waiting batches rather than leave them hanging
            self._failed = exc
            for _, fut in self._waiters:
                if not fut.done():
                    fut.set_exception(exc)
            raise

    async def _fetch(self) -> None:
        consumer = self._consumer
        while True:
            await consumer.getmany(timeout_ms=500, max_records=TopicReader.MAX_BATCH_RECORDS)
            # As TopicReader: transaction markers move positions without records.
            for tp in consumer.assignment():
                self._positions[(tp.topic, tp.partition)] = await consumer.position(tp)
            waiting = []
            for needed, fut in self._waiters:
                if covers(self._positions, needed):
                    if not fut.done():
                        fut.set_result(None)
                else:
                    waiting.append((needed, fut))
            self._waiters = waiting

    async def wait_for(self, needed: Mapping[Position, int]) -> None:
        """Until this reader has read past `needed` in the topics it reads."""
        needed = {tp: offset for tp, offset in needed.items() if tp[0] in self._topics}
        if covers(self._positions, needed):
            return
        if self._failed is not None:
            raise self._failed
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((needed, fut))
        await fut


@dataclass
class _Command:
    event_key: bytes
    tx_key: bytes
    # Positions past its transaction's records, once committed and read back.
    done: asyncio.Future[dict[Position, int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Writer:
    """command_writer's round shape: every pending command (up to MAX_GROUP_COMMANDS) in one
    transaction, then wait for the command-side reader before the next round."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        shape: BatchShape,
        *,
        event_topic: str,
        tx_topic: str,
        read_back: _Reader,
    ) -> None:
        self._producer = producer
        self._shape = shape
        self._event_topic = event_topic
        self._tx_topic = tx_topic
        self._read_back = read_back
        self._pending: deque[_Command] = deque()
        self._arrived = asyncio.Event()
        self.transactions = 0
        self.commands = 0
        # Per round: begin -> commit acknowledged (of it, handing the records to aiokafka),
        # and commit -> read back.
        self.commit_s = Samples()
        self.send_s = Samples()
        self.read_back_s = Samples()

    async def write(self, commands: Sequence[_Command]) -> dict[Position, int]:
        self._pending.extend(commands)
        self._arrived.set()
        return merged(await asyncio.gather(*(c.done for c in commands)))

    async def run(self) -> None:
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            group = [self._pending.popleft() for _ in range(min(len(self._pending), MAX_GROUP_COMMANDS))]
            try:
                needed = await self._commit(group)
            except Exception as exc:  # fail the waiting batches rather than leave them hanging
                for c in [*group, *self._pending]:
                    if not c.done.done():
                        c.done.set_exception(exc)
                raise
            self.transactions += 1
            self.commands += len(group)
            for c in group:
                c.done.set_result(needed)

    async def _commit(self, group: Sequence[_Command]) -> dict[Position, int]:
        producer, event, txlog = self._producer, self._shape.event, self._shape.txlog
        t0 = time.perf_counter()
        async with producer.transaction():
            sent = []
            for c in group:
                sent.append(
                    await producer.send(
                        self._event_topic, key=c.event_key, value=event.value, headers=list(event.headers)
                    )
                )
                sent.append(
                    await producer.send(
                        self._tx_topic, key=c.tx_key, value=txlog.value, headers=list(txlog.headers)
                    )
                )
            self.send_s.add(time.perf_counter() - t0)
            metas = await asyncio.gather(*sent)
        needed = merged([{(m.topic, m.partition): m.offset + 1} for m in metas])
        t1 = time.perf_counter()
        await self._read_back.wait_for(needed)
        self.commit_s.add(t1 - t0)
        self.read_back_s.add(time.perf_counter() - t1)
        return needed


@dataclass
class BatchFloorResult:
    senders: int
    batch_size: int
    shape: BatchShape
    partitions: int  # of the entity topics
    readers: int
    max_group: int = MAX_GROUP_COMMANDS  # commands per transaction at most
    commands: int = 0
    elapsed_s: float = 0.0
    latency: Samples = field(default_factory=Samples)  # per batch
    cpu: CpuUse | None = None
    # Over the whole run, warm-up included: commands per transaction, and per round the
    # time from its start until its commit was acknowledged, then until it was read back.
    commands_per_transaction: float = 0.0
    commit: Samples = field(default_factory=Samples)
    send: Samples = field(default_factory=Samples)  # of commit: the records handed to aiokafka
    read_back: Samples = field(default_factory=Samples)

    @property
    def per_second(self) -> float:
        return self.commands / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def cpu_ms_per_command(self, name: str) -> float | None:
        if self.cpu is None or not self.commands or name not in self.cpu.seconds:
            return None
        return 1000 * self.cpu.seconds[name] / self.commands


def _floor_batches(writer: _Writer, readers: Sequence[_Reader], keys: Sequence[str], size: int) -> BatchCall:
    encoded = [k.encode() for k in keys]

    async def read_by_all() -> None:
        # A fresh tx per command, as the bench's Myko senders send.
        commands = [_Command(encoded[i % len(encoded)], str(uuid.uuid4()).encode()) for i in range(size)]
        needed = await writer.write(commands)
        await asyncio.gather(*(r.wait_for(needed) for r in readers))

    async def batch() -> tuple[int, int]:
        # As long as a Myko batch may take (batch_throughput's call timeout): a floor that
        # stalls fails the run rather than hang it.
        await asyncio.wait_for(read_by_all(), BATCH_TIMEOUT_S)
        return size, 0

    return batch


async def measure_batch_floor(
    bootstrap: str,
    *,
    shape: BatchShape,
    partitions: int,
    senders: int,
    batch_size: int,
    duration_s: float,
    warmup_s: float,
    meter: CpuMeter,
) -> BatchFloorResult:
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=f"benchfloor{run}.", topic_partitions=partitions
    )
    entities = entity_topics(kafka, load_app(shape.app).entities)
    tx = tx_log_topic(kafka, window_ms=CommandSettings.tx_dedupe_window_ms)
    lease = lease_topic(kafka, LEASE_TOPIC)
    await ensure_topics(kafka, [*entities, tx, lease])
    # The bench stack's readers (module docstring): command_svc's, then repo_svc's.
    reader_topics = [[*(t.name for t in entities), tx.name, lease.name], [t.name for t in entities]]
    producer = AIOKafkaProducer(
        **producer_args(
            kafka, transactional_id=f"bench-batch-floor-{run}", max_result_bytes=kafka.max_result_bytes
        )
    )
    consumers = [
        AIOKafkaConsumer(
            **consumer_args(
                kafka, client_id=f"bench-batch-floor-{i}", max_record_bytes=max_record_bytes(kafka)
            )
        )
        for i in range(len(reader_topics))
    ]
    tasks: list[asyncio.Task[None]] = []
    try:
        await producer.start()
        readers = []
        for consumer, topics in zip(consumers, reader_topics, strict=True):
            await consumer.start()
            tps = [TopicPartition(t, p) for t in topics for p in await _partitions(consumer, t)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            readers.append(_Reader(consumer, topics))
        writer = _Writer(
            producer,
            shape,
            event_topic=kafka.topic_prefix + shape.entity_type,
            tx_topic=tx.name,
            read_back=readers[0],
        )
        tasks = [asyncio.create_task(r.run(), name="batch-floor-reader") for r in readers]
        tasks.append(asyncio.create_task(writer.run(), name="batch-floor-writer"))
        keys = target_ids("bf", senders)
        w = await run_senders(
            [_floor_batches(writer, readers, keys[s], batch_size) for s in range(senders)],
            warmup_s=warmup_s,
            duration_s=duration_s,
            meter=meter,
        )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
        for consumer in consumers:
            await consumer.stop()
    return BatchFloorResult(
        senders=senders,
        batch_size=batch_size,
        shape=shape,
        partitions=partitions,
        readers=len(readers),
        commands=w.commands,
        elapsed_s=w.elapsed_s,
        latency=w.latency,
        cpu=w.cpu,
        commands_per_transaction=writer.commands / writer.transactions if writer.transactions else 0.0,
        commit=writer.commit_s,
        send=writer.send_s,
        read_back=writer.read_back_s,
    )
