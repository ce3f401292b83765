"""Test helpers that look at Kafka directly: a topic's records, a group's committed offsets.

`client_args` are aiokafka connection arguments when the brokers want credentials
(LocalKafka.client_args(), the cluster's admin); `bootstrap` alone otherwise.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


def _connect(bootstrap: str, client_args: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"bootstrap_servers": bootstrap, **(client_args or {})}


async def read_topic(
    bootstrap: str, topic: str, *, timeout_s: float = 15.0, client_args: Mapping[str, Any] | None = None
) -> list[Any]:
    """Every committed record of `topic` now (read_committed, to the end offsets), in partition order."""
    consumer = AIOKafkaConsumer(
        **_connect(bootstrap, client_args),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
                await asyncio.sleep(0.1)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            records: list[Any] = []
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=200)
                for recs in batch.values():
                    records.extend(recs)
            return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group_id: str) -> dict[tuple[str, int], int]:
    """The group's committed offsets: (topic, partition) -> next offset to read."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def wait_committed_past(
    bootstrap: str, group_id: str, topic: str, partition: int, offset: int, *, timeout_s: float = 30.0
) -> None:
    """Wait until the group has committed the record at `offset` (and so everything before it)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if (await committed(bootstrap, group_id)).get((topic, partition), -1) > offset:
                return
            await asyncio.sleep(0.2)


async def produce(
    bootstrap: str,
    topic: str,
    partition: int,
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    *,
    transactional: bool,
    client_args: Mapping[str, Any] | None = None,
    transactional_id: str | None = None,
) -> list[int]:
    """Write (key, value, headers) records to one partition as another producer would; their offsets.

    Sent without waiting in between, so they travel in as few batches as
    possible; `transactional` writes them in one committed Kafka transaction.
    """
    producer = AIOKafkaProducer(
        **_connect(bootstrap, client_args),
        acks="all",
        enable_idempotence=True,
        transactional_id=(transactional_id or f"test-producer-{uuid.uuid4()}") if transactional else None,
    )
    try:
        await producer.start()
        if transactional:
            await producer.begin_transaction()
        futures = [
            await producer.send(topic, key=key, value=value, headers=headers, partition=partition)
            for key, value, headers in records
        ]
        if transactional:
            await producer.commit_transaction()
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [m.offset for m in metas]
