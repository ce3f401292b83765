"""The Kafka publisher after aiokafka's producer breaks: the commit fails as retriable
and nothing of it is visible; the next commit works on a fresh producer.

aiokafka marks its transaction state FATAL when its sender task dies (an error it
does not expect from the broker, e.g. while a transaction coordinator moves); from
then on every begin, commit and abort raises AssertionError ("Invalid state
transition"). Found by the live-swarm fault test: such an AssertionError reached a
client as INTERNAL while a broker came back. The test puts the producer in that
state the way aiokafka's own `Sender._fail_all` does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from core_backends import KafkaBackend
from counters import COUNTER, Counter

from myko.errors import Unavailable
from myko.events import set_event
from myko.ports import Proposal
from myko.txlog import command_digest
from myko.watermark import Watermark

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


@pytest.fixture
async def backend(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[KafkaBackend]:
    kafka = KafkaBackend(kafka_bootstrap, topic_prefix)
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.close()


def proposal(entity_id: str) -> Proposal:
    tx = str(uuid.uuid4())
    c = Counter(value=1)
    c.item.id = entity_id
    c.item.type = COUNTER
    event = set_event(c, tx=tx, ts=c.item.updated_at, source="recovery")
    return Proposal(
        tx=tx, digest=command_digest("t/" + tx, b""), command_type="mykotest.v1.Fill", events=[event]
    )


def break_sender(backend: KafkaBackend) -> None:
    """What aiokafka does when its sender task dies with an error."""
    producer: Any = backend.kafka_publisher._producer
    producer._txn_manager.fatal_error(KafkaError("the sender task died"))


async def committed_ids(backend: KafkaBackend) -> set[str]:
    got: list[Any] = []

    def on_batch(records: Sequence[Any], watermark: Watermark) -> None:
        got.extend(records)

    feed = backend.feed(on_batch)
    await feed.start()
    try:
        await feed.wait_caught_up(timeout_s=30)
    finally:
        await feed.stop()
    return {r.key.decode() for r in got if r.topic == backend.topic_of(COUNTER)}


async def test_a_broken_producer_fails_one_commit_as_retriable_and_is_replaced(
    backend: KafkaBackend,
) -> None:
    await backend.publisher.commit([proposal("before")])
    break_sender(backend)
    with pytest.raises(Unavailable):
        await backend.publisher.commit([proposal("lost")])
    (after,) = await backend.publisher.commit([proposal("after")])
    assert after.result.visible_at.positions
    assert await committed_ids(backend) == {"before", "after"}


async def test_a_producer_broken_mid_transaction_is_replaced_too(backend: KafkaBackend) -> None:
    await backend.publisher.commit([proposal("before")])
    producer: Any = backend.kafka_publisher._producer
    begin = producer.begin_transaction

    async def begin_then_break() -> None:
        await begin()
        break_sender(backend)

    producer.begin_transaction = begin_then_break
    with pytest.raises(Unavailable):
        await backend.publisher.commit([proposal("lost")])
    await backend.publisher.commit([proposal("after")])
    assert await committed_ids(backend) == {"before", "after"}
