"""A reader catching up over a topic hands over every record in order, and leaves the
process's garbage collector as it found it (it holds the collector off only while catching up)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from typing import Any

import pytest
from kafka_inspect import produce

from myko.reader import TopicReader
from myko.settings import KafkaSettings
from myko.topics import TopicSpec, ensure_topics
from myko.watermark import Watermark

pytestmark = pytest.mark.kafka

RECORDS = 3000
BATCH = 400


class Collected:
    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.frozen_during: list[int] = []
        self.collecting_during: list[bool] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.records_seen = asyncio.Event()

    def on_batch(self, records: Sequence[Any], watermark: Watermark) -> None:
        self.offsets.extend(r.offset for r in records)
        self.frozen_during.append(gc.get_freeze_count())
        self.collecting_during.append(gc.isenabled())
        if records:
            self.records_seen.set()

    async def pace(self) -> None:
        await self.gate.wait()


async def _topic_with_records(bootstrap: str, topic: str) -> None:
    await ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), [TopicSpec(topic, 1)])
    # Two transactions: the markers between them are read past, not handed over.
    half = RECORDS // 2
    for first in (0, half):
        await produce(
            bootstrap,
            topic,
            0,
            [(b"k%d" % i, b"v%d" % i, []) for i in range(first, first + half)],
            transactional=True,
        )


async def test_catch_up_hands_over_every_record_and_releases_the_collector(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = topic_prefix + "catch-up"
    await _topic_with_records(kafka_bootstrap, topic)
    collected = Collected()
    before, collecting = gc.get_freeze_count(), gc.isenabled()
    reader = TopicReader(
        KafkaSettings(bootstrap_servers=kafka_bootstrap), [topic], collected.on_batch, max_batch_records=BATCH
    )
    await reader.start()
    try:
        await reader.wait_caught_up(timeout_s=60)
        # The records in order, the markers skipped (offsets 1500 and 3001 are markers).
        assert collected.offsets == [*range(0, 1500), *range(1501, 3001)]
        # While catching up the collector was off and what the batches built frozen ...
        assert not any(collected.collecting_during[1:])
        assert any(count > before for count in collected.frozen_during[1:])
        # ... and once caught up it is the collector's again.
        assert gc.get_freeze_count() == before
        assert gc.isenabled() == collecting
        assert reader.watermark.get((topic, 0)) == 3002
    finally:
        await reader.stop()


async def test_a_reader_stopped_while_catching_up_releases_the_collector(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = topic_prefix + "stopped"
    await _topic_with_records(kafka_bootstrap, topic)
    collected = Collected()
    collected.gate.clear()  # held after its first batch
    before, collecting = gc.get_freeze_count(), gc.isenabled()
    reader = TopicReader(
        KafkaSettings(bootstrap_servers=kafka_bootstrap),
        [topic],
        collected.on_batch,
        max_batch_records=BATCH,
        pace=collected.pace,
    )
    await reader.start()
    try:
        await asyncio.wait_for(collected.records_seen.wait(), 30)
        assert not reader.caught_up
        assert gc.get_freeze_count() > before and not gc.isenabled()
    finally:
        await reader.stop()
    assert gc.get_freeze_count() == before
    assert gc.isenabled() == collecting
