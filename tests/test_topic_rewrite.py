"""A topic deleted, recreated, truncated or repartitioned under running readers is noticed.

Before, a recreated topic's low offsets were taken for replays and ignored in
silence. Now every reader stops, the services say NOT_SERVING and log why, and
a restart rebuilds from the topic as it is (docs/quarantine.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.errors import KafkaError
from conftest import InProcessStack
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka_inspect import produce
from targets.v1 import commands_pb2

from myko.app import App
from myko.errors import TopicRewritten
from myko.reader import TopicReader
from myko.saga_service import SagaService
from myko.settings import KafkaSettings, SagaSettings
from myko.topic_identity import describe_topics
from myko.topics import TopicSpec, ensure_topics
from myko.watermark import Watermark

pytestmark = pytest.mark.kafka

CHECK_MS = "300"
# Offsets that look rewritten must hold this long (production: 60 s, past a failover).
HOLD_MS = "600"


async def admin(bootstrap: str) -> AIOKafkaAdminClient:
    client = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await client.start()
    return client


async def recreate(bootstrap: str, topic: str, partitions: int, config: dict[str, str]) -> None:
    """Delete `topic` and create it again under the same name, as an operator might."""
    client = await admin(bootstrap)
    try:
        await client.delete_topics([topic])
        async with asyncio.timeout(30):
            while True:
                try:
                    await client.create_topics([NewTopic(topic, partitions, 1, topic_configs=config)])
                    return
                except KafkaError:  # still being deleted
                    await asyncio.sleep(0.2)
    finally:
        await client.close()


async def health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        return int(reply.status)


async def wait_not_serving(port: int, *, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        async for reply in health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="")
        ):
            if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                return


@pytest.fixture
def fast_checks(myko_env: dict[str, str]) -> dict[str, str]:
    myko_env["MYKO_TOPIC_CHECK_INTERVAL_MS"] = CHECK_MS
    myko_env["MYKO_TOPIC_SUSPECT_HOLD_MS"] = HOLD_MS
    return myko_env


@pytest.fixture
async def checked_stack(fast_checks: dict[str, str], example_app: App) -> AsyncIterator[InProcessStack]:
    s = await InProcessStack.start(fast_checks, example_app)
    try:
        yield s
    finally:
        await s.stop()


async def test_recreated_entity_topic_stops_every_service_that_reads_it(
    checked_stack: InProcessStack, example_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    stack = checked_stack
    env = {
        **stack.env,
        "MYKO_COMMAND_ADDR": f"127.0.0.1:{stack.command.grpc.port}",
        "MYKO_SAGA_PORT": "0",
    }
    sagas = SagaService(SagaSettings.from_env(env), example_app)
    async with asyncio.timeout(60):
        await sagas.start()
    try:
        for name in ("a", "b", "c"):
            await stack.clients.execute(commands_pb2.SetTarget(name=name))
        ports = {
            "repo_svc": stack.repo.grpc.port,
            "command_svc": stack.command.grpc.port,
            "saga_svc": sagas.grpc.port,
        }
        for port in ports.values():
            assert await health(port) == health_pb2.HealthCheckResponse.SERVING
        topic = stack.env["MYKO_TOPIC_PREFIX"] + "targets.v1.Target"
        kafka = KafkaSettings.from_env(stack.env)
        with caplog.at_level(logging.ERROR):
            await recreate(kafka.bootstrap_servers, topic, 3, {"cleanup.policy": "compact"})
            for port in ports.values():
                await wait_not_serving(port, timeout_s=30)
        for service in ports:
            lines = [
                r.getMessage()
                for r in caplog.records
                if r.getMessage().startswith(f"{service} is NOT_SERVING")
            ]
            assert lines and topic in lines[0], service
            assert any(why in lines[0] for why in ("recreated", "out of range", "deleted")), lines[0]
        # command_svc refuses to validate against a history the topic no longer holds.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.clients.execute(commands_pb2.SetTarget(name="after"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert topic in (err.value.details() or "")
    finally:
        await sagas.stop()


class Followed:
    """A TopicReader over one fresh topic, whose fetching a test can hold (through `pace`)."""

    def __init__(
        self, bootstrap: str, topic: str, *, expiring: bool = False, check_ms: int = int(CHECK_MS)
    ) -> None:
        self.kafka = KafkaSettings(
            bootstrap_servers=bootstrap, topic_check_interval_ms=check_ms, topic_suspect_hold_ms=int(HOLD_MS)
        )
        self.topic = topic
        self.records: list[int] = []
        # Once the reader has read up to `hold_at`, it waits for `gate` before fetching again.
        self.hold_at: int | None = None
        self.gate = asyncio.Event()
        self.rewritten: asyncio.Future[TopicRewritten] = asyncio.get_running_loop().create_future()
        self.reader = TopicReader(
            self.kafka,
            [topic],
            self._on_batch,
            pace=self._pace,
            on_rewritten=self._on_rewritten,
            expiring_topics=[topic] if expiring else [],
        )

    def _on_batch(self, records: Sequence[Any], watermark: Watermark) -> None:
        self.records.extend(r.offset for r in records)

    async def _pace(self) -> None:
        if self.hold_at is not None and self.reader.watermark.get((self.topic, 0)) >= self.hold_at:
            await self.gate.wait()

    async def _on_rewritten(self, exc: TopicRewritten) -> None:
        self.rewritten.set_result(exc)

    async def write(self, count: int) -> list[int]:
        return await produce(
            self.kafka.bootstrap_servers,
            self.topic,
            0,
            [(b"k%d" % i, b"v", []) for i in range(count)],
            transactional=False,
        )

    async def hold_after(self, count: int) -> int:
        """Write `count` records and hold the (caught up) reader once it has read them; its position."""
        self.hold_at = self.reader.watermark.get((self.topic, 0)) + count
        await self.write(count)
        await asyncio.wait_for(self._reached(self.hold_at), 15)
        return self.hold_at

    async def _reached(self, position: int) -> None:
        while self.reader.watermark.get((self.topic, 0)) < position:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


@pytest.fixture
async def followed(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[Followed]:
    topic = topic_prefix + "followed"
    await ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [TopicSpec(topic, 1)])
    f = Followed(kafka_bootstrap, topic)
    await f.reader.start()
    try:
        yield f
    finally:
        await f.reader.stop()


async def test_recreated_and_refilled_past_the_position_is_known_by_its_topic_id(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = topic_prefix + "refilled"
    await ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [TopicSpec(topic, 1)])
    # Checks far apart: the topic is recreated between two of them, never seen missing twice.
    followed = Followed(kafka_bootstrap, topic, check_ms=2000)
    await followed.reader.start()
    try:
        await _recreated_and_refilled(followed)
    finally:
        await followed.reader.stop()


async def _recreated_and_refilled(followed: Followed) -> None:
    position = await followed.hold_after(3)
    await recreate(followed.kafka.bootstrap_servers, followed.topic, 1, {})
    # The new topic holds more records than were read: offsets alone would not tell.
    await followed.write(position + 5)
    async with asyncio.timeout(15):
        exc = await followed.rewritten
    assert "recreated" in exc.message and "topic id" in exc.message
    assert isinstance(followed.reader.rewritten, TopicRewritten)
    with pytest.raises(TopicRewritten):
        await followed.reader.end_offsets()


async def delete_unread(f: Followed) -> list[int]:
    """While the reader is held: more records, then all but the last deleted; their offsets.

    The consumer prefetches: the first few new records may already sit in its
    buffer, and it fetches no more of a partition while they do. The later
    ones it has certainly not fetched when they are deleted.
    """
    await f.write(3)
    await asyncio.sleep(0.5)
    offsets = await f.write(5)
    client = await admin(f.kafka.bootstrap_servers)
    try:
        await client.delete_records({TopicPartition(f.topic, 0): RecordsToDelete(offsets[-1])})
    finally:
        await client.close()
    return offsets


async def test_records_deleted_before_they_were_read_are_noticed(followed: Followed) -> None:
    await followed.hold_after(2)
    offsets = await delete_unread(followed)
    followed.gate.set()
    async with asyncio.timeout(15):
        exc = await followed.rewritten
    assert f"{followed.topic}/0" in exc.message
    assert any(why in exc.message for why in ("out of range", "not yet read were deleted")), exc.message
    # Nothing past the hole was applied.
    assert offsets[-1] not in followed.records


async def test_expired_records_of_an_expiring_topic_are_skipped(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = topic_prefix + "expiring"
    await ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [TopicSpec(topic, 1)])
    f = Followed(kafka_bootstrap, topic, expiring=True)
    await f.reader.start()
    try:
        await f.hold_after(2)
        # What retention does to the tx log: the oldest records go before a slow reader saw them.
        offsets = await delete_unread(f)
        f.gate.set()
        async with asyncio.timeout(15):
            while offsets[-1] not in f.records:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(4 * int(CHECK_MS) / 1000)
        assert f.reader.rewritten is None
        assert not f.rewritten.done()
    finally:
        await f.reader.stop()


async def test_deleted_topic_is_noticed(followed: Followed) -> None:
    await followed.hold_after(1)
    followed.gate.set()
    client = await admin(followed.kafka.bootstrap_servers)
    try:
        await client.delete_topics([followed.topic])
    finally:
        await client.close()
    async with asyncio.timeout(15):
        exc = await followed.rewritten
    assert any(why in exc.message for why in ("was deleted", "out of range")), exc.message


async def test_added_partitions_are_noticed(followed: Followed) -> None:
    client = await admin(followed.kafka.bootstrap_servers)
    try:
        await client.create_partitions({followed.topic: NewPartitions(4)})
    finally:
        await client.close()
    async with asyncio.timeout(15):
        exc = await followed.rewritten
    assert "4 partitions, not 1" in exc.message


async def test_topic_identity_changes_when_a_topic_is_recreated(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = topic_prefix + "identity"
    await ensure_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [TopicSpec(topic, 2)])
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    try:
        before = await describe_topics(consumer._client, [topic, topic_prefix + "missing"])
        assert before[topic_prefix + "missing"] is None
        first = before[topic]
        assert first is not None and first.partitions == 2 and first.topic_id is not None
        await recreate(kafka_bootstrap, topic, 2, {})
        async with asyncio.timeout(10):
            # The broker learns of the new topic from the controller a moment after its creation.
            while (second := (await describe_topics(consumer._client, [topic]))[topic]) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert second.topic_id not in (None, first.topic_id)
    finally:
        await consumer.stop()
